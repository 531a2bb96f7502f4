"""Online batch mixers: mixup, manifold mixup, CutMix, PuzzleMix, fractal (docs/methods/online-mixing.md).

A mixer is called inside the training loop with the model, a normalised float batch
``images`` (N, C, H, W), soft one-hot ``targets`` (N, K), the loss and a
``torch.Generator``; it runs the forward pass itself (manifold mixup mixes inside the
model, PuzzleMix needs an input-gradient pass first) and returns ``(logits,
mixed_targets)``. All randomness comes from the generator, so a run is reproducible.
Mixed targets are convex combinations of target rows, so they stay distributions (rows
sum to 1) and suit both the ``ce`` and ``bce_softmax`` losses.

>>> mixer = create_mixer("cutmix", alpha=1.0)   # genaug.mixing.mixers: the registered mixers
>>> logits, soft_targets = mixer(model, images, targets, loss_fn, generator)

The math is in pure functions (:func:`sample_lambda`, :func:`mix_targets`,
:func:`cutmix_box`, :func:`genaug.mixing.puzzlemix.puzzlemix_mask`,
:func:`fractal_mix`) usable without a model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from scipy.special import betaincinv
from torch import Tensor, nn

from genaug.mixing.puzzlemix import BLOCK_NUMS, input_saliency, puzzlemix_mask, valid_block_nums
from genaug.models.layers import MANIFOLD_MIX_LAYERS, ManifoldMix

#: The keyword parameters of :func:`puzzlemix_mask` a :class:`PuzzleMix` passes on.
MASK_PARAMETERS = frozenset(
    name for name, p in inspect.signature(puzzlemix_mask).parameters.items()
    if p.kind is p.KEYWORD_ONLY and name not in ("mean", "std")
)

LossFn = Callable[[Tensor, Tensor], Tensor]


class OnlineMixer(Protocol):
    """What the trainer calls once per batch."""

    def __call__(
        self, model: nn.Module, images: Tensor, targets: Tensor, loss_fn: LossFn, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]: ...


# --- pure helpers -----------------------------------------------------------------------


def sample_lambda(alpha: float, generator: torch.Generator) -> float:
    """lambda ~ Beta(alpha, alpha), and lambda = 1 when alpha = 0 (no mixing).

    Drawn by inversion, ``lambda = F^-1_Beta(alpha, alpha)(u)`` with ``u ~ U(0, 1)`` from
    ``generator``, so one uniform draw from the run's generator fixes it.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return 1.0
    u = torch.rand((), generator=generator, device=generator.device).item()
    return float(betaincinv(alpha, alpha, u))


def sample_permutation(n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """A uniformly random permutation of the batch (each sample's mixing partner)."""
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def mix_targets(targets: Tensor, perm: Tensor, ratio: float | Tensor) -> Tensor:
    """``ratio * y + (1 - ratio) * y[perm]``; ``ratio`` a scalar or one value per sample (N,)."""
    ratio = torch.as_tensor(ratio, dtype=targets.dtype, device=targets.device).reshape(-1, 1)
    return ratio * targets + (1 - ratio) * targets[perm.to(targets.device)]


def cutmix_box(h: int, w: int, lam: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    """The box ``(y0, y1, x0, x1)`` (end exclusive) that CutMix pastes from the partner.

    Side ``sqrt(1 - lam) * (H, W)`` around a centre uniform in [0, H) x [0, W), clipped to
    the image and truncated to whole pixels (the reference's ``mixup_box``). The share of
    the own image that remains is :func:`kept_area` of the box, which corrects lambda.
    """
    u_y, u_x = torch.rand(2, generator=generator, device=generator.device).tolist()
    centre_y, centre_x = u_y * h, u_x * w
    half_h, half_w = (1 - lam) ** 0.5 * h / 2, (1 - lam) ** 0.5 * w / 2
    y0, y1 = int(min(max(centre_y - half_h, 0), h)), int(min(max(centre_y + half_h, 0), h))
    x0, x1 = int(min(max(centre_x - half_w, 0), w)), int(min(max(centre_x + half_w, 0), w))
    return y0, y1, x0, x1


def kept_area(box: tuple[int, int, int, int], h: int, w: int) -> float:
    """``1 - (y1 - y0)(x1 - x0) / (H W)``: the share of pixels outside the box."""
    y0, y1, x0, x1 = box
    return 1 - (y1 - y0) * (x1 - x0) / (h * w)


def paste_box(images: Tensor, partner: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """A copy of ``images`` with ``partner``'s pixels inside ``box``."""
    y0, y1, x0, x1 = box
    out = images.clone()
    out[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
    return out


def fractal_mix(images: Tensor, fractals: Tensor, weights: Tensor) -> Tensor:
    """``x' = l * fractal + (1 - l) * x`` per sample; ``weights`` holds l, shape (N,)."""
    weight = weights.to(images.dtype).reshape(-1, 1, 1, 1)
    return weight * fractals + (1 - weight) * images


def _check_batch(images: Tensor, targets: Tensor) -> None:
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float (N, C, H, W) batch, got {tuple(images.shape)} {images.dtype}")
    if targets.ndim != 2 or targets.shape[0] != images.shape[0]:
        raise ValueError(f"targets must be soft one-hot (N, K) with N = {images.shape[0]}, got {tuple(targets.shape)}")


def _unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DistributedDataParallel / torch.compile wrappers."""
    for attribute in ("module", "_orig_mod"):
        inner = getattr(model, attribute, None)
        if isinstance(inner, nn.Module):
            return _unwrap(inner)
    return model


# --- mixers -----------------------------------------------------------------------------


class NoMix:
    """No mixing: the plain forward pass and the targets unchanged."""

    def __call__(
        self, model: nn.Module, images: Tensor, targets: Tensor, loss_fn: LossFn, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        _check_batch(images, targets)
        return model(images), targets


class PairMixer:
    """A mixer of each sample with a partner: the batch checked, then the partner permutation
    and lambda ~ Beta(alpha, alpha) drawn from the generator (in that order) and handed to
    :meth:`mix`, which runs the forward pass and returns ``(logits, mixed targets)``."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def __call__(
        self, model: nn.Module, images: Tensor, targets: Tensor, loss_fn: LossFn, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        _check_batch(images, targets)
        perm = sample_permutation(len(images), generator, images.device)
        lam = sample_lambda(self.alpha, generator)
        return self.mix(model, images, targets, loss_fn, generator, perm, lam)

    def mix(
        self, model: nn.Module, images: Tensor, targets: Tensor, loss_fn: LossFn, generator: torch.Generator,
        perm: Tensor, lam: float,
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class Mixup(PairMixer):
    """Input mixup (Zhang et al. 2018): ``x' = lam x + (1 - lam) x[perm]``, lam ~ Beta(alpha, alpha)."""

    def mix(
        self, model: nn.Module, images: Tensor, targets: Tensor, loss_fn: LossFn, generator: torch.Generator,
        perm: Tensor, lam: float,
    ) -> tuple[Tensor, Tensor]:
        mixed = lam * images + (1 - lam) * images[perm]
        return model(mixed), mix_targets(targets, perm, lam)


class ManifoldMixup(PairMixer):
    """Manifold mixup (Verma et al. 2019): mixup of the hidden state at a random layer.

    The layer is uniform over ``layers`` (default {0 = input, 1 = after stage 1,
    2 = after stage 2}); the model's ``forward(x, mix=...)`` applies the
    :class:`~genaug.models.ManifoldMix` there. alpha 2.0 is the reference's CIFAR setting.
    """

    def __init__(self, alpha: float = 2.0, layers: Sequence[int] = MANIFOLD_MIX_LAYERS):
        if not layers:
            raise ValueError("manifold_mixup needs at least one layer")
        self.alpha = alpha
        self.layers = tuple(layers)

    def mix(
        self, model: nn.Module, images: Tensor, targets: Tensor, loss_fn: LossFn, generator: torch.Generator,
        perm: Tensor, lam: float,
    ) -> tuple[Tensor, Tensor]:
        supported = getattr(_unwrap(model), "manifold_mix_layers", ())
        if not set(self.layers) <= set(supported):
            raise TypeError(
                f"manifold_mixup needs a model whose forward(x, mix=...) mixes at layers {self.layers}; "
                f"{type(_unwrap(model)).__name__} supports {tuple(supported)} (use a genaug.models classifier)"
            )
        layer = self.layers[int(torch.randint(len(self.layers), (), generator=generator, device=generator.device))]
        logits = model(images, mix=ManifoldMix(layer, lam, perm))
        return logits, mix_targets(targets, perm, lam)


class CutMix(PairMixer):
    """CutMix (Yun et al. 2019): one box of the partner pasted into each image.

    The same box for the whole batch; lambda is corrected to the share of the image kept.
    """

    def mix(
        self, model: nn.Module, images: Tensor, targets: Tensor, loss_fn: LossFn, generator: torch.Generator,
        perm: Tensor, lam: float,
    ) -> tuple[Tensor, Tensor]:
        h, w = images.shape[-2:]
        box = cutmix_box(h, w, lam, generator)
        mixed = paste_box(images, images[perm], box)
        return model(mixed), mix_targets(targets, perm, kept_area(box, h, w))


class PuzzleMix(PairMixer):
    """PuzzleMix (Kim et al. 2020), see :mod:`genaug.mixing.puzzlemix` for the method.

    Per batch: input saliency from a clean forward/backward, lambda ~ Beta(alpha, alpha),
    a permutation, a block grid uniform over ``block_nums`` that divide the image size,
    the graph-cut mask (and transport), then the forward pass on the mixed batch.
    ``mean``/``std`` are the normalisation of ``images`` (the smoothness term compares
    pixel values in [0, 1]); give the dataset's, or ``None`` if images are unnormalised.
    Defaults are the reference's CIFAR recipe. As in the reference, alpha = 0 (lambda = 1)
    makes the own image very likely but not certain: the label prior is finite
    (``-log(0 + 1e-8)``), so a very salient partner block can still win.

    Not reproduced from the reference: its optional adversarial input noise
    (``adv_p``) and the extra clean-batch loss (``clean_lam``), which the
    ``(logits, targets)`` contract has no room for.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        block_nums: Sequence[int] = BLOCK_NUMS,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        **params: Any,
    ):
        """``params``: the mask's keyword parameters (beta, gamma, eta, n_labels, neigh_size,
        transport, transport_eps, transport_cell), defaults those of :func:`puzzlemix_mask`."""
        unknown = sorted(set(params) - MASK_PARAMETERS)
        if unknown:
            raise TypeError(f"PuzzleMix got an unexpected parameter {unknown[0]!r} (allowed: {', '.join(sorted(MASK_PARAMETERS))})")
        self.alpha = alpha
        self.block_nums = tuple(block_nums)
        self.mean, self.std = mean, std
        self.params = params

    def mix(
        self, model: nn.Module, images: Tensor, targets: Tensor, loss_fn: LossFn, generator: torch.Generator,
        perm: Tensor, lam: float,
    ) -> tuple[Tensor, Tensor]:
        saliency = input_saliency(model, images, targets, loss_fn)  # no draw from the generator
        choices = valid_block_nums(*images.shape[-2:], self.block_nums)
        block_num = choices[int(torch.randint(len(choices), (), generator=generator, device=generator.device))]
        result = puzzlemix_mask(images, saliency, perm, lam, block_num, mean=self.mean, std=self.std, **self.params)
        return model(result.mixed), mix_targets(targets, perm, result.ratio)


class FractalMix:
    """Online fractal mixing (docs/methods/online-mixing.md): ``x' = l * fractal + (1 - l) * x``, l ~ U(low, high).

    One fractal drawn uniformly from the bank per sample, resized (bilinear, antialiased)
    to the batch's image size and normalised with ``mean``/``std`` exactly like the
    images; the hard label is kept. ``fractals`` is a bank (M, C, h, w), uint8 in
    [0, 255] or float in [0, 1]. The reference's two bugs (unnormalised fractals, labels
    mixed with a random other sample) are not reproduced.
    """

    def __init__(
        self,
        fractals: Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        low: float = 0.2,
        high: float = 0.3,
    ):
        if fractals.ndim != 4 or len(fractals) == 0:
            raise ValueError(f"fractals must be a non-empty (M, C, h, w) bank, got shape {tuple(fractals.shape)}")
        if fractals.dtype == torch.uint8:
            bank = fractals.float() / 255
        elif fractals.is_floating_point():
            if fractals.min() < 0 or fractals.max() > 1:
                raise ValueError("a float fractal bank must hold values in [0, 1]")
            bank = fractals.float()
        else:
            raise ValueError(f"fractals must be uint8 or float, got {fractals.dtype}")
        if not 0 <= low <= high <= 1:
            raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
        self.bank = bank
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.low, self.high = low, high
        self._resized: dict[tuple, Tensor] = {}

    def normalised_bank(self, size: tuple[int, int], device: torch.device, dtype: torch.dtype) -> Tensor:
        """The bank resized to ``size`` and normalised like the images (cached per size and device)."""
        key = (tuple(size), str(device), dtype)
        if key not in self._resized:
            bank = self.bank
            if tuple(bank.shape[-2:]) != tuple(size):
                bank = F.interpolate(bank, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
                bank = bank.clamp(0, 1)
            self._resized[key] = ((bank - self.mean) / self.std).to(device=device, dtype=dtype)
        return self._resized[key]

    def __call__(
        self, model: nn.Module, images: Tensor, targets: Tensor, loss_fn: LossFn, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        _check_batch(images, targets)
        if images.shape[1] != self.bank.shape[1]:
            raise ValueError(f"fractal bank has {self.bank.shape[1]} channels, images have {images.shape[1]}")
        n = len(images)
        index = torch.randint(len(self.bank), (n,), generator=generator, device=generator.device)
        weights = self.low + (self.high - self.low) * torch.rand(n, generator=generator, device=generator.device)
        bank = self.normalised_bank(images.shape[-2:], images.device, images.dtype)
        mixed = fractal_mix(images, bank[index.to(images.device)], weights.to(images.device))
        return model(mixed), targets
