"""SDI on the trained pocket world (docs/getting-started.md): the projector learns, and the images it
conditions are of the sampled features' class.

Skipped until the pocket models are built (``genaug pocket build``). The class-fidelity
test also needs pocket CLIP and pocket SD to know digits (their own quality gates
``clip_digit_top1`` and ``sd_digit_fidelity``): SDI can only reproduce a class its image
features and its generator can tell apart. Slow: the pocket preset's projector trained
briefly, 400 images generated, a judge trained.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from genaug.config import FilterConfig, SdiConfig
from genaug.data import load_dataset
from genaug.filtering import filter_set
from genaug.manifest import read_manifest, record_file
from genaug.sdi import build_bank, generate_from_samples, sample_features, train_projector
from genaug.sdi.cache import build_context_cache, build_latent_cache
from genaug.sdi.embed import embed_training_images, image_embeds
from genaug.clip import Clip
from genaug.sdi.models import load_frozen_diffusion
from genaug.sdi.train import build_projector, evaluate_diffusion_loss, load_trained_projector

#: The pocket quality gates SDI's class fidelity depends on.
NEEDED_GATES = ("clip_digit_top1", "sd_digit_fidelity")


def pocket_ready() -> bool:
    try:
        from genaug.pocket import pocket_model_dir

        return (pocket_model_dir("sd") / "model_index.json").is_file() and (pocket_model_dir("clip") / "config.json").is_file()
    except (ImportError, FileNotFoundError, ValueError):
        return False


def failed_gates() -> dict[str, float]:
    """The needed pocket quality gates that the built models fail (from their quality.json)."""
    from genaug.pocket import pocket_paths

    path = pocket_paths()["root"] / "quality.json"
    if not path.is_file():
        return {}
    gates = json.loads(path.read_text()).get("gates", {})
    return {name: gates[name]["value"] for name in NEEDED_GATES if name in gates and not gates[name]["passed"]}


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not pocket_ready(), reason="pocket models are not built yet")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("pocket_sdi")
    config = SdiConfig(
        work_dir=work_dir, dataset={"name": "pocket_digits"}, device="cpu",
        train={"max_steps": 150, "progress": False},  # the pocket preset: train + pretrain pools
        sample={"multiplier": 4},
        generate={"engine": {"batch_size": 64, "progress": False}},
    )
    embed_training_images(config)
    run = train_projector(config)
    return config, run


def test_pocket_projector_lowers_the_diffusion_loss_on_held_out_images(trained):
    config, run = trained
    held_out = load_dataset("pocket_digits", split="test")
    diffusion = load_frozen_diffusion(config.model)
    clip = Clip.from_reference(config.clip)
    embeds = image_embeds(clip, held_out)
    latents = build_latent_cache(diffusion.vae, held_out, 16)
    context = build_context_cache(diffusion.tokenizer, diffusion.text_encoder)
    projector = load_trained_projector(config.work_dir)
    untrained = build_projector(embeds.shape[1], projector.hidden, projector.out_dim, config.train.seed)
    loss_trained = evaluate_diffusion_loss(projector, diffusion, latents, context, embeds, seed=0, draws=2)
    loss_untrained = evaluate_diffusion_loss(untrained, diffusion, latents, context, embeds, seed=0, draws=2)
    print(f"\nheld-out diffusion loss: untrained {loss_untrained:.4f}, trained {loss_trained:.4f} "
          f"after {run.steps} steps ({run.steps_per_second:.2f} steps/s)")
    assert loss_trained < loss_untrained


def test_pocket_images_from_sampled_features_show_their_class(trained):
    from PIL import Image

    from genaug.pocket.quality import train_judge

    failed = failed_gates()
    if failed:
        pytest.skip(f"the pocket models fail the quality gates SDI's class fidelity needs: {failed}")
    config, _ = trained
    build_bank(config)
    sample_features(config)
    generate_from_samples(config)
    set_dir = config.work_dir / "generated" / "gaussian"
    filter_set(FilterConfig(set_dir=set_dir, clip=config.clip, progress=False,
                            filters=[{"name": "frames"}, {"name": "clip_rank", "keep_ratio": 0.5}]))
    records = read_manifest(set_dir)
    images = np.stack([np.asarray(Image.open(record_file(set_dir, r)).convert("RGB")) for r in records])
    labels = np.array([r.label for r in records])
    kept = np.array([r.kept for r in records])
    judge, judge_accuracy = train_judge(seed=0)
    predicted = judge.predict(images)
    before, after = (predicted == labels).mean(), (predicted[kept] == labels[kept]).mean()
    print(f"\njudge (real-digit accuracy {judge_accuracy:.3f}): generated images of their class "
          f"{before:.3f} of {len(records)} before filtering, {after:.3f} of {kept.sum()} after")
    assert after >= 0.70
