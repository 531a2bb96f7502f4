"""Quality gates of the pocket models, measured the same way by the build and by the tests.

- **Judge**: a small CNN trained only on real rendered pocket digits (the pretraining pool
  with random styles and small shifts), never on generated images. It decides which digit
  a generated or edited image shows.
- **Colour realisation** (:func:`estimate_colors`): the renderer draws every image as
  ``(1 - a) * bg + a * fg`` per pixel. For each unordered pair of palette colours we fit
  that model (per-pixel ``a`` in [0, 1] by projection onto the segment between the two
  colours) and keep the pair with the least squared residual; of the two, the background
  is the colour most pixels are nearer to (digits cover about 30 % of the image). A colour
  is *realised* when the estimate equals the prompted palette colour.
- **Pocket CLIP zero-shot** on the downstream test split: the digit by ranking the ten
  prompts "a photo of the digit {k}"; the foreground and background colours as the
  attributes of the best of all 560 full captions "a photo of the digit {k}, {fg} on {bg}".
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genaug.files import save_safetensors
from genaug.home import cache_dir
from genaug.pocket.captions import sample_edits
from genaug.pocket.render import COLOR_NAMES, DIGIT_NAMES, PALETTE, caption, pocket_pools, render, styled_digits

GATES = {
    "clip_digit_top1": 0.85,
    "clip_fg_top1": 0.95,
    "clip_bg_top1": 0.95,
    "sd_digit_fidelity": 0.80,
    "sd_color_realised": 0.90,
    "ip2p_digit_preserved": 0.80,
    "ip2p_color_realised": 0.80,
}


# ----------------------------------------------------------------------------- judge


class DigitJudge(torch.nn.Module):
    """A small CNN over 16x16 RGB digits in [-1, 1]."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, w, 3, padding=1), torch.nn.BatchNorm2d(w), torch.nn.ReLU(),
            torch.nn.Conv2d(w, w, 3, padding=1), torch.nn.BatchNorm2d(w), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(w, 2 * w, 3, padding=1), torch.nn.BatchNorm2d(2 * w), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(2 * w, 4 * w, 3, padding=1), torch.nn.BatchNorm2d(4 * w), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4 * w, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict(self, images_uint8: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Digit predictions for ``(N, 16, 16, 3)`` uint8 images."""
        self.eval()
        out = []
        for i in range(0, len(images_uint8), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images_uint8[i : i + batch_size])).permute(0, 3, 1, 2).float() / 127.5 - 1
            out.append(self(x).argmax(1).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def train_judge(seed: int = 0, steps: int = 600, batch_size: int = 128, lr: float = 2e-3) -> tuple[DigitJudge, float]:
    """Train the judge on the real pretraining pool (random styles, shifts of up to 1 pixel).

    Returns the judge and its accuracy on the real downstream test split.
    """
    from genaug.pocket.train import PretrainPool, draw_batch, step_rng, to_unit_range

    torch.manual_seed(seed)
    pool = PretrainPool.load(seed)
    judge = DigitJudge()
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    judge.train()
    for step in range(steps):
        digits, labels, fg, bg = draw_batch(pool, batch_size, step_rng(seed, "judge", step), max_shift=1)
        loss = F.cross_entropy(judge(to_unit_range(render(digits, fg, bg))), torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    images, labels, _, _ = styled_digits(pocket_pools(seed)["test"], seed)
    accuracy = float((judge.predict(images) == labels).mean())
    return judge, accuracy


def cached_judge(seed: int = 0, steps: int = 600) -> tuple[DigitJudge, float]:
    """:func:`train_judge` ``(seed, steps)``, trained once and kept in GENAUG_HOME as safetensors.

    Benchmarks and sweeps judge many sets of images; the judge (about 30 s to train on two
    cores) is the same function of ``(seed, steps)`` every time, so it is stored, not retrained.
    """
    from safetensors.torch import load_file

    path = cache_dir("judge") / f"judge-seed{seed}-steps{steps}.safetensors"
    judge = DigitJudge()
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            accuracy = float(handle.metadata()["test_accuracy"])
        judge.load_state_dict(load_file(str(path)))
        return judge.eval(), accuracy
    judge, accuracy = train_judge(seed, steps=steps)
    save_safetensors(path, judge.state_dict(), {"test_accuracy": repr(accuracy)})
    return judge.eval(), accuracy


# ----------------------------------------------------------------------------- colours


def estimate_colors(images_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Estimated ``(fg, bg)`` palette indices of ``(N, H, W, 3)`` uint8 images (module doc)."""
    x = images_uint8.reshape(len(images_uint8), -1, 3).astype(np.float32)  # (N, P, 3)
    palette = np.array([PALETTE[c] for c in COLOR_NAMES], dtype=np.float32)
    pairs = list(itertools.combinations(range(len(palette)), 2))
    residuals = np.empty((len(x), len(pairs)), dtype=np.float64)
    for k, (i, j) in enumerate(pairs):
        a, b = palette[i], palette[j]
        d = b - a
        t = np.clip(((x - a) @ d) / (d @ d), 0.0, 1.0)
        fit = a + t[..., None] * d
        residuals[:, k] = ((x - fit) ** 2).sum(axis=(1, 2))
    best = np.array(pairs)[residuals.argmin(axis=1)]  # (N, 2)
    ci, cj = palette[best[:, 0]], palette[best[:, 1]]
    nearer_i = ((x - ci[:, None]) ** 2).sum(-1) < ((x - cj[:, None]) ** 2).sum(-1)
    i_is_bg = nearer_i.mean(axis=1) >= 0.5
    bg = np.where(i_is_bg, best[:, 0], best[:, 1])
    fg = np.where(i_is_bg, best[:, 1], best[:, 0])
    return fg.astype(np.int64), bg.astype(np.int64)


# ----------------------------------------------------------------------------- CLIP


@torch.no_grad()
def clip_zero_shot(clip_dir, seed: int = 0) -> dict[str, float]:
    """Pocket CLIP's zero-shot accuracy on the downstream test split (module doc)."""
    from genaug.clip import Clip

    model = Clip.from_reference(str(clip_dir), stage="pocket quality")
    images, labels, fg, bg = styled_digits(pocket_pools(seed)["test"], seed)
    img = model.image_embeds(images)
    digit_prompts = [f"a photo of the digit {d}" for d in DIGIT_NAMES]
    digit_pred = (img @ model.text_embeds(digit_prompts).T).argmax(1).numpy()
    full = [(d, f, b) for d in range(10) for f in range(len(COLOR_NAMES)) for b in range(len(COLOR_NAMES)) if f != b]
    full_emb = model.text_embeds([caption(*t) for t in full])
    best = np.array(full)[(img @ full_emb.T).argmax(1).numpy()]
    return {
        "clip_digit_top1": float((digit_pred == labels).mean()),
        "clip_fg_top1": float((best[:, 1] == fg).mean()),
        "clip_bg_top1": float((best[:, 2] == bg).mean()),
        "clip_full_caption_digit_top1": float((best[:, 0] == labels).mean()),
        "clip_n_test": int(len(labels)),
    }


# ----------------------------------------------------------------------------- SD / IP2P


def pipeline_images(output) -> np.ndarray:
    """A pipeline's ``output_type="np"`` images as uint8 ``(N, H, W, 3)``."""
    return np.clip(np.rint(np.asarray(output.images) * 255), 0, 255).astype(np.uint8)


def in_batches(call, n: int, batch_size: int, seed: int) -> np.ndarray:
    """``call(rows, generator)`` over ``n`` items in slices of ``batch_size``, each with its own
    generator seeded ``seed * 1000 + first row``; the images as uint8 ``(n, H, W, 3)``."""
    return np.concatenate([
        pipeline_images(call(slice(start, start + batch_size), torch.Generator().manual_seed(seed * 1000 + start)))
        for start in range(0, n, batch_size)
    ])


def realised(judge: DigitJudge, images: np.ndarray, digits, fg, bg) -> tuple[float, float, float, float]:
    """Shares of ``images`` whose digit the judge reads as ``digits``, whose estimated foreground
    and background colours are both ``fg``/``bg``, and each alone."""
    pred = judge.predict(images)
    efg, ebg = estimate_colors(images)
    return (float((pred == digits).mean()), float(((efg == fg) & (ebg == bg)).mean()),
            float((efg == fg).mean()), float((ebg == bg).mean()))  # fmt: skip


@torch.no_grad()
def sd_fidelity(sd_dir, judge: DigitJudge, n: int = 200, steps: int = 25, guidance_scale: float = 7.5, batch_size: int = 50, seed: int = 0) -> dict[str, Any]:
    """Pocket SD txt2img on "a photo of the digit {k}, {fg} on {bg}": judge digit + colours."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(sd_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng([seed, 200])
    digits = np.arange(n) % 10
    fg = rng.integers(0, len(COLOR_NAMES), n)
    bg = (fg + rng.integers(1, len(COLOR_NAMES), n)) % len(COLOR_NAMES)
    prompts = [caption(d, f, b) for d, f, b in zip(digits, fg, bg)]
    images = in_batches(
        lambda rows, gen: pipe(prompts[rows], num_inference_steps=steps, guidance_scale=guidance_scale, generator=gen, output_type="np"),
        n, batch_size, seed,
    )
    digit, colours, fg_rate, bg_rate = realised(judge, images, digits, fg, bg)
    return {
        "sd_digit_fidelity": digit,
        "sd_color_realised": colours,
        "sd_fg_realised": fg_rate,
        "sd_bg_realised": bg_rate,
        "sd_n": n,
        "sd_steps": steps,
        "sd_guidance_scale": guidance_scale,
        "_images": images,
    }


@torch.no_grad()
def ip2p_fidelity(
    ip2p_dir, judge: DigitJudge, n: int = 200, steps: int = 20, guidance_scale: float = 4.0, image_guidance_scale: float = 1.5, batch_size: int = 50, seed: int = 0
) -> dict[str, Any]:
    """Pocket InstructPix2Pix on downstream test digits: digit preserved + instructed colours."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(ip2p_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    images, labels, fg, bg = styled_digits(pocket_pools(seed)["test"], seed)
    images, labels, fg, bg = images[:n], labels[:n], fg[:n], bg[:n]
    texts, new_fg, new_bg = sample_edits(fg, bg, np.random.default_rng([seed, 300]))
    from PIL import Image

    edited = in_batches(
        lambda rows, gen: pipe(
            texts[rows], image=[Image.fromarray(im) for im in images[rows]], num_inference_steps=steps,
            guidance_scale=guidance_scale, image_guidance_scale=image_guidance_scale, generator=gen, output_type="np",
        ),
        len(images), batch_size, seed,
    )
    preserved, colours, _, _ = realised(judge, edited, labels, new_fg, new_bg)
    return {
        "ip2p_digit_preserved": preserved,
        "ip2p_color_realised": colours,
        "ip2p_n": int(len(labels)),
        "ip2p_steps": steps,
        "ip2p_guidance_scale": guidance_scale,
        "ip2p_image_guidance_scale": image_guidance_scale,
        "_images": edited,
    }


def gate_report(measured: dict[str, float]) -> dict[str, dict[str, Any]]:
    """``{gate: {"value", "threshold", "passed"}}`` for every gate present in ``measured``."""
    return {
        name: {"value": measured[name], "threshold": threshold, "passed": bool(measured[name] >= threshold)}
        for name, threshold in GATES.items()
        if name in measured
    }
