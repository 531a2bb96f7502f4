"""``genaug pocket build``: train pocket CLIP, VAE, SD UNet and InstructPix2Pix UNet, export
them in the standard formats, and measure the quality gates.

The build reads as the recipe: CLIP first (SD is conditioned on its frozen text encoder),
then the VAE, SD's UNet, InstructPix2Pix's UNet (initialised from SD's), then quality.
Each model is exported as soon as it is trained (fp16 safetensors, ``save_pretrained``),
and the next one trains against the exported weights, so what ships is what was used.
Checkpoints (``$GENAUG_HOME/pocket-work/<model>-<hash>.ckpt``) are written atomically about once a minute; a
killed build run again resumes where it stopped. ``build.json`` is written last: its
presence marks a complete build.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from genaug.home import genaug_home
from genaug.pocket import models as pm
from genaug.pocket import quality as pq
from genaug.pocket import store
from genaug.pocket import train as pt
from genaug.pocket.render import pocket_pools, styled_digits
from genaug.pocket.tokenizer import build_tokenizer, check_no_truncation, write_tokenizer_files

DEFAULT_SPEC = Path(__file__).resolve().parent / "spec.yaml"


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_spec(spec_path: str | Path | None = None, quick: bool = False) -> dict[str, Any]:
    """The resolved build spec: the YAML file, with its ``quick`` overrides applied if ``quick``."""
    raw = yaml.safe_load(Path(spec_path or DEFAULT_SPEC).read_text())
    quick_overrides = raw.pop("quick", {}) or {}
    spec = _merge(raw, quick_overrides) if quick else raw
    spec["quick"] = bool(quick)
    return spec


def spec_hash(spec: dict[str, Any]) -> str:
    """sha256 of the resolved spec's canonical JSON."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def stage_hashes(spec: dict[str, Any]) -> dict[str, str]:
    """Per-model hashes: each covers the seed, that model's spec and its upstream models' hashes."""

    def h(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    clip = h(spec["seed"], "clip", spec["clip"])
    vae = h(spec["seed"], "vae", spec["vae"])
    sd = h(spec["seed"], "sd", spec["sd"], clip, vae)
    return {
        "clip": clip,
        "vae": vae,
        "sd": sd,
        "ip2p": h(spec["seed"], "ip2p", spec["ip2p"], sd),
    }


def build_pocket(
    spec_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    quick: bool = False,
    progress: bool = True,
    evaluate: bool = True,
    keep_checkpoints: bool = False,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Train, export and measure the pocket models; return :func:`store.pocket_info` of the result.

    ``out_dir`` defaults to ``$GENAUG_HOME/pocket`` (``pocket-quick`` with ``quick``). A
    complete build with the same spec hash already there is returned as is. Checkpoints
    live in ``$GENAUG_HOME/pocket-work``, one per model, named by the hash of the spec
    parts that model depends on (so changing only the IP2P recipe retrains only IP2P when
    ``keep_checkpoints`` kept the others); they are deleted after a successful build unless
    ``keep_checkpoints``. ``num_threads`` (default: ``$GENAUG_NUM_THREADS`` or torch's
    default) sets torch's intra-op threads; on a machine busy with other processes one
    thread is much faster than two fighting for the same cores.
    """
    spec = load_spec(spec_path, quick)
    digest = spec_hash(spec)
    out = Path(out_dir) if out_dir is not None else store.rebuilt_dir(quick)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / store.COMPLETE_MARKER
    if marker.is_file():
        if json.loads(marker.read_text()).get("spec_hash") == digest and store.is_complete(out):
            return store.pocket_info(out)
        marker.unlink()  # about to overwrite a different build: it is no longer complete
    work = genaug_home() / "pocket-work"
    ctx = pt.BuildContext(out, work, spec.get("checkpoint_every_s", 60), progress, stage_hashes(spec))
    (out / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    ctx.log(f"build {digest[:16]} quick={quick} into {out}")
    threads = num_threads or int(os.environ.get("GENAUG_NUM_THREADS", "0")) or torch.get_num_threads()
    torch.set_num_threads(threads)
    ctx.log(f"torch threads: {threads}")
    seed = int(spec["seed"])
    pool = pt.PretrainPool.load(seed)
    timings: dict[str, float] = {}
    sizes: dict[str, dict[str, Any]] = {}

    t = time.time()
    tokenizer = train_clip(ctx, spec, pool, out / "clip", sizes)
    timings["clip"] = time.time() - t

    t = time.time()
    vae = train_vae(ctx, spec, pool, out / "sd", sizes)
    timings["vae"] = time.time() - t

    t = time.time()
    train_sd(ctx, spec, pool, out / "clip", vae, tokenizer, out / "sd", sizes)
    timings["sd_unet"] = time.time() - t

    t = time.time()
    train_ip2p(ctx, spec, pool, out / "sd", out / "ip2p", sizes)
    timings["ip2p_unet"] = time.time() - t

    quality: dict[str, Any] | None = None
    if evaluate:
        t = time.time()
        quality = measure_quality(out, spec, ctx)
        timings["quality"] = time.time() - t
        # training seconds come from the checkpoints, so they include every resumed segment
        seconds = {k: sizes[k]["train_seconds"] for k in ("clip", "vae", "sd_unet", "ip2p_unet")}
        seconds["export_and_quality"] = timings["quality"] + sum(max(0.0, timings[k] - seconds[k]) for k in seconds)
        quality["build_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
        quality["build_seconds"]["total"] = round(sum(seconds.values()), 1)
        quality["build_seconds"]["note"] = "sum over resumed segments; wall time of this invocation in build.log"
        (out / "quality.json").write_text(json.dumps(quality, indent=2))
    record = {
        "spec_hash": digest,
        "quick": quick,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "models": sizes,
        "versions": _versions(),
    }
    if not keep_checkpoints:
        for name in ("clip", "vae", "sd", "ip2p"):
            ctx.checkpoint_path(name).unlink(missing_ok=True)
    marker.write_text(json.dumps(record, indent=2))
    ctx.log(f"build done in {sum(timings.values()):.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return store.pocket_info(out)


# ----------------------------------------------------------------------------- stages


def export_clip(clip, tokenizer, clip_dir: Path, texts: list[str] | None = None) -> None:
    """``save_pretrained`` of CLIPModel (fp16 safetensors) + CLIPProcessor + CLIP-format vocab files
    learnt from ``texts`` (default: the pocket caption corpus, as the tokenizer was)."""
    from transformers import CLIPProcessor

    clip.eval().to(torch.float16).save_pretrained(clip_dir, safe_serialization=True)
    clip.to(torch.float32)
    declare_float32(clip_dir)
    CLIPProcessor(image_processor=pm.make_image_processor(), tokenizer=tokenizer).save_pretrained(clip_dir)
    write_tokenizer_files(clip_dir, texts)  # the CLIP-format vocab.json + merges.txt beside tokenizer.json


def export_sd(vae, text_encoder, tokenizer, unet, sd_dir: Path) -> None:
    """A StableDiffusionPipeline folder: DDIM (steps_offset 1), no safety checker, fp16 safetensors."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet.eval(),
        scheduler=pm.make_ddim_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(sd_dir, safe_serialization=True)
    pipe.to(torch.float32)
    declare_float32(sd_dir)


def export_ip2p(vae, text_encoder, tokenizer, unet, ip2p_dir: Path) -> None:
    """A StableDiffusionInstructPix2PixPipeline folder with Euler ancestral (as timbrooks/instruct-pix2pix)."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet.eval(),
        scheduler=EulerAncestralDiscreteScheduler(**pm.sd_noise_schedule_kwargs()),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(ip2p_dir, safe_serialization=True)
    pipe.to(torch.float32)
    declare_float32(ip2p_dir)


def declare_float32(folder: Path) -> None:
    """Weights are stored fp16; declare float32 as the default load dtype in transformers configs.

    transformers 5 loads with ``dtype="auto"`` (the config's ``dtype``) while diffusers loads
    fp32 by default; without this, ``StableDiffusionPipeline.from_pretrained(dir)`` on CPU
    would get an fp16 text encoder next to an fp32 UNet. Passing ``dtype`` / ``torch_dtype``
    explicitly still works as usual.
    """
    for config in Path(folder).rglob("config.json"):
        data = json.loads(config.read_text())
        if data.get("dtype") == "float16":
            data["dtype"] = "float32"
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def train_clip(ctx: pt.BuildContext, spec: dict, pool: pt.PretrainPool, clip_dir: Path, sizes: dict):
    """Pocket CLIP: tokenizer written by genaug, CLIPModel trained contrastively, saved with its processor."""
    tokenizer = build_tokenizer(ctx.work_dir / "tokenizer")
    ctx.log(f"clip: tokenizer of {len(tokenizer)} tokens, longest corpus text {check_no_truncation(tokenizer)} / {tokenizer.model_max_length}")
    torch.manual_seed(spec["seed"] * 100 + pt.STAGE_IDS["clip"])
    clip = pm.make_clip(spec["clip"]["arch"], tokenizer)
    ctx.log(f"clip: {pm.count_params(clip) / 1e6:.2f} M parameters")
    seconds = pt.train_stage(ctx, pt.clip_stage(clip, tokenizer, pool, spec["clip"]["train"], spec["seed"]))
    export_clip(clip, tokenizer, clip_dir)
    sizes["clip"] = {"params": pm.count_params(clip), "train_seconds": round(seconds, 1)}
    ctx.log(f"clip: trained {seconds:.0f} s, saved to {clip_dir}")
    return tokenizer


def train_vae(ctx: pt.BuildContext, spec: dict, pool: pt.PretrainPool, sd_dir: Path, sizes: dict):
    """Pocket SD's AutoencoderKL; its scaling factor is 1 / latent std, stored in its config."""
    from diffusers import AutoencoderKL

    torch.manual_seed(spec["seed"] * 100 + pt.STAGE_IDS["vae"])
    vae = pm.make_vae(spec["vae"]["arch"])
    seconds = pt.train_stage(ctx, pt.vae_stage(vae, pool, spec["vae"]["train"], spec["seed"]))
    vae.eval()
    scale = pt.latent_scaling_factor(vae, pool, spec["seed"])
    vae.register_to_config(scaling_factor=scale)
    vae.to(torch.float16).save_pretrained(sd_dir / "vae", safe_serialization=True)
    vae = AutoencoderKL.from_pretrained(sd_dir / "vae", dtype=torch.float32).eval().requires_grad_(False)
    psnr = vae_psnr(vae, spec["seed"])
    sizes["vae"] = {"params": pm.count_params(vae), "train_seconds": round(seconds, 1), "scaling_factor": scale, "test_psnr_db": psnr}
    ctx.log(f"vae: trained {seconds:.0f} s, scaling factor {scale:.4f}, test PSNR {psnr:.1f} dB")
    return vae


def train_sd(ctx, spec, pool, clip_dir: Path, vae, tokenizer, sd_dir: Path, sizes: dict) -> None:
    """Pocket SD's UNet on scaled latents, conditioned on pocket CLIP's frozen text encoder."""
    from transformers import CLIPTextModel

    text_encoder = CLIPTextModel.from_pretrained(clip_dir, dtype=torch.float32).eval().requires_grad_(False)
    contexts = pt.TextStateCache(text_encoder, tokenizer, pt.all_sd_texts())
    torch.manual_seed(spec["seed"] * 100 + pt.STAGE_IDS["sd"])
    unet = pm.make_unet(spec["sd"]["arch"], cross_attention_dim=text_encoder.config.hidden_size)
    ctx.log(f"sd: UNet {pm.count_params(unet) / 1e6:.2f} M parameters")
    run = pt.sd_stage(unet, vae, contexts, pm.make_ddpm_scheduler(), pool, spec["sd"]["train"], spec["seed"])
    seconds = pt.train_stage(ctx, run)
    export_sd(vae, text_encoder, tokenizer, run.ema.module if run.ema else unet, sd_dir)
    sizes["sd_unet"] = {"params": pm.count_params(unet), "train_seconds": round(seconds, 1)}
    ctx.log(f"sd: trained {seconds:.0f} s, saved to {sd_dir}")


def train_ip2p(ctx, spec, pool, sd_dir: Path, ip2p_dir: Path, sizes: dict) -> None:
    """Pocket InstructPix2Pix: SD's UNet with 4 zero-initialised extra input channels, fine-tuned."""
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(sd_dir, dtype=torch.float32)
    sd.vae.requires_grad_(False)
    contexts = pt.TextStateCache(sd.text_encoder, sd.tokenizer, pt.all_instruction_texts())
    unet = pm.ip2p_unet_from_sd(sd.unet)
    run = pt.ip2p_stage(unet, sd.vae, contexts, pm.make_ddpm_scheduler(), pool, spec["ip2p"]["train"], spec["seed"])
    seconds = pt.train_stage(ctx, run)
    export_ip2p(sd.vae, sd.text_encoder, sd.tokenizer, run.ema.module if run.ema else unet, ip2p_dir)
    sizes["ip2p_unet"] = {"params": pm.count_params(unet), "train_seconds": round(seconds, 1)}
    ctx.log(f"ip2p: trained {seconds:.0f} s, saved to {ip2p_dir}")


# ----------------------------------------------------------------------------- quality


@torch.no_grad()
def vae_psnr(vae, seed: int) -> float:
    """Reconstruction PSNR (dB, images in [0, 1]) of the VAE on the downstream test split."""
    images, _, _, _ = styled_digits(pocket_pools(seed)["test"], seed)
    x = pt.to_unit_range(images)
    recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    mse = float((((recon - x) / 2) ** 2).mean())
    return round(10 * np.log10(1.0 / max(mse, 1e-12)), 2)


def measure_quality(out: Path, spec: dict, ctx: pt.BuildContext | None = None, save_samples: bool = True) -> dict[str, Any]:
    """Measure every gate on the exported models in ``out``; also saves sample grids there
    unless ``save_samples`` is False (re-measuring shipped weights leaves them untouched)."""
    q = spec.get("quality", {})
    seed = int(spec.get("seed", 0))
    judge, judge_acc = pq.train_judge(seed, steps=q.get("judge_steps", 600))
    measured: dict[str, Any] = {"judge_test_accuracy": judge_acc}
    measured.update(pq.clip_zero_shot(out / "clip", seed))
    sd = pq.sd_fidelity(out / "sd", judge, seed=seed, **q.get("sd", {}))
    ip = pq.ip2p_fidelity(out / "ip2p", judge, seed=seed, **q.get("ip2p", {}))
    sd_images, ip_images = sd.pop("_images"), ip.pop("_images")
    if save_samples:
        save_grid(sd_images[:100], out / "samples_sd.png")
        save_grid(ip_images[:100], out / "samples_ip2p.png")
    measured.update(sd)
    measured.update(ip)
    result = {"measured": measured, "gates": pq.gate_report(measured), "quick": spec.get("quick", False)}
    result["all_gates_passed"] = all(g["passed"] for g in result["gates"].values())
    if ctx:
        ctx.log("quality: " + ", ".join(f"{k} {v['value']:.3f} ({'pass' if v['passed'] else 'FAIL'} >= {v['threshold']})" for k, v in result["gates"].items()))
    return result


def save_grid(images: np.ndarray, path: Path, cols: int = 10) -> None:
    """A PNG grid of ``(N, H, W, 3)`` uint8 images (row-major, 10 per row: one per prompted digit)."""
    from PIL import Image

    if len(images) == 0:
        return
    n, h, w, _ = images.shape
    rows = (n + cols - 1) // cols
    grid = np.full((rows * (h + 1), cols * (w + 1), 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = im
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__, "python": platform.python_version()}
