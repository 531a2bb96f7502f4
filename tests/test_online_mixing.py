import itertools

import numpy as np
import pytest
import torch
from torch import nn

from genaug.mixing.mixers import create_mixer
from genaug.mixing.online import (
    cutmix_box,
    kept_area,
    mix_targets,
    sample_lambda,
)
from genaug.mixing.registry import MIXERS
from genaug.mixing.puzzlemix import (
    boundary_differences,
    graph_terms,
    input_saliency,
    label_prior,
    puzzlemix_mask,
    solve_block_mask,
    transport_blocks,
    transport_cost_matrix,
    transport_plan,
)
from genaug.models import create_model
from genaug.training.losses import bce_softmax, soft_cross_entropy


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Recorder(nn.Module):
    """A tiny classifier that remembers the last batch it was given."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        self.seen = x.detach().clone()
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def generator(seed):
    return torch.Generator().manual_seed(seed)


def batch(n=8, size=16, seed=0):
    """Random images and one distinct class per sample, so targets show who was mixed with whom."""
    images = torch.randn(n, 3, size, size, generator=generator(seed))
    return images, torch.eye(n)


def partner_of(targets, i):
    """The class mixed into sample i (its partner's index), or None if the row is unmixed."""
    others = [j for j in torch.nonzero(targets[i] > 0).flatten().tolist() if j != i]
    return others[0] if others else None


def fractal_mixer(bank, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)):
    return create_mixer("fractal", fractals=bank, mean=mean, std=std)


# --- registry and shared helpers ---------------------------------------------------------


def test_registry():
    assert {"cutmix", "fractal", "manifold_mixup", "mixup", "none", "puzzlemix"} <= set(MIXERS.names())
    assert MIXERS.names() == sorted(MIXERS.names())
    assert {"mixup", "manifold_mixup"} <= set(MIXERS.names("*mixup")) and "cutmix" not in MIXERS.names("*mixup")
    with pytest.raises(ValueError, match="unknown mixer 'augmix'.*cutmix.*puzzlemix"):
        create_mixer("augmix")


def test_sample_lambda():
    assert sample_lambda(0.0, generator(0)) == 1.0
    # Beta(1, 1) is uniform, and lambda is drawn by inversion: it is the uniform draw itself.
    assert sample_lambda(1.0, generator(3)) == pytest.approx(torch.rand((), generator=generator(3)).item())
    g = generator(0)
    draws = np.array([sample_lambda(0.4, g) for _ in range(2000)])
    assert draws.min() >= 0 and draws.max() <= 1
    assert draws.mean() == pytest.approx(0.5, abs=0.04)  # symmetric
    assert np.mean((draws < 0.1) | (draws > 0.9)) > 0.4  # alpha < 1 puts mass at the ends
    assert [sample_lambda(2.0, generator(5)) for _ in range(2)] == [sample_lambda(2.0, generator(5))] * 2


def test_mix_targets_are_distributions():
    targets = torch.eye(4)
    mixed = mix_targets(targets, torch.tensor([1, 2, 3, 0]), torch.tensor([0.2, 0.5, 1.0, 0.0]))
    torch.testing.assert_close(mixed[0], torch.tensor([0.2, 0.8, 0.0, 0.0]))
    torch.testing.assert_close(mixed.sum(1), torch.ones(4))


# --- mixup, manifold mixup, CutMix --------------------------------------------------------


def test_mixup_is_reproducible_and_targets_are_distributions():
    images, targets = batch()
    model = Recorder(8)
    logits1, soft1 = create_mixer("mixup", alpha=1.0)(model, images, targets, soft_cross_entropy, generator(7))
    seen1 = model.seen
    logits2, soft2 = create_mixer("mixup", alpha=1.0)(model, images, targets, soft_cross_entropy, generator(7))
    assert torch.equal(logits1, logits2) and torch.equal(soft1, soft2) and torch.equal(seen1, model.seen)
    torch.testing.assert_close(soft1.sum(1), torch.ones(8))
    _, soft3 = create_mixer("mixup", alpha=1.0)(model, images, targets, soft_cross_entropy, generator(8))
    assert not torch.equal(soft1, soft3)
    # The image mix and the target mix use the same lambda and partner.
    for i in range(8):
        j = partner_of(soft1, i)
        if j is not None:
            lam = soft1[i, i]
            torch.testing.assert_close(seen1[i], lam * images[i] + (1 - lam) * images[j])


# Not PuzzleMix: its label prior at lambda = 1 is finite (-log(0 + 1e-8), as in the
# reference), so a very salient partner block can still win a block.
@pytest.mark.parametrize("name", ["mixup", "cutmix", "manifold_mixup"])
def test_alpha_zero_is_the_identity(name):
    images, targets = batch()
    model = create_model("preactresnet18", num_classes=8, width=0.125).eval()
    logits, soft = create_mixer(name, alpha=0.0)(model, images, targets, soft_cross_entropy, generator(0))
    assert torch.equal(soft, targets)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(images))


def test_cutmix_lambda_equals_the_kept_area():
    n = 8
    images = torch.arange(1.0, n + 1).reshape(n, 1, 1, 1).expand(n, 3, 16, 16).contiguous()  # sample i is all i + 1
    targets = torch.eye(n)
    model = Recorder(n)
    for seed in range(10):
        _, soft = create_mixer("cutmix", alpha=1.0)(model, images, targets, soft_cross_entropy, generator(seed))
        kept = (model.seen == images).float().mean((1, 2, 3))
        torch.testing.assert_close(torch.diagonal(soft), kept, rtol=0, atol=1e-6)
        torch.testing.assert_close(soft.sum(1), torch.ones(n))


def test_cutmix_box():
    for seed in range(20):
        lam = 0.75  # side sqrt(1 - lam) * 32 = 16
        y0, y1, x0, x1 = box = cutmix_box(32, 32, lam, generator(seed))
        assert 0 <= y0 <= y1 <= 32 and 0 <= x0 <= x1 <= 32
        assert y1 - y0 <= 16 and x1 - x0 <= 16
        if 0 < y0 and y1 < 32:  # not clipped: the full side
            assert y1 - y0 == 16
        assert kept_area(box, 32, 32) == 1 - (y1 - y0) * (x1 - x0) / 1024
    assert cutmix_box(32, 32, 1.0, generator(0))[1] - cutmix_box(32, 32, 1.0, generator(0))[0] == 0


def test_manifold_mixup_on_preactresnet18():
    images, targets = batch(n=6)
    model = create_model("preactresnet18", num_classes=6, width=0.125)
    mixer = create_mixer("manifold_mixup", alpha=2.0)
    logits, soft = mixer(model, images, targets, soft_cross_entropy, generator(1))
    assert logits.shape == (6, 6)
    torch.testing.assert_close(soft.sum(1), torch.ones(6))
    soft_cross_entropy(logits, soft).backward()
    assert model.fc.weight.grad is not None
    model.eval()
    with torch.no_grad():
        again = mixer(model, images, targets, soft_cross_entropy, generator(1))
        assert torch.equal(again[1], soft)


def test_manifold_mixup_needs_a_model_with_mixing_points():
    images, targets = batch(n=4)
    with pytest.raises(TypeError, match="manifold_mixup needs a model"):
        create_mixer("manifold_mixup")(Recorder(4), images, targets, soft_cross_entropy, generator(0))


@pytest.mark.parametrize("name", ["none", "mixup", "manifold_mixup", "cutmix", "puzzlemix", "fractal"])
def test_mixed_targets_suit_both_losses(name):
    images, targets = batch(n=6)
    kwargs = {"fractals": torch.rand(3, 3, 8, 8), "mean": (0.5,) * 3, "std": (0.25,) * 3} if name == "fractal" else {}
    model = create_model("preactresnet18", num_classes=6, width=0.125)
    logits, soft = create_mixer(name, **kwargs)(model, images, targets, soft_cross_entropy, generator(2))
    assert soft.shape == targets.shape and (soft >= 0).all()
    torch.testing.assert_close(soft.sum(1), torch.ones(6))
    assert torch.isfinite(soft_cross_entropy(logits, soft)) and torch.isfinite(bce_softmax(logits, soft))


# --- PuzzleMix ----------------------------------------------------------------------------


def test_input_saliency_takes_only_the_input_gradient():
    images, targets = batch(n=4)
    model = Recorder(4)
    saliency = input_saliency(model, images, targets, soft_cross_entropy)
    assert saliency.shape == (4, 16, 16)
    assert all(p.grad is None for p in model.parameters())
    x = images.clone().requires_grad_(True)
    soft_cross_entropy(model(x), targets).backward()
    torch.testing.assert_close(saliency, x.grad.pow(2).mean(1).sqrt())


@pytest.mark.parametrize("transport", [False, True])
@pytest.mark.parametrize("block_num", [2, 4, 8, 16])
def test_puzzlemix_mask_mixes_pixel_by_pixel(block_num, transport):
    images, _ = batch(n=6)
    saliency = torch.rand(6, 16, 16, generator=generator(1))
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    result = puzzlemix_mask(images, saliency, perm, 0.4, block_num, transport=transport)
    assert result.mask.shape == (6, 1, 16, 16)
    assert set(result.mask.unique().tolist()) <= {0.0, 0.5, 1.0}  # the 3 labels
    torch.testing.assert_close(result.ratio, result.mask.mean((1, 2, 3)))
    torch.testing.assert_close(result.mixed, result.mask * result.source + (1 - result.mask) * result.partner)
    if not transport:
        assert torch.equal(result.source, images) and torch.equal(result.partner, images[perm])
        torch.testing.assert_close(result.mixed, result.mask * images + (1 - result.mask) * images[perm])


def test_puzzlemix_keeps_each_images_salient_half():
    images, _ = batch(n=2)
    saliency = torch.zeros(2, 16, 16)
    saliency[0, :, :8] = 1  # image 0 matters on the left, image 1 on the right
    saliency[1, :, 8:] = 1
    result = puzzlemix_mask(images, saliency, torch.tensor([1, 0]), 0.5, 4, transport=False)
    left_ones = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 4)
    assert torch.equal(result.block_mask[0], left_ones)
    assert torch.equal(result.block_mask[1], 1 - left_ones)
    torch.testing.assert_close(result.ratio, torch.tensor([0.5, 0.5]))


def test_puzzlemix_mixer_applies_the_mask_mean_to_the_targets():
    images, targets = batch(n=8)
    model = Recorder(8)
    mixer = create_mixer("puzzlemix", alpha=1.0, transport=False)
    for seed in range(3):
        _, soft = mixer(model, images, targets, soft_cross_entropy, generator(seed))
        torch.testing.assert_close(soft.sum(1), torch.ones(8))
        for i in range(8):
            j = partner_of(soft, i)
            if j is None:
                torch.testing.assert_close(model.seen[i], images[i])
                continue
            # Invert mixed = m x_i + (1 - m) x_j per pixel to read the mask that was applied.
            mask = (model.seen[i] - images[j]) / (images[i] - images[j])
            torch.testing.assert_close(mask, mask[:1].expand_as(mask), atol=1e-3, rtol=0)
            assert mask.min() > -1e-3 and mask.max() < 1 + 1e-3
            assert soft[i, i].item() == pytest.approx(mask.mean().item(), abs=1e-4)


def test_puzzlemix_is_reproducible():
    images, targets = batch(n=6)
    model = Recorder(6)
    mixer = create_mixer("puzzlemix")
    first = mixer(model, images, targets, soft_cross_entropy, generator(4))
    seen = model.seen
    second = mixer(model, images, targets, soft_cross_entropy, generator(4))
    assert torch.equal(first[1], second[1]) and torch.equal(seen, model.seen)


def test_label_prior_is_the_binomial():
    lam = 0.3
    expected = -np.log(np.array([lam**2, 2 * lam * (1 - lam), (1 - lam) ** 2]) + 1e-8)
    np.testing.assert_allclose(label_prior(lam, 3), expected)
    np.testing.assert_allclose(label_prior(lam, 2), -np.log(np.array([lam, 1 - lam]) + 1e-8))


def _direct_energy(labels, saliency_own, saliency_partner, pooled, k, beta_gamma):
    """The binary PuzzleMix energy written out block by block (1 = own image, 0 = partner)."""
    blocks = labels.shape[0]
    labels = labels.tolist()
    energy = sum(
        saliency_partner[r, c] if labels[r][c] else saliency_own[r, c] for r in range(blocks) for c in range(blocks)
    )
    for r, c in itertools.product(range(blocks), range(blocks)):
        if r + 1 < blocks:  # boundary with the block below: last pooled row vs first pooled row
            upper, lower = pooled[labels[r][c]], pooled[labels[r + 1][c]]
            diff = (upper[:, (r + 1) * k - 1, c * k : (c + 1) * k] - lower[:, (r + 1) * k, c * k : (c + 1) * k]).abs()
            energy += beta_gamma * diff.mean()
        if c + 1 < blocks:
            left, right = pooled[labels[r][c]], pooled[labels[r][c + 1]]
            diff = (left[:, r * k : (r + 1) * k, (c + 1) * k - 1] - right[:, r * k : (r + 1) * k, (c + 1) * k]).abs()
            energy += beta_gamma * diff.mean()
    return float(energy)


def test_graph_terms_decompose_the_smoothness_energy_exactly():
    torch.manual_seed(0)
    blocks, size, neigh = 3, 12, 2  # block 4 px, pooled 2 px, k = 2 pooled pixels per block side
    pixels = torch.rand(2, 3, size, size)
    saliency = torch.rand(2, blocks, blocks)
    terms = graph_terms(saliency[:1], saliency[1:], pixels[:1], pixels[1:], blocks, 0.1, 0.5, neigh)
    pooled = {1: torch.nn.functional.avg_pool2d(pixels[0], neigh), 0: torch.nn.functional.avg_pool2d(pixels[1], neigh)}
    differences = []
    for bits in itertools.product((0, 1), repeat=blocks * blocks):
        labels = torch.tensor(bits).reshape(blocks, blocks)
        decomposed = (labels * terms.cost_own[0] + (1 - labels) * terms.cost_partner[0]).sum()
        decomposed += ((labels[1:] != labels[:-1]) * terms.edge_v[0]).sum()
        decomposed += ((labels[:, 1:] != labels[:, :-1]) * terms.edge_h[0]).sum()
        direct = _direct_energy(labels, saliency[0], saliency[1], pooled, 2, 0.1 * 0.5)
        differences.append(float(decomposed) - direct)
    assert np.ptp(differences) < 1e-5  # equal up to one constant


def test_boundary_differences_shapes():
    v, h = boundary_differences(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), 2)
    assert v.shape == (2, 3, 4) and h.shape == (2, 4, 3)


def test_binary_graph_cut_finds_the_minimum_energy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        cost_own, cost_partner = rng.random((3, 3)) / 9, rng.random((3, 3)) / 9
        edge_v, edge_h = rng.random((2, 3)) * 0.01, rng.random((3, 2)) * 0.01
        lam, beta, eta = 0.6, 0.02, 0.2
        prior = eta * label_prior(lam, 2) / 9

        def energy(mask):  # mask 1 = own image (label 0), 0 = partner (label 1)
            unary = np.where(mask == 1, cost_own + prior[0], cost_partner + prior[1]).sum()
            vertical = ((mask[1:] != mask[:-1]) * (edge_v + beta)).sum()
            horizontal = ((mask[:, 1:] != mask[:, :-1]) * (edge_h + beta)).sum()
            return unary + vertical + horizontal

        best = min(energy(np.array(bits).reshape(3, 3)) for bits in itertools.product((0, 1), repeat=9))
        found = solve_block_mask(cost_own, cost_partner, edge_v, edge_h, lam, beta, eta, n_labels=2)
        assert energy(found) <= best + 1e-3  # exact up to gco's integer rounding


# --- transport ----------------------------------------------------------------------------


def _dense_transport_plan(visible, saliency, eps):
    """The reference's rounds written densely (with claimants-only conflicts)."""
    n, grid, _ = saliency.shape
    cost = eps * transport_cost_matrix(grid) - saliency.reshape(n, -1, 1) * visible.reshape(n, 1, -1).float()
    for _ in range(grid):
        choice = torch.zeros_like(cost).scatter_(-1, cost.argmin(-1, keepdim=True), 1.0)
        claims = torch.where(choice > 0, cost, torch.full_like(cost, float("inf")))
        won = torch.zeros_like(cost).scatter_(-2, claims.argmin(-2, keepdim=True), 1.0) * choice
        cost = cost + (choice - won)
    return won


def test_transport_plan_matches_the_dense_rounds():
    g = generator(0)
    for grid in (2, 4, 8):
        saliency = torch.rand(5, grid, grid, generator=g) ** 4
        saliency = saliency / saliency.sum((1, 2), keepdim=True)
        visible = torch.rand(5, grid, grid, generator=g) > 0.5
        plan = transport_plan(visible, saliency, eps=0.05)
        assert torch.equal(plan, _dense_transport_plan(visible, saliency, 0.05))
        assert (plan.sum(1) <= 1).all() and (plan.sum(2) <= 1).all()
        # Every visible cell receives something.
        assert (plan.sum(1).reshape(5, grid, grid)[visible] == 1).all()


def test_transport_keeps_everything_in_place_when_all_is_visible():
    saliency = torch.full((1, 4, 4), 1 / 16)
    plan = transport_plan(torch.ones(1, 4, 4, dtype=torch.bool), saliency, eps=0.8)
    assert torch.equal(plan[0], torch.eye(16))


def test_transport_moves_a_salient_cell_into_view():
    saliency = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])  # all saliency in the bottom-right cell
    visible = torch.tensor([[[True, False], [False, False]]])  # the mask shows only the top-left
    plan = transport_plan(visible, saliency, eps=0.1)
    assert plan[0, 3, 0] == 1
    images = torch.arange(16.0).reshape(1, 1, 4, 4)
    moved = transport_blocks(images, plan, 2)
    assert torch.equal(moved[0, 0, :2, :2], images[0, 0, 2:, 2:])


# --- fractal ------------------------------------------------------------------------------


def test_fractal_mix_weight_is_recovered_and_labels_kept():
    images = torch.zeros(16, 3, 16, 16)
    targets = torch.eye(16)
    bank = torch.ones(4, 3, 8, 8)  # constant fractal 1.0, resized to 16x16
    model = Recorder(16)
    _, soft = fractal_mixer(bank)(model, images, targets, soft_cross_entropy, generator(0))
    assert torch.equal(soft, targets)
    weights = model.seen.mean((1, 2, 3))
    torch.testing.assert_close(model.seen, weights.reshape(-1, 1, 1, 1).expand_as(model.seen))
    assert weights.min() >= 0.2 and weights.max() <= 0.3
    assert weights.std() > 0  # one l per sample


def test_fractal_is_normalised_like_the_images():
    images = torch.randn(8, 3, 8, 8, generator=generator(0))
    bank = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)  # uint8 255 = 1.0 = (1 - 0.5) / 0.25 = 2 normalised
    model = Recorder(8)
    fractal_mixer(bank, mean=(0.5,) * 3, std=(0.25,) * 3)(model, images, torch.eye(8), soft_cross_entropy, generator(1))
    weights = (model.seen - images) / (2.0 - images)  # x' = l * 2 + (1 - l) * x
    torch.testing.assert_close(weights, weights[:, :1, :1, :1].expand_as(weights), atol=1e-4, rtol=0)
    assert weights.min() >= 0.2 - 1e-5 and weights.max() <= 0.3 + 1e-5


def test_fractal_bank_is_validated():
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        fractal_mixer(torch.full((1, 3, 4, 4), 2.0))
    with pytest.raises(ValueError, match="channels"):
        fractal_mixer(torch.rand(1, 1, 4, 4), mean=(0.5,), std=(0.2,))(
            Recorder(2), torch.zeros(2, 3, 4, 4), torch.eye(2), soft_cross_entropy, generator(0)
        )
