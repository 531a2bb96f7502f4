"""PuzzleMix (Kim et al. 2020): saliency-guided optimal masks and block transport (docs/methods/online-mixing.md).

For a batch x, a permutation ``perm`` and a prior ratio ``lam``, each sample i is mixed
with its partner x[perm[i]] on a B x B block grid (B drawn from {2, 4, 8, 16}):

1. Saliency ``s = sqrt(mean_c (dloss/dx)^2)`` (computed by the caller, see
   :func:`input_saliency`), average-pooled to the grid and normalised to sum 1 per image.
2. A label per block takes one of ``n_labels`` mask values m in {1, ..., 0} (the share
   of the own image; 3 labels give 1, 1/2, 0). A multi-label graph cut (alpha-beta swap,
   gco) minimises
   ``sum_b [m_b s'_b + (1 - m_b) s_b]``                          (saliency left out)
   ``+ eta / B^2 * sum_b -log Binomial(m_b (L - 1); L - 1, lam)``  (label prior)
   ``+ sum_(b,c) [beta' (m_b - m_c)^2 + beta' gamma d_bc(a_b, a_c)]``  (smoothness)
   where s, s' are the own and partner saliencies, L = n_labels, beta' = beta / B / 16,
   and d_bc(a, a') is the mean absolute pixel difference across the boundary of
   neighbouring blocks b, c when b shows image a and c image a' (pixels pooled by
   ``neigh_size``). For binary labels the image term splits exactly into unary parts
   plus an edge weight paid when neighbours differ (:func:`graph_terms`); as in the
   reference, intermediate labels interpolate the unary parts linearly and pay the edge
   weight in proportion to (m_b - m_c)^2.
3. Optional transport: on a grid of G >= B cells, each image's salient cells move into the
   cells where its mask shows it, minimising ``eps * |p - q|^2 / (G - 1)^2 - s_p 1[mask_q > 0]``
   with the reference's iterative row-min / column-conflict solver.
4. ``mixed = M * T(x) + (1 - M) * T'(x[perm])``, M the block mask upsampled to pixels;
   the mixing ratio is ``mean(M)`` and the soft target ``ratio * y + (1 - ratio) * y[perm]``.

Defaults are the reference's CIFAR recipe: beta 1.2, gamma 0.5, eta 0.2, n_labels 3,
neighbourhood 4 px, transport with eps 0.8 on 4 px cells (G = 8 at 32 px, G = B when B > 8).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from math import comb, log

import gco
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Block grids PuzzleMix draws from (the reference's ``2 ** randint(1, 5)``).
BLOCK_NUMS = (2, 4, 8, 16)
#: Added inside the label prior's log, as the reference does, so lam in {0, 1} stays finite.
PRIOR_EPS = 1e-8


@dataclass(frozen=True)
class PuzzleMixResult:
    """One PuzzleMix draw for a batch.

    ``mixed = mask * source + (1 - mask) * partner`` per pixel, where ``source`` and
    ``partner`` are ``images`` and ``images[perm]`` after transport (unchanged without it).
    """

    mixed: torch.Tensor  # (N, C, H, W)
    mask: torch.Tensor  # (N, 1, H, W), share of the own (source) image per pixel, in [0, 1]
    block_mask: torch.Tensor  # (N, B, B), the graph cut's labels as mask values
    ratio: torch.Tensor  # (N,), mean of mask
    source: torch.Tensor  # (N, C, H, W)
    partner: torch.Tensor  # (N, C, H, W)


def input_saliency(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``sqrt(mean_c (d loss / d x)^2)``, shape (N, H, W), from a forward/backward on the clean batch.

    Only the input gradient is taken (``torch.autograd.grad``), so no parameter
    ``.grad`` is touched. As in the reference, the pass runs in the model's current mode
    (batch-norm statistics update in training). Under DistributedDataParallel it runs in
    ``no_sync`` so the reducer does not wait for a parameter backward that never comes.
    """
    x = images.detach().requires_grad_(True)
    sync = model.no_sync() if hasattr(model, "no_sync") else nullcontext()
    with torch.enable_grad(), sync:
        loss = loss_fn(model(x), targets)
        (grad,) = torch.autograd.grad(loss, x)
    return grad.pow(2).mean(dim=1).sqrt()


def valid_block_nums(height: int, width: int, choices: tuple[int, ...] = BLOCK_NUMS) -> list[int]:
    """The grid sizes in ``choices`` that divide a square ``height`` x ``width`` image."""
    if height != width:
        raise ValueError(f"PuzzleMix needs square images, got {height}x{width}")
    valid = [b for b in choices if height % b == 0]
    if not valid:
        raise ValueError(f"no PuzzleMix block grid in {choices} divides the image size {height}")
    return valid


def pooled_saliency(saliency: torch.Tensor, grid: int) -> torch.Tensor:
    """Saliency (N, H, W) average-pooled to (N, grid, grid), normalised to sum 1 per image.

    An all-zero map (no gradient at all) becomes uniform rather than 0/0.
    """
    pooled = F.adaptive_avg_pool2d(saliency.unsqueeze(1), grid).squeeze(1)
    total = pooled.flatten(1).sum(1).view(-1, 1, 1)
    uniform = torch.full_like(pooled, 1.0 / grid**2)
    return torch.where(total > 0, pooled / total.clamp_min(torch.finfo(pooled.dtype).tiny), uniform)


def largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of ``n`` that is <= ``limit`` (at least 1)."""
    return max(d for d in range(1, min(n, max(limit, 1)) + 1) if n % d == 0)


def boundary_differences(upper: torch.Tensor, lower: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean absolute difference across block boundaries of two pooled images (N, C, B k, B k).

    ``upper`` is shown by the top (left) block of each pair, ``lower`` by the bottom
    (right) one. Returns the vertical-edge term (N, B - 1, B) comparing the last pooled
    row of each block in ``upper`` with the first row of the block below in ``lower``, and
    the horizontal-edge term (N, B, B - 1) likewise for columns, each averaged over
    channels and over the k pooled pixels along the boundary (the reference's
    ``neigh_penalty``).
    """
    rows = (upper[:, :, :-1, :] - lower[:, :, 1:, :])[:, :, k - 1 :: k, :]
    cols = (upper[:, :, :, :-1] - lower[:, :, :, 1:])[:, :, :, k - 1 :: k]
    vertical = F.avg_pool2d(rows.abs().mean(1), kernel_size=(1, k))
    horizontal = F.avg_pool2d(cols.abs().mean(1), kernel_size=(k, 1))
    return vertical, horizontal


@dataclass(frozen=True)
class GraphTerms:
    """Unary and edge costs of the binary (own / partner) PuzzleMix energy, per sample.

    ``cost_own[b]`` is the cost of showing the own image in block b, ``cost_partner[b]``
    of showing the partner; ``edge_v`` (N, B - 1, B) and ``edge_h`` (N, B, B - 1) weigh a
    disagreement between neighbours (before the label term beta' is added).
    """

    cost_own: torch.Tensor
    cost_partner: torch.Tensor
    edge_v: torch.Tensor
    edge_h: torch.Tensor


def graph_terms(
    saliency_own: torch.Tensor,
    saliency_partner: torch.Tensor,
    pixels_own: torch.Tensor,
    pixels_partner: torch.Tensor,
    block_num: int,
    beta_block: float,
    gamma: float,
    neigh_size: int,
) -> GraphTerms:
    """The PuzzleMix energy on a ``block_num`` grid, decomposed for a grid graph cut.

    Data term: showing the own image in a block leaves out the partner's saliency there,
    and vice versa. Smoothness: for neighbours (b, c) showing images (a, a') the cost is
    ``P[a, a'] = beta' gamma d_bc(a, a')``; a 2x2 table P splits exactly (up to a constant)
    into ``(P[a,0] + P[a,1]) / 2`` on b, ``(P[0,a'] + P[1,a']) / 2`` on c and the edge weight
    ``(P[0,1] + P[1,0] - P[0,0] - P[1,1]) / 2`` paid only when a != a'.
    """
    size = pixels_own.shape[-1]
    block_size = size // block_num
    neigh = largest_divisor_at_most(block_size, neigh_size)
    k = block_size // neigh
    pooled = {1: F.avg_pool2d(pixels_own, neigh), 0: F.avg_pool2d(pixels_partner, neigh)}  # 1 = own, 0 = partner
    vertical, horizontal = {}, {}
    for a in (0, 1):
        for b in (0, 1):
            v, h = boundary_differences(pooled[a], pooled[b], k)
            vertical[a, b], horizontal[a, b] = beta_block * gamma * v, beta_block * gamma * h

    cost_own, cost_partner = saliency_partner.clone(), saliency_own.clone()
    everything = slice(None)
    top, bottom = (everything, slice(None, -1), everything), (everything, slice(1, None), everything)
    left, right = (everything, everything, slice(None, -1)), (everything, everything, slice(1, None))
    for pair, first, second in ((vertical, top, bottom), (horizontal, left, right)):
        # The first node of an edge (top / left) showing image a pays (P[a,0] + P[a,1]) / 2,
        cost_own[first] += (pair[1, 0] + pair[1, 1]) / 2
        cost_partner[first] += (pair[0, 0] + pair[0, 1]) / 2
        # the second node (bottom / right) showing image a' pays (P[0,a'] + P[1,a']) / 2.
        cost_own[second] += (pair[0, 1] + pair[1, 1]) / 2
        cost_partner[second] += (pair[0, 0] + pair[1, 0]) / 2
    edge_v = (vertical[0, 1] + vertical[1, 0] - vertical[0, 0] - vertical[1, 1]) / 2
    edge_h = (horizontal[0, 1] + horizontal[1, 0] - horizontal[0, 0] - horizontal[1, 1]) / 2
    return GraphTerms(cost_own, cost_partner, edge_v, edge_h)


def label_mask_values(n_labels: int) -> np.ndarray:
    """The mask value (share of the own image) of each graph-cut label: 1, ..., 0."""
    if n_labels < 2:
        raise ValueError(f"n_labels must be >= 2, got {n_labels}")
    return 1.0 - np.arange(n_labels) / (n_labels - 1)


def label_prior(lam: float, n_labels: int) -> np.ndarray:
    """``-log(Binomial(L - 1 - i; L - 1, lam) + 1e-8)`` for label i (mask value 1 - i / (L - 1)).

    The mask value of a block is read as the fraction of L - 1 draws that picked the own
    image with probability lam; 3 labels give -log lam^2, -log 2 lam (1 - lam), -log (1 - lam)^2.
    """
    n = n_labels - 1
    return np.array([-log(comb(n, i) * lam ** (n - i) * (1 - lam) ** i + PRIOR_EPS) for i in range(n_labels)])


def solve_block_mask(
    cost_own: np.ndarray,
    cost_partner: np.ndarray,
    edge_v: np.ndarray,
    edge_h: np.ndarray,
    lam: float,
    beta_block: float,
    eta: float,
    n_labels: int,
) -> np.ndarray:
    """Minimise the PuzzleMix energy of one sample by alpha-beta swap; returns mask values (B, B).

    Label i with mask value m_i costs ``m_i cost_own + (1 - m_i) cost_partner +
    eta / B^2 * prior_i`` per block; neighbours with labels i, j pay
    ``((i - j) / (L - 1))^2 * (beta' + edge)``. gco works in integers, so every term is
    scaled by the reference's ``1000 B^2`` (the label-distance table is kept integral as
    ``(i - j)^2`` and its ``1 / (L - 1)^2`` folded into the edge weights). Edge weights are
    clipped at 0 to keep the swap moves valid; with pixels in [0, 1] and gamma <= 1 they
    never are negative, so the clip only guards unusual settings.
    """
    block_num = cost_own.shape[0]
    scale = 1000.0 * block_num**2
    values = label_mask_values(n_labels)
    prior = eta * label_prior(lam, n_labels) / block_num**2
    unary = np.stack([m * cost_own + (1 - m) * cost_partner + p for m, p in zip(values, prior)], axis=-1)
    labels = np.arange(n_labels)
    distance = ((labels[:, None] - labels[None, :]) ** 2).astype(np.int32)
    edge_scale = scale / (n_labels - 1) ** 2
    cut = gco.cut_grid_graph(
        np.rint(scale * unary).astype(np.int32),
        distance,
        np.rint(edge_scale * np.clip(edge_v + beta_block, 0, None)).astype(np.int32),
        np.rint(edge_scale * np.clip(edge_h + beta_block, 0, None)).astype(np.int32),
        algorithm="swap",
    )
    return values[cut].reshape(block_num, block_num)


@lru_cache(maxsize=8)
def _cell_distances(grid: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    cells = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()
    return (cells[:, None, :] - cells[None, :, :]).pow(2).sum(-1) / (grid - 1) ** 2


def transport_cost_matrix(grid: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``C[p, q] = |p - q|^2 / (grid - 1)^2`` between the cells of a grid x grid board, (G^2, G^2)."""
    return _cell_distances(grid).to(device)


def transport_plan(visible: torch.Tensor, saliency: torch.Tensor, eps: float) -> torch.Tensor:
    """The reference's greedy transport plan, (N, G^2, G^2) with plan[n, p, q] = 1 if cell p moves to q.

    ``visible`` (N, G, G) marks the cells where the mask shows this image, ``saliency``
    (N, G, G) sums to 1 per image. Cost of moving cell p to q:
    ``eps * C[p, q] - s_p * visible_q``. For G rounds, every source takes its cheapest
    destination; of the sources claiming one destination the cheapest wins (ties: the
    lowest index) and each loser pays 1 more for that destination from then on. The
    winners of the last round form the plan: a destination keeps at most one source, a
    source left without one is dropped, and a destination nobody won receives zeros (a
    visible cell is always claimed, by its own content at least, so such cells are hidden
    by the mask). Unlike the reference, which settles a conflict by ``argmin`` over all
    sources, non-claimants included, only claimants compete, so a zero-cost claimant
    cannot lose to a source that never claimed the cell.

    Same rounds as the reference, computed sparsely: a source's choice changes only when
    it lost, so only losers look for a new destination, and rounds stop once nobody lost.
    """
    n, grid, _ = saliency.shape
    cells = grid * grid
    gain = saliency.reshape(n, cells, 1) * visible.reshape(n, 1, cells).to(saliency.dtype)
    cost = eps * transport_cost_matrix(grid, saliency.device) - gain
    sources = torch.arange(cells, device=cost.device).expand(n, cells)
    nobody = torch.full((n, cells), cells, device=cost.device)
    choice = cost.argmin(-1)  # (N, sources): each source's cheapest destination
    for round_ in range(grid):
        claim = cost.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
        best = torch.full((n, cells), float("inf"), dtype=cost.dtype, device=cost.device)
        best = best.scatter_reduce(1, choice, claim, "amin")
        contender = claim == best.gather(1, choice)
        first = nobody.scatter_reduce(1, choice, torch.where(contender, sources, nobody), "amin")
        won = first.gather(1, choice) == sources
        if round_ == grid - 1 or bool(won.all()):
            break
        batch, source = (~won).nonzero(as_tuple=True)
        cost[batch, source, choice[batch, source]] += 1.0
        choice[batch, source] = cost[batch, source].argmin(-1)
    plan = torch.zeros_like(cost)
    return plan.scatter_(-1, choice.unsqueeze(-1), won.unsqueeze(-1).to(cost.dtype))


def transport_blocks(images: torch.Tensor, plan: torch.Tensor, grid: int) -> torch.Tensor:
    """Move the cells of a grid x grid partition of ``images`` (N, C, H, W) as ``plan`` says.

    ``out[cell q] = sum_p plan[p, q] * images[cell p]``, for a plan with at most one
    source per destination (as :func:`transport_plan` makes); computed as a gather.
    """
    n, c, h, w = images.shape
    bh, bw = h // grid, w // grid
    cells = images.reshape(n, c, grid, bh, grid, bw).permute(0, 1, 2, 4, 3, 5).reshape(n, c, grid * grid, bh, bw)
    filled, source = plan.max(dim=1)  # per destination: does a cell arrive, and from where
    index = source.reshape(n, 1, -1, 1, 1).expand(n, c, grid * grid, bh, bw)
    moved = cells.gather(2, index) * filled.reshape(n, 1, -1, 1, 1).to(images.dtype)
    return moved.reshape(n, c, grid, grid, bh, bw).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def upsample_blocks(blocks: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour upsampling of (N, B, B) to (N, 1, size, size); size divisible by B."""
    factor = size // blocks.shape[-1]
    return blocks.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1).unsqueeze(1)


def transport_grid(size: int, block_num: int, cell: int) -> int:
    """Cells per side for transport: cell ``min(cell, size / B)`` px as in the reference, if it divides ``size``."""
    block_size = size // block_num
    cell = min(cell, block_size)
    if cell < 1 or block_size % cell:
        return block_num
    return size // cell


def _to_pixels(images: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """Undo the input normalisation (the smoothness term compares pixel values, as the reference)."""
    if mean is None and std is None:
        return images
    shape = (1, -1, 1, 1)
    mean_t = torch.as_tensor(0.0 if mean is None else mean, dtype=images.dtype, device=images.device)
    std_t = torch.as_tensor(1.0 if std is None else std, dtype=images.dtype, device=images.device)
    return images * std_t.reshape(shape) + mean_t.reshape(shape)


@torch.no_grad()
def puzzlemix_mask(
    images: torch.Tensor,
    saliency: torch.Tensor,
    perm: torch.Tensor,
    lam: float,
    block_num: int,
    *,
    beta: float = 1.2,
    gamma: float = 0.5,
    eta: float = 0.2,
    n_labels: int = 3,
    neigh_size: int = 4,
    transport: bool = True,
    transport_eps: float = 0.8,
    transport_cell: int = 4,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> PuzzleMixResult:
    """Mix ``images`` (N, C, H, W, normalised) with ``images[perm]`` by PuzzleMix (module docstring).

    ``saliency`` is (N, H, W) from :func:`input_saliency`; ``lam`` the prior ratio;
    ``block_num`` the graph-cut grid (must divide H). ``mean``/``std`` (per channel) undo
    the normalisation for the smoothness term; leave them ``None`` if ``images`` are
    already pixel values in [0, 1]. ``transport_cell`` is the transport cell size in pixels
    (the reference's ``t_size``): the transport grid is ``H / min(transport_cell, H / B)``,
    or the block grid if that cell size does not divide H.
    """
    n, _, size, width = images.shape
    if size != width or block_num < 2 or size % block_num:
        raise ValueError(f"block_num must be >= 2 and divide a square image, got {block_num} for {size}x{width}")
    perm = perm.to(images.device)
    partner = images[perm]
    saliency = saliency.to(images.dtype)
    block_saliency = pooled_saliency(saliency, block_num)
    beta_block = beta / block_num / 16  # the reference's normalisation of beta by the grid
    pixels = _to_pixels(images, mean, std)
    terms = graph_terms(
        block_saliency, block_saliency[perm], pixels, pixels[perm], block_num, beta_block, gamma, neigh_size
    )

    # gco runs on the CPU, one sample at a time.
    cost_own, cost_partner = terms.cost_own.double().cpu().numpy(), terms.cost_partner.double().cpu().numpy()
    edge_v, edge_h = terms.edge_v.double().cpu().numpy(), terms.edge_h.double().cpu().numpy()
    blocks = np.stack(
        [
            solve_block_mask(cost_own[i], cost_partner[i], edge_v[i], edge_h[i], lam, beta_block, eta, n_labels)
            for i in range(n)
        ]
    )
    block_mask = torch.as_tensor(blocks, dtype=images.dtype, device=images.device)

    source = images
    if transport:
        grid = transport_grid(size, block_num, transport_cell)
        cell_mask = upsample_blocks(block_mask, grid).squeeze(1)
        cell_saliency = pooled_saliency(saliency, grid)
        source = transport_blocks(images, transport_plan(cell_mask > 0, cell_saliency, transport_eps), grid)
        partner = transport_blocks(partner, transport_plan(cell_mask < 1, cell_saliency[perm], transport_eps), grid)

    mask = upsample_blocks(block_mask, size)
    mixed = mask * source + (1 - mask) * partner
    return PuzzleMixResult(mixed, mask, block_mask, mask.flatten(1).mean(1), source, partner)
