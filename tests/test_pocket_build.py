"""The pocket build: resume after a kill replays the same training; the --quick build end to end."""

import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from genaug.pocket import models as pm
from genaug.pocket import train as pt
from genaug.pocket.build import load_spec, spec_hash, stage_hashes
from genaug.pocket.render import styled_digits
from genaug.pocket.tiny import TINY_VAE

VAE_CFG = {"steps": 6, "batch_size": 4, "lr": 1e-3, "warmup": 2, "kl_weight": 1e-6, "bf16": False}


def _train_vae(tmp_path, stop_at=None):
    torch.manual_seed(0)
    vae = pm.make_vae(TINY_VAE)
    run = pt.vae_stage(vae, pt.PretrainPool.load(0), VAE_CFG, seed=0)
    if stop_at is not None:
        inner = run.step_fn

        def killed(step):
            if step == stop_at:
                raise KeyboardInterrupt  # the build is killed here
            return inner(step)

        run.step_fn = killed
    ctx = pt.BuildContext(tmp_path, tmp_path / "work", checkpoint_every_s=0.0, progress=False, hashes={"vae": "h"})
    pt.train_stage(ctx, run)
    return vae


def test_killed_stage_resumes_to_identical_weights(tmp_path):
    reference = _train_vae(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _train_vae(tmp_path / "b", stop_at=3)
    assert pt.load_stage_checkpoint(tmp_path / "b" / "work" / "vae-h.ckpt")["step"] == 3
    resumed = _train_vae(tmp_path / "b")  # fresh process state, same checkpoint folder
    for (k, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_spec_quick_overrides_and_stage_hashes():
    full, quick = load_spec(), load_spec(quick=True)
    assert quick["sd"]["train"]["steps"] < full["sd"]["train"]["steps"]
    assert quick["sd"]["train"]["lr"] == full["sd"]["train"]["lr"]  # same recipe, fewer steps
    assert spec_hash(full) != spec_hash(quick)
    changed = load_spec()
    changed["ip2p"]["train"]["lr"] *= 2
    a, b = stage_hashes(full), stage_hashes(changed)
    assert [a[k] == b[k] for k in ("clip", "vae", "sd", "ip2p")] == [True, True, True, False]


@pytest.mark.slow
def test_quick_build_from_empty_home(tmp_path, monkeypatch):
    from genaug.pocket import build_pocket, pocket_info

    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GENAUG_POCKET_DIR", raising=False)
    info = build_pocket(quick=True, progress=False)
    root = tmp_path / "home" / "pocket-quick"
    assert info["root"] == str(root) and info["complete"] and info["quick"]
    assert pocket_info()["source"] == "shipped"  # a quick build never shadows the shipped weights

    log = [json.loads(line) for line in (root / "train_log.jsonl").read_text().splitlines()]
    for stage in ("clip", "vae", "sd", "ip2p"):
        losses = [r["loss"] for r in log if r["stage"] == stage]
        k = max(1, len(losses) // 4)
        assert np.mean(losses[-k:]) < np.mean(losses[:k]), (stage, losses)
    quality = json.loads((root / "quality.json").read_text())
    assert set(quality["gates"]) >= {"clip_digit_top1", "sd_digit_fidelity", "ip2p_color_realised"}
    assert quality["measured"]["clip_fg_top1"] > 0.3  # colour is learnt within the first steps
    assert not list((tmp_path / "home" / "pocket-work").glob("*.ckpt"))

    model, processor = CLIPModel.from_pretrained(root / "clip"), CLIPProcessor.from_pretrained(root / "clip")
    image = styled_digits(np.arange(1))[0][0]
    assert model(**processor(text=["a photo of a one"], images=[image], return_tensors="pt")).logits_per_image.shape == (1, 1)
    kwargs = {"num_inference_steps": 2, "output_type": "np"}
    sd = StableDiffusionPipeline.from_pretrained(root / "sd")
    assert sd("a photo of the digit four, yellow on black", **kwargs).images.shape == (1, 16, 16, 3)
    img2img = StableDiffusionImg2ImgPipeline.from_pretrained(root / "sd")
    assert img2img("a photo of the digit four", image=Image.fromarray(image), strength=0.5, **kwargs).images.shape == (1, 16, 16, 3)
    ip2p = StableDiffusionInstructPix2PixPipeline.from_pretrained(root / "ip2p")
    assert ip2p("make it red on blue", image=Image.fromarray(image), **kwargs).images.shape == (1, 16, 16, 3)

    again = build_pocket(quick=True, progress=False)  # complete with the same spec: nothing to do
    assert again["spec_hash"] == info["spec_hash"]
