"""Trainers of the pocket models: CLIP (contrastive), VAE (reconstruction), SD UNet and
InstructPix2Pix UNet (epsilon prediction).

Every batch is drawn on the fly from the pretraining pool with a random generator seeded
by ``(seed, stage, step)``, so a build killed at any step and resumed from its last
checkpoint replays exactly the batches an uninterrupted build would have seen.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from genaug.files import atomic_path
from genaug.pocket import captions as cap
from genaug.pocket.models import clip_pixel_values
from genaug.pocket.render import COLOR_NAMES, DIGIT_NAMES, load_digits, pocket_pools, render, sample_styles
from genaug.progress import progress_bar

STAGE_IDS = {"clip": 1, "vae": 2, "sd": 3, "ip2p": 4, "judge": 5}


# ----------------------------------------------------------------------------- data


@dataclass
class PretrainPool:
    """The 8x8 digits of the pretraining pool (the only real images the pocket models see)."""

    digits: np.ndarray  # (N, 8, 8) values 0..16
    labels: np.ndarray  # (N,)

    @classmethod
    def load(cls, seed: int = 0) -> "PretrainPool":
        source = load_digits()
        idx = pocket_pools(seed)["pretrain"]
        return cls(source.images[idx], source.labels[idx])


def shift_digits(digits: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each 8x8 digit by up to ``max_shift`` pixels per axis, zero fill (augmentation)."""
    if max_shift <= 0:
        return digits
    out = np.zeros_like(digits)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(len(digits), 2))
    for i, (dy, dx) in enumerate(shifts):
        src = digits[i, max(0, -dy) : 8 - max(0, dy), max(0, -dx) : 8 - max(0, dx)]
        out[i, max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out


def draw_batch(pool: PretrainPool, n: int, rng: np.random.Generator, max_shift: int = 0):
    """``n`` random pool digits with random styles: ``(digits8, labels, fg, bg)``."""
    idx = rng.integers(0, len(pool.labels), size=n)
    digits = shift_digits(pool.digits[idx], max_shift, rng)
    fg, bg = sample_styles(n, rng)
    return digits, pool.labels[idx], fg, bg


def to_unit_range(images_uint8: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float in [-1, 1] (the VAE's input range)."""
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def step_rng(seed: int, stage: str, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, STAGE_IDS[stage], step])


# ----------------------------------------------------------------------------- loop


def lr_at(step: int, steps: int, lr: float, warmup: int, final_fraction: float = 0.0) -> float:
    """Linear warm-up then cosine decay to ``final_fraction * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class EMA:
    """Exponential moving average of a module's parameters (decay warmed up as 1 - 1/(10 + step/10))."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.module.parameters(), module.parameters()):
            e.lerp_(p.detach(), 1 - d)


@dataclass
class StageRun:
    """What the loop needs from a trainer: its modules, optimizer and one-step function."""

    name: str
    steps: int
    lr: float
    warmup: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step_fn: Callable[[int], dict[str, float]]  # returns losses; performs backward itself
    ema: EMA | None = None
    final_lr_fraction: float = 0.0
    extra_state: dict[str, Any] = field(default_factory=dict)


class BuildContext:
    """Shared facilities of one build: work dir, logs, progress bar, checkpoint cadence."""

    def __init__(self, out_dir: Path, work_dir: Path, checkpoint_every_s: float = 60.0, progress: bool = True, hashes: dict[str, str] | None = None):
        self.hashes = hashes or {}
        self.out_dir = out_dir
        self.work_dir = work_dir
        self.checkpoint_every_s = checkpoint_every_s
        self.progress = progress
        work_dir.mkdir(parents=True, exist_ok=True)

    def log(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        with open(self.out_dir / "build.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if self.progress:
            from rich.console import Console

            Console(stderr=True).print(line, highlight=False, markup=False)

    def log_json(self, record: dict[str, Any]) -> None:
        with open(self.out_dir / "train_log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def checkpoint_path(self, name: str) -> Path:
        return self.work_dir / f"{name}-{self.hashes.get(name, 'nohash')}.ckpt"


def save_stage_checkpoint(path: Path, run: StageRun, step: int, elapsed: float) -> None:
    """Atomic checkpoint (temporary file + rename): model, EMA, optimizer, step."""
    state = {
        "step": step,
        "elapsed": elapsed,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema else None,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_stage_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    from genaug.checkpoint import load_training_state

    return load_training_state(path)


def train_stage(ctx: BuildContext, run: StageRun) -> float:
    """Train ``run`` to ``run.steps``, resuming from its checkpoint; returns training seconds."""
    path = ctx.checkpoint_path(run.name)
    state = load_stage_checkpoint(path)
    start, elapsed = 0, 0.0
    if state is not None:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.ema and state["ema"] is not None:
            run.ema.module.load_state_dict(state["ema"])
        start, elapsed = state["step"], state["elapsed"]
        if start < run.steps:
            ctx.log(f"{run.name}: resuming at step {start}/{run.steps}")
    if start >= run.steps:
        return elapsed
    run.model.train()
    t0, last_ckpt = time.time(), time.time()
    running: dict[str, float] = {}
    bar = progress_bar(run.steps, f"[bold]pocket {run.name}", enabled=ctx.progress, completed=start,
                       detail="{task.fields[loss]}", fields={"loss": ""})
    with bar as progress:
        for step in range(start, run.steps):
            lr = lr_at(step, run.steps, run.lr, run.warmup, run.final_lr_fraction)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            losses = run.step_fn(step)
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
            if run.ema:
                run.ema.update(run.model, step)
            for k, v in losses.items():
                running[k] = v if k not in running else 0.9 * running[k] + 0.1 * v
            done = step + 1
            if done % 5 == 0 or done == run.steps:
                now = elapsed + time.time() - t0
                ctx.log_json({"stage": run.name, "step": done, "lr": lr, "elapsed_s": round(now, 2), **{k: round(v, 5) for k, v in losses.items()}})
                progress.update(completed=done, loss=" ".join(f"{k} {v:.4f}" for k, v in running.items()))
            if time.time() - last_ckpt > ctx.checkpoint_every_s or done == run.steps:
                save_stage_checkpoint(path, run, done, elapsed + time.time() - t0)
                last_ckpt = time.time()
    return elapsed + time.time() - t0


def bf16_autocast(enabled: bool):
    """bf16 autocast on the CPU when ``enabled`` (:func:`genaug.runtime.autocast_context`)."""
    from genaug.runtime import autocast_context

    return autocast_context("bf16" if enabled else "fp32", torch.device("cpu"))


# ----------------------------------------------------------------------------- CLIP


def clip_stage(clip, tokenizer, pool: PretrainPool, cfg: dict[str, Any], seed: int) -> StageRun:
    """Contrastive CLIP training where every caption in the batch true of an image is a positive.

    Plain CLIP on styled digits learns colour and stays at chance on the digit (colour alone
    separates most of a batch). Four things together make the digit learnt within a few
    hundred steps:

    - **Multi-positive contrastive loss** (UniCL): every caption in the batch true of an
      image is a positive; mean of the image->text and text->image cross-entropies against
      the row- / column-normalised truth matrix. Caption forms that state only the digit
      or only the colours are mixed in (``caption_form_probs``).
    - **Attribute prompts** (UniCL's labels as prompts): every batch also holds the 26
      single-attribute prompts ("a photo of the digit k", "a {fg} digit", "a digit on
      {bg}"), and ``attribute_loss_weight`` adds a cross-entropy of each image over the ten
      digit prompts (and the eight of each colour), so each image is classified by the text
      tower's own prompts every step, exactly as zero-shot evaluation uses them.
    - **Digit probe**: digit prompts and images both start out indistinguishable, a
      symmetric start from which contrastive gradients on the digit are nearly zero. A
      linear probe on the vision tower's pooled output, trained with the caption's digit
      (``digit_probe_weight``), gives the vision tower a digit signal from step one; the
      text tower then aligns its digit prompts with the image clusters. The probe is a
      training aid only and is not exported.
    - **Shape curriculum** (``shape_curriculum_steps`` = N): the ink must be told from the
      background whatever the two colours are, which a ViT learns slowly, while
      white-on-black digits are learnt within tens of steps. At step ``s`` the first
      ``max(0, 1 - s / N)`` of the batch is rendered white on black (its captions say so:
      the truth matrix stays exact).

    A higher initial logit scale (``initial_logit_scale`` in the architecture) further
    amplifies the initially tiny differences between digit prompts.
    """
    model = torch.nn.ModuleDict({"clip": clip, "digit_probe": torch.nn.Linear(clip.config.vision_config.hidden_size, len(DIGIT_NAMES))})
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], betas=(0.9, 0.98))
    prompt_texts, prompt_attrs = cap.attribute_prompts()

    def step_fn(step: int) -> dict[str, float]:
        rng = step_rng(seed, "clip", step)
        digits, labels, fg, bg = draw_batch(pool, cfg["batch_size"], rng, cfg.get("max_shift", 0))
        curriculum = cfg.get("shape_curriculum_steps", 0)
        if curriculum:
            k = int(len(fg) * max(0.0, 1.0 - step / curriculum))
            fg[:k], bg[:k] = COLOR_NAMES.index("white"), COLOR_NAMES.index("black")
        texts, cap_attrs = cap.sample_captions(labels, fg, bg, cfg["caption_form_probs"], rng)
        texts, cap_attrs = texts + prompt_texts, np.concatenate([cap_attrs, prompt_attrs])
        img_attrs = np.stack([labels, fg, bg], axis=1)
        truth = torch.from_numpy(cap.caption_truth(img_attrs, cap_attrs)).float()
        pixels = clip_pixel_values(torch.from_numpy(render(digits, fg, bg)))
        ids = tokenizer(texts, padding="longest", return_tensors="pt").input_ids  # causal: padding never changes the pooled token
        with bf16_autocast(cfg.get("bf16", True)):
            pooled = clip.vision_model(pixel_values=pixels).pooler_output
            img = clip.visual_projection(pooled)
        txt = clip.text_projection(clip.text_model(input_ids=ids).pooler_output)  # fp32: bf16 causal attention is slow on CPU
        img = F.normalize(img.float(), dim=-1)
        txt = F.normalize(txt.float(), dim=-1)
        logits = clip.logit_scale.exp().clamp(max=100) * img @ txt.T
        contrastive = multi_positive_loss(logits, truth)
        attribute = attribute_loss(logits[:, len(texts) - len(prompt_texts) :], labels, fg, bg)
        probe = F.cross_entropy(model["digit_probe"](pooled.float()), torch.from_numpy(labels))
        loss = contrastive + cfg.get("attribute_loss_weight", 0.0) * attribute + cfg.get("digit_probe_weight", 0.0) * probe
        loss.backward()
        return {"loss": loss.item(), "contrastive": contrastive.item(), "attribute": attribute.item(), "digit_probe": probe.item()}

    return StageRun("clip", cfg["steps"], cfg["lr"], cfg["warmup"], model, opt, step_fn)


def multi_positive_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """UniCL's loss: mean of image->text and text->image cross-entropies against normalised truth.

    ``logits`` and ``truth`` are (images, texts); a text true of no image in the batch (an
    attribute prompt whose value no image has) is left out of the text->image term.
    """
    loss_i = -(truth / truth.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    has_pos = truth.sum(0) > 0
    loss_t = -(truth / truth.sum(0, keepdim=True).clamp(min=1) * logits.log_softmax(0)).sum(0)[has_pos].mean()
    return 0.5 * (loss_i + loss_t)


def attribute_loss(prompt_logits: torch.Tensor, labels: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> torch.Tensor:
    """Sum of each image's cross-entropies over the digit, foreground and background prompts.

    ``prompt_logits`` are the image-to-prompt logits in :func:`captions.attribute_prompts`
    order: ten digit prompts, then a foreground and a background prompt per colour.
    """
    d = len(DIGIT_NAMES)
    return (
        F.cross_entropy(prompt_logits[:, :d], torch.from_numpy(labels))
        + F.cross_entropy(prompt_logits[:, d::2], torch.from_numpy(fg))
        + F.cross_entropy(prompt_logits[:, d + 1 :: 2], torch.from_numpy(bg))
    )


# ----------------------------------------------------------------------------- VAE


def vae_stage(vae, pool: PretrainPool, cfg: dict[str, Any], seed: int) -> StageRun:
    """AutoencoderKL reconstruction: MSE + L1 in [-1, 1] plus a tiny KL term (as SD's VAE)."""
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["lr"], weight_decay=0.0)

    def step_fn(step: int) -> dict[str, float]:
        rng = step_rng(seed, "vae", step)
        digits, _, fg, bg = draw_batch(pool, cfg["batch_size"], rng, cfg.get("max_shift", 0))
        x = to_unit_range(render(digits, fg, bg))
        with bf16_autocast(cfg.get("bf16", True)):
            posterior = vae.encode(x).latent_dist
            z = posterior.sample(generator=torch.Generator().manual_seed(int(rng.integers(2**31))))
            recon = vae.decode(z).sample.float()
        mse = F.mse_loss(recon, x)
        kl = posterior.kl().float().mean() / x[0].numel()
        loss = mse + 0.5 * F.l1_loss(recon, x) + cfg["kl_weight"] * kl
        loss.backward()
        return {"loss": loss.item(), "mse": mse.item()}

    return StageRun("vae", cfg["steps"], cfg["lr"], cfg["warmup"], vae, opt, step_fn, final_lr_fraction=0.05)


@torch.no_grad()
def latent_scaling_factor(vae, pool: PretrainPool, seed: int, n: int = 1024) -> float:
    """SD's convention: 1 / std of the VAE's latents over training images."""
    rng = np.random.default_rng([seed, 99])
    digits, _, fg, bg = draw_batch(pool, n, rng)
    z = vae.encode(to_unit_range(render(digits, fg, bg))).latent_dist.sample(generator=torch.Generator().manual_seed(seed))
    return float(1.0 / z.std())


# ----------------------------------------------------------------------------- text context cache


@torch.no_grad()
def encode_texts(text_encoder, tokenizer, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """The frozen text encoder's ``last_hidden_state`` for ``texts``, padded to max length (as SD)."""
    out = []
    for i in range(0, len(texts), batch_size):
        ids = tokenizer(
            texts[i : i + batch_size], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        out.append(text_encoder(input_ids=ids).last_hidden_state.float())
    return torch.cat(out)


class TextStateCache:
    """Text-encoder outputs of every text a trainer can draw, computed once (the encoder is frozen)."""

    def __init__(self, text_encoder, tokenizer, texts: list[str]):
        texts = sorted(set(texts) | {""})
        self.index = {t: i for i, t in enumerate(texts)}
        self.states = encode_texts(text_encoder, tokenizer, texts)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return self.states[[self.index[t] for t in texts]]


# ----------------------------------------------------------------------------- SD UNet


def epsilon_loss(pred: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor, min_snr_gamma: float | None = None) -> torch.Tensor:
    """Epsilon MSE, optionally with Min-SNR-gamma weights ``min(SNR_t, gamma) / SNR_t``.

    ``SNR_t = alpha_bar_t / (1 - alpha_bar_t)``. Uniform weights let the many nearly
    noise-free timesteps (fine detail) dominate the gradient; capping the SNR shifts it to
    the noisy timesteps where the digit's shape and colours are decided, which speeds up
    prompt following several-fold (Hang et al., 2023).
    """
    per_sample = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
    if min_snr_gamma:
        snr = alpha_bar / (1 - alpha_bar)
        per_sample = per_sample * snr.clamp(max=min_snr_gamma) / snr
    return per_sample.mean()


def sd_stage(unet, vae, contexts: TextStateCache, noise_scheduler, pool: PretrainPool, cfg: dict[str, Any], seed: int) -> StageRun:
    """Stable Diffusion's objective: epsilon MSE on scaled VAE latents, 10 % empty captions.

    ``min_snr_gamma`` (optional) weights the MSE as in :func:`epsilon_loss`.
    """
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0))
    ema = EMA(unet, cfg["ema_decay"]) if cfg.get("ema_decay") else None
    scale = vae.config.scaling_factor
    alphas = noise_scheduler.alphas_cumprod

    def step_fn(step: int) -> dict[str, float]:
        rng = step_rng(seed, "sd", step)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        n = cfg["batch_size"]
        digits, labels, fg, bg = draw_batch(pool, n, rng)
        texts, _ = cap.sample_captions(labels, fg, bg, cfg["caption_form_probs"], rng)
        texts = ["" if drop else t for t, drop in zip(texts, rng.random(n) < cfg["caption_dropout"])]
        with torch.no_grad():
            latents = vae.encode(to_unit_range(render(digits, fg, bg))).latent_dist.sample(generator=gen) * scale
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, len(alphas), (n,), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        with bf16_autocast(cfg.get("bf16", True)):
            pred = unet(noisy, t, encoder_hidden_states=contexts(texts)).sample.float()
        loss = epsilon_loss(pred, noise, alphas[t], cfg.get("min_snr_gamma"))
        loss.backward()
        return {"loss": loss.item()}

    return StageRun("sd", cfg["steps"], cfg["lr"], cfg["warmup"], unet, opt, step_fn, ema=ema, final_lr_fraction=0.1)


# ----------------------------------------------------------------------------- InstructPix2Pix UNet


def ip2p_stage(unet, vae, contexts: TextStateCache, noise_scheduler, pool: PretrainPool, cfg: dict[str, Any], seed: int) -> StageRun:
    """InstructPix2Pix's objective on (input, instruction, re-coloured output) triples.

    The UNet sees ``concat(noisy output latents, input image latents)``; the input latents
    are the VAE posterior's mode, unscaled (as the original training script and the
    diffusers pipeline do). Conditioning dropout as in the method: with probability
    ``p`` only the text is dropped, ``p`` both, ``p`` only the image (``p = 0.05``).
    ``min_snr_gamma`` (optional) weights the MSE as in :func:`epsilon_loss`.
    """
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0))
    ema = EMA(unet, cfg["ema_decay"]) if cfg.get("ema_decay") else None
    scale = vae.config.scaling_factor
    alphas = noise_scheduler.alphas_cumprod
    p = cfg["conditioning_dropout"]

    def step_fn(step: int) -> dict[str, float]:
        rng = step_rng(seed, "ip2p", step)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        n = cfg["batch_size"]
        digits, _, fg, bg = draw_batch(pool, n, rng)
        texts, new_fg, new_bg = cap.sample_edits(fg, bg, rng)
        u = rng.random(n)
        drop_text = u < 2 * p
        drop_image = (u >= p) & (u < 3 * p)
        texts = ["" if d else t for t, d in zip(texts, drop_text)]
        with torch.no_grad():
            source = vae.encode(to_unit_range(render(digits, fg, bg))).latent_dist.mode()
            target = vae.encode(to_unit_range(render(digits, new_fg, new_bg))).latent_dist.sample(generator=gen) * scale
        source = source * torch.from_numpy(~drop_image).float().view(-1, 1, 1, 1)
        noise = torch.randn(target.shape, generator=gen)
        t = torch.randint(0, len(alphas), (n,), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * target + (1 - a).sqrt() * noise
        with bf16_autocast(cfg.get("bf16", True)):
            pred = unet(torch.cat([noisy, source], dim=1), t, encoder_hidden_states=contexts(texts)).sample.float()
        loss = epsilon_loss(pred, noise, alphas[t], cfg.get("min_snr_gamma"))
        loss.backward()
        return {"loss": loss.item()}

    return StageRun("ip2p", cfg["steps"], cfg["lr"], cfg["warmup"], unet, opt, step_fn, ema=ema, final_lr_fraction=0.1)


def all_sd_texts() -> list[str]:
    """Every caption the SD trainer can draw."""
    return [t for t in cap.all_caption_texts() if not t.startswith("make ")]


def all_instruction_texts() -> list[str]:
    return [t for t in cap.all_caption_texts() if t.startswith("make ")]


__all__ = ["COLOR_NAMES"]
