"""Fractal blending and genaug's own fractal bank (docs/methods/diffusemix.md).

The reference downloads a set of fractal images; genaug renders its own, FractalDB-style:
each fractal is the attractor of a random iterated function system (IFS) of 2-4
contractive affine maps, drawn by the chaos game and coloured by which map produced each
point. Fractal ``i`` of a bank seeded ``s`` depends only on ``(s, i)``, so any fractal is
reproducible alone, and the same IFS is accepted whatever the output size.

Banks are uint8 tensors ``(n, 3, size, size)``, cached in
``GENAUG_HOME/fractals/<n>_<size>_<seed>.safetensors``; a folder of fractal images can be
used instead.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genaug.files import save_safetensors
from genaug.home import cache_dir
from genaug.mixing.concat import RNG, convex_combination, numpy_rng

if TYPE_CHECKING:
    from genaug.mixing.config import FractalBankConfig

FRACTAL_ALPHA = 0.2
BANK_SIZE = 256  # fractals in a generated bank
BANK_RESOLUTION = 64  # px; blends resize the fractal to the image
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Rendering and acceptance of an IFS. Bump BANK_FORMAT whenever any of these, or the
# sampling below, changes: cached banks carry it and are rebuilt when it differs.
BANK_FORMAT = "1"
MAPS = (2, 4)  # number of affine maps, inclusive
WALKERS = 2000  # chaos-game points iterated in parallel ...
STEPS = 50  # ... for this many steps: 100k points
FILL_GRID = 64  # the filling ratio is measured on this grid, whatever the output size
FILL_RANGE = (0.10, 0.45)  # below: lines and dust; above: shapeless clouds
MARGIN = 0.05  # of the side, left empty around the attractor
MAX_SYSTEMS = 1000  # IFS draws per fractal before giving up (acceptance is about 1/2)


# ---------------------------------------------------------------------------------------
# blending
# ---------------------------------------------------------------------------------------


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing of (N, C, H, W) images, keeping the dtype."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    resized = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    if images.dtype == torch.uint8:
        return resized.round().clamp(0, 255).to(torch.uint8)
    return resized.to(images.dtype)


def _fractal_like(fractal: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The fractal as float in the image's value scale, size and channel count.

    uint8 means [0, 255] and float means [0, 1] when the two dtypes differ; a 3-channel
    fractal is averaged for a 1-channel image, a 1-channel one repeated for 3 channels.
    """
    if fractal.dim() == 3:
        fractal = fractal.unsqueeze(0)
    values = fractal.float()
    if fractal.dtype == torch.uint8 and image.is_floating_point():
        values = values / 255.0
    elif fractal.is_floating_point() and image.dtype == torch.uint8:
        values = values * 255.0
    values = resize_images(values, tuple(image.shape[-2:]))
    channels = image.shape[-3]
    if values.shape[1] != channels:
        if channels == 1:
            values = values.mean(dim=1, keepdim=True)
        elif values.shape[1] == 1:
            values = values.expand(-1, channels, -1, -1)
        else:
            raise ValueError(f"cannot blend a {values.shape[1]}-channel fractal into a {channels}-channel image")
    return values.to(image.device)


def fractal_blend(
    image: torch.Tensor, fractal: torch.Tensor, alpha: float | torch.Tensor = FRACTAL_ALPHA
) -> torch.Tensor:
    """``out = (1 - alpha) * image + alpha * fractal``.

    ``image`` is (C, H, W) or (N, C, H, W); ``fractal`` one (C, h, w) fractal or a batch,
    resized to the image (bilinear, antialias) when sizes differ and brought to the image's
    value scale (uint8 = [0, 255], float = [0, 1]). ``alpha`` is a float or an (N,) tensor
    of per-sample weights.
    """
    if image.dim() not in (3, 4):
        raise ValueError(f"expected a (C, H, W) image or an (N, C, H, W) batch, got shape {tuple(image.shape)}")
    if isinstance(alpha, torch.Tensor):
        if ((alpha < 0) | (alpha > 1)).any():
            raise ValueError("alpha must be in [0, 1]")
        alpha = alpha.reshape(-1, 1, 1, 1) if image.dim() == 4 else alpha.reshape(1, 1, 1)
    elif not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    values = _fractal_like(fractal, image)
    if image.dim() == 3:
        values = values[0]
    return convex_combination(image, values, alpha)


# ---------------------------------------------------------------------------------------
# random iterated function systems
# ---------------------------------------------------------------------------------------


def sample_ifs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random IFS: ``k ~ U{2..4}`` maps ``x -> A x + b``, ``A``, ``b`` entries ~ U(-1, 1).

    Maps whose largest singular value is >= 1 are redrawn, so every map is a contraction
    and the attractor exists. Returns ``(A (k, 2, 2), b (k, 2), p (k,))``, with FractalDB's
    map probabilities ``p_i`` proportional to ``|det A_i|`` (floored so no map is unused).
    """
    count = int(rng.integers(MAPS[0], MAPS[1] + 1))
    linear = np.empty((count, 2, 2))
    for i in range(count):
        while True:
            candidate = rng.uniform(-1, 1, (2, 2))
            if np.linalg.norm(candidate, 2) < 1:  # spectral norm = largest singular value
                break
        linear[i] = candidate
    shift = rng.uniform(-1, 1, (count, 2))
    weight = np.maximum(np.abs(np.linalg.det(linear)), 1e-3)
    return linear, shift, weight / weight.sum()


def chaos_game(
    linear: np.ndarray, shift: np.ndarray, prob: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Points of the attractor, ``(2, WALKERS * STEPS)`` (x row, y row), and the map that
    produced each.

    All walkers start at the fixed point of map 0, ``(I - A_0)^-1 b_0``, which lies on the
    attractor, so no burn-in is needed; they then apply independently chosen maps.
    """
    start = np.linalg.solve(np.eye(2) - linear[0], shift[0])
    choice = np.searchsorted(np.cumsum(prob), rng.random((STEPS, WALKERS)), side="right")
    choice = np.minimum(choice, len(prob) - 1)  # guards the cumsum's last value < 1 by rounding
    x = np.full(WALKERS, start[0])
    y = np.full(WALKERS, start[1])
    points = np.empty((2, STEPS, WALKERS))
    for step in range(STEPS):
        a, b = linear[choice[step]], shift[choice[step]]
        x, y = a[:, 0, 0] * x + a[:, 0, 1] * y + b[:, 0], a[:, 1, 0] * x + a[:, 1, 1] * y + b[:, 1]
        points[0, step], points[1, step] = x, y
    return points.reshape(2, -1), choice.reshape(-1)


def _pixel_index(points: np.ndarray, size: int) -> np.ndarray:
    """Flat pixel index of each point, the attractor scaled uniformly and centred in the square."""
    x, y = points
    x_low, x_high, y_low, y_high = x.min(), x.max(), y.min(), y.max()
    extent = max(x_high - x_low, y_high - y_low, 1e-12)
    scale = size * (1 - 2 * MARGIN) / extent
    # Coordinates are >= size * MARGIN > 0 here, so truncation is the floor.
    column = ((x - (x_low + x_high) / 2) * scale + size / 2).astype(np.int64)
    row = ((y - (y_low + y_high) / 2) * scale + size / 2).astype(np.int64)
    np.clip(column, 0, size - 1, out=column)
    np.clip(row, 0, size - 1, out=row)
    return row * size + column


def filling_ratio(points: np.ndarray, size: int = FILL_GRID) -> float:
    """Fraction of the ``size x size`` grid's pixels hit by at least one point."""
    hits = np.bincount(_pixel_index(points, size), minlength=size * size)
    return float(np.count_nonzero(hits)) / (size * size)


def render_fractal(points: np.ndarray, maps: np.ndarray, colours: np.ndarray, size: int) -> np.ndarray:
    """Draw points into a (3, size, size) uint8 image on black.

    A pixel's colour is the mean colour of the maps whose points hit it; its brightness
    grows with the log of its hit count, from 0.3 (one hit) to 1 (the densest pixel).
    """
    pixels = _pixel_index(points, size)
    per_map = np.bincount(pixels * len(colours) + maps, minlength=size * size * len(colours))
    per_map = per_map.reshape(size * size, len(colours)).astype(np.float64)
    hits = per_map.sum(axis=1)
    colour = per_map @ colours / np.maximum(hits, 1)[:, None]
    brightness = np.where(hits > 0, 0.3 + 0.7 * np.log1p(hits) / np.log1p(hits.max()), 0.0)
    image = (colour * brightness[:, None] * 255).round().clip(0, 255).astype(np.uint8)
    return image.T.reshape(3, size, size)


def _map_colours(count: int, rng: np.random.Generator) -> np.ndarray:
    """Bright, saturated colours around a random base hue, one per map."""
    hues = (rng.uniform() + np.arange(count) * rng.uniform(0.1, 0.4)) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, rng.uniform(0.6, 1.0), rng.uniform(0.85, 1.0)) for h in hues])


def make_fractal(seed: int, index: int, size: int) -> np.ndarray:
    """Fractal ``index`` of the bank seeded ``seed``: a (3, size, size) uint8 image.

    Its generator is ``numpy.random.default_rng([seed, index])``. IFS are drawn until one's
    filling ratio on a 64x64 grid is within ``FILL_RANGE`` (rejecting degenerate lines and
    dust as FractalDB does), then rendered at ``size``.
    """
    rng = np.random.default_rng([seed, index])
    for _ in range(MAX_SYSTEMS):
        linear, shift, prob = sample_ifs(rng)
        points, maps = chaos_game(linear, shift, prob, rng)
        if FILL_RANGE[0] <= filling_ratio(points) <= FILL_RANGE[1]:
            return render_fractal(points, maps, _map_colours(len(prob), rng), size)
    raise RuntimeError(f"no acceptable IFS in {MAX_SYSTEMS} draws for fractal {index} of seed {seed}")


def make_fractals(n: int, size: int, seed: int) -> torch.Tensor:
    """A uint8 bank ``(n, 3, size, size)``; fractal ``i`` is :func:`make_fractal` (seed, i)."""
    if n < 0 or size < 1:
        raise ValueError(f"need n >= 0 and size >= 1, got n={n}, size={size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    bank = np.stack([make_fractal(seed, i, size) for i in range(n)]) if n else np.zeros((0, 3, size, size), np.uint8)
    # Contiguous, like a bank read back from the cache: batches mixed with a fresh bank and
    # with a cached one then round identically.
    return torch.from_numpy(np.ascontiguousarray(bank))


# ---------------------------------------------------------------------------------------
# the bank: cache, folders, sampling
# ---------------------------------------------------------------------------------------


def fractal_cache_path(n: int, size: int, seed: int) -> Path:
    """``GENAUG_HOME/fractals/<n>_<size>_<seed>.safetensors``."""
    return cache_dir("fractals") / f"{n}_{size}_{seed}.safetensors"


def _read_cached_bank(path: Path, n: int, size: int) -> torch.Tensor | None:
    """The cached bank, or None if missing, unreadable, of another shape or format."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("format") != BANK_FORMAT:
                return None
            bank = handle.get_tensor("fractals")
    except Exception:  # a torn or foreign file is rebuilt, whatever the error
        return None
    if bank.dtype != torch.uint8 or tuple(bank.shape) != (n, 3, size, size):
        return None
    return bank


def _write_bank(bank: torch.Tensor, path: Path) -> None:
    """Write under a temporary name in the same folder, then rename into place."""
    save_safetensors(path, {"fractals": bank}, {"format": BANK_FORMAT})


def load_fractal_folder(folder: str | Path, size: int, n: int | None = None) -> torch.Tensor:
    """PNG/JPEG images of ``folder`` (sorted by name) as a uint8 bank (n, 3, size, size).

    Each is converted to RGB and resized to ``size x size`` (bilinear, no crop). ``n``
    takes the first ``n`` images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"fractal folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if n is not None:
        if len(files) < n:
            raise ValueError(f"{folder} holds {len(files)} images, {n} requested")
        files = files[:n]
    if not files:
        raise ValueError(f"no PNG or JPEG images in {folder}")
    images = []
    for file in files:
        with Image.open(file) as image:
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        images.append(np.asarray(rgb).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(images))


def fractal_bank(
    n: int | None = None, size: int = BANK_RESOLUTION, seed: int = 0, folder: str | Path | None = None
) -> torch.Tensor:
    """A uint8 fractal bank (n, 3, size, size).

    With ``folder``: its images (:func:`load_fractal_folder`; all of them unless ``n``).
    Otherwise ``n`` (default 256) generated fractals, loaded from the GENAUG_HOME cache
    when present and valid, else made and cached.
    """
    if folder is not None:
        return load_fractal_folder(folder, size, n)
    n = BANK_SIZE if n is None else n
    path = fractal_cache_path(n, size, seed)
    bank = _read_cached_bank(path, n, size) if path.exists() else None
    if bank is None:
        bank = make_fractals(n, size, seed)
        _write_bank(bank, path)
    return bank


def load_fractal_bank(config: "FractalBankConfig") -> torch.Tensor:
    """The uint8 fractal bank (n, 3, size, size) a config names: a ``folder``'s images, or
    genaug's seeded bank of ``count`` fractals of side ``size`` (cached in GENAUG_HOME).

    Contiguous: a freshly rendered bank and a cached one then lay out alike, and so do the
    batches mixed with them (the layout changes convolution kernels' rounding; a run must
    not depend on whether the bank was cached).
    """
    if config.folder is not None:
        return fractal_bank(None, config.size, config.seed, folder=config.folder).contiguous()
    return fractal_bank(config.count, config.size, config.seed).contiguous()


def fractal_bank_name(config: "FractalBankConfig") -> str:
    """How records name the bank: ``folder:<path>`` or ``ifs:count=<n>,size=<s>,seed=<k>``."""
    if config.folder is not None:
        return f"folder:{config.folder}"
    return f"ifs:count={config.count},size={config.size},seed={config.seed}"


def make_fractal_folder(config: "FractalBankConfig", output: str | Path) -> list[Path]:
    """``genaug fractals make``: write the seeded bank as PNGs into ``output`` (reusable as a folder bank)."""
    return save_fractal_pngs(fractal_bank(config.count, config.size, config.seed), output)


def save_fractal_pngs(bank: torch.Tensor, folder: str | Path) -> list[Path]:
    """Write each fractal as ``fractal_00000.png``, ... (atomic writes); returns the paths."""
    from genaug.manifest import save_image_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digits = max(5, len(str(len(bank))))
    paths = []
    for i, fractal in enumerate(bank):
        path = folder / f"fractal_{i:0{digits}d}.png"
        save_image_atomic(fractal.permute(1, 2, 0).cpu().numpy(), path)
        paths.append(path)
    return paths


def sample_fractals(bank: torch.Tensor, k: int, generator: RNG = None) -> torch.Tensor:
    """``k`` fractals drawn uniformly with replacement from the bank."""
    if len(bank) == 0:
        raise ValueError("the fractal bank is empty")
    if isinstance(generator, torch.Generator):
        index = torch.randint(len(bank), (k,), generator=generator)
    else:
        index = torch.from_numpy(numpy_rng(generator).integers(0, len(bank), k))
    return bank[index.to(bank.device)]
