"""Real scale without the real weights: CLIP's real tokenizer, stand-ins with the hub
architectures, the rehearsal of the shipped real-scale experiments, and the cost estimate."""

from __future__ import annotations

import gzip
import json
import resource
import time
from pathlib import Path

import pytest
import torch

from genaug.experiment import load_experiment
from genaug.rehearsal import cost, standins
from genaug.rehearsal.run import hub_references, rehearsal_experiment, write_standin_dataset
from genaug.rehearsal.tokenizer import CLIP_VOCAB_SIZE, clip_tokenizer
from genaug.sdi.conditioning import SDI_PROMPT, class_token_position, prompt_token_ids

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SD15 = "runwayml/stable-diffusion-v1-5"


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer()


# ---------------------------------------------------------------------------- tokenizer


def test_clip_tokenizer_is_openai_clips(tokenizer):
    assert len(tokenizer) == CLIP_VOCAB_SIZE == 49408
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer.convert_ids_to_tokens([49406, 49407, 2368]) == ["<|startoftext|>", "<|endoftext|>", "cat</w>"]
    assert tokenizer.model_max_length == 77


def test_sdi_class_slot_with_the_real_tokenizer(tokenizer):
    ids = prompt_token_ids(tokenizer, SDI_PROMPT)
    # start, a, high, quality, photo, of, a, class, ., end, then end-token padding to 77
    assert ids[:10] == [49406, 320, 1400, 3027, 1125, 539, 320, 1874, 269, 49407]
    assert ids[10:] == [49407] * 67
    assert class_token_position(tokenizer) == 7


def test_altered_merges_file_is_refused(tmp_path, monkeypatch):
    from genaug.rehearsal import tokenizer as tok

    altered = tmp_path / "bpe.txt.gz"
    altered.write_bytes(gzip.compress(b"#version\na b\n"))
    monkeypatch.setattr(tok, "bpe_path", lambda: altered)
    with pytest.raises(ValueError, match="sha256"):
        tok.clip_merges()


# ---------------------------------------------------------------------------- stand-in architectures


@pytest.mark.parametrize(
    "hub_id, component, parameters",
    [
        (SD15, "unet", 859_520_964),  # SD 1.5 UNet, as published
        (SD15, "vae", 83_653_863),
        (SD15, "text_encoder", 123_060_480),  # CLIP ViT-L/14's text tower
        ("stabilityai/sd-vae-ft-mse", None, 83_653_863),
        ("timbrooks/instruct-pix2pix", "unet", 859_520_964 + 4 * 320 * 3 * 3),  # 4 more input channels
        ("openai/clip-vit-base-patch32", None, 151_277_313),
        ("openai/clip-vit-large-patch14", None, 427_616_513),
    ],
)
def test_stand_in_architectures_have_the_published_parameter_counts(hub_id, component, parameters):
    model = standins.meta_model(hub_id, component)
    assert standins.parameter_count(model) == parameters


def test_hub_configs_are_the_real_ones():
    sd = standins.meta_model(SD15, "unet").config
    assert list(sd.block_out_channels) == [320, 640, 1280, 1280]
    assert (sd.cross_attention_dim, sd.attention_head_dim, sd.layers_per_block, sd.sample_size) == (768, 8, 2, 64)
    assert standins.meta_model("timbrooks/instruct-pix2pix", "unet").config.in_channels == 8
    assert standins.meta_model("openai/clip-vit-large-patch14").config.projection_dim == 768
    assert standins.meta_model("openai/clip-vit-base-patch32").config.projection_dim == 512
    with pytest.raises(ValueError, match="stand-ins exist for"):
        standins.hub_config_dir("someone/unknown-model")


@pytest.mark.slow
def test_clip_stand_in_loads_like_the_hub_model(tokenizer):
    from genaug.clip import Clip

    folder = standins.standin_dir("openai/clip-vit-base-patch32")
    hub_config = json.loads((standins.hub_config_dir("openai/clip-vit-base-patch32") / "config.json").read_text())
    assert json.loads((folder / "config.json").read_text()) == hub_config
    clip = Clip.from_pretrained(str(folder))
    assert clip.processor.tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert clip.input_size == (224, 224)
    embeds = clip.text_embeds(["a photo of a cat"])
    assert embeds.shape == (1, 512)
    assert standins.parameter_count(clip.model) == 151_277_313


# ---------------------------------------------------------------------------- the rehearsed experiment


def test_rehearsal_experiment_swaps_every_hub_model_and_keeps_the_shapes(tmp_path):
    experiment = load_experiment(CONFIGS / "cub_sdi.yaml")
    assert hub_references(experiment) == ["openai/clip-vit-large-patch14", SD15, "stabilityai/sd-vae-ft-mse"]
    fake = {ref: f"/standins/{i}" for i, ref in enumerate(hub_references(experiment))}
    root = write_standin_dataset(experiment.dataset, tmp_path / "data")
    small = rehearsal_experiment(experiment, fake, root, steps=1)
    text = json.dumps({name: spec.params for name, spec in small.stages.items()})
    assert not any(ref in text for ref in fake)
    sdi = small.stages["sdi"].params
    assert sdi["model"] == fake[SD15] and sdi["generate"]["vae"] == fake["stabilityai/sd-vae-ft-mse"]
    assert sdi["generate"]["steps"] == 1 and sdi["sample"]["multiplier"] == 1 and sdi["train"]["max_steps"] == 1
    assert sdi["generate"]["guidance_scale"] == 2.0  # guidance, hence the UNet batch, as in the real run
    assert small.dataset.image_size == 256 and small.seeds == [0]
    assert [arm.name for arm in small.arms] == [arm.name for arm in experiment.arms]
    from PIL import Image

    assert Image.open(next((root / "train").rglob("*.png"))).size == (500, 375)


def test_unet_calls_at_the_real_step_count_keep_the_schedulers_extra_call():
    from genaug.rehearsal.run import real_unet_calls

    # PNDM: 2 steps made 3 calls for one batch of 2 items -> 50 steps make 51 calls, half each
    assert real_unet_calls(3, 2, 2, 50) == 25.5
    # Euler / DDIM: calls == steps; 3 items in batches of 2 -> 2 batches
    assert real_unet_calls(1, 2, 1, 100) == 50
    assert real_unet_calls(4, 3, 2, 50) == 2 * 50 / 3
    assert real_unet_calls(0, 2, 1, 50) is None and real_unet_calls(2, 2, None, 50) is None


# ---------------------------------------------------------------------------- cost estimate


def test_unet_flops_are_counted_on_the_meta_device():
    one = cost.unet_flops(SD15, 64, 1)
    assert cost.unet_flops(SD15, 64, 2) == 2 * one
    # SD 1.5's UNet at 64x64 latents: about 0.8 TFLOP per sample (2 FLOPs per multiply-add)
    assert 0.7e12 < one < 0.9e12
    assert cost.unet_flops(SD15, 32, 1) < one / 3


def test_cost_estimate_of_cub_sdi_counts_each_part():
    experiment = load_experiment(CONFIGS / "cub_sdi.yaml")
    estimate = cost.estimate_experiment(experiment)
    n = 5994 - round(5994 * 0.1)  # CUB's train split less the held-out validation share
    assert estimate["dataset"]["train"] == n
    rows = {(row["stage"], row["part"]): row for row in estimate["rows"]}
    generate = rows[("sdi", "generate")]
    assert generate["items"] == 40 * n
    decode = cost.vae_flops("stabilityai/sd-vae-ft-mse", 512, False, None)
    assert generate["flops_per_item"] == 50 * cost.unet_flops(SD15, 64, 2) + decode
    assert rows[("txt2img", None)]["items"] == n
    assert rows[("sdi_filtered", None)]["items"] == 40 * n
    # the filtered arm trains on the real images and the half of the SDI set the filter keeps
    assert rows[("train:sdi", None)]["items"] == 100 * 3 * (n + 20 * n)
    assert rows[("train:sdi_unfiltered", None)]["items"] == 100 * 3 * (n + 40 * n)
    assert estimate["flops"] == sum(row["flops"] for row in estimate["rows"])
    table = cost.cost_table(estimate, {"flops_per_second": 1e11, "source": "test"})
    assert "total" in table and "h A100" in table and "assumption" in table


def test_cpu_throughput_comes_from_the_rehearsals_generation_stages(tmp_path):
    def row(flops, calls, steady, real_steps=50):
        return {"flops_by_model": {"UNet2DConditionModel": flops}, "unet_calls": calls,
                "unet_steady_call_seconds": steady, "real_steps": real_steps}

    stages = [row(8e12, 4, 10.0), row(6e12, 2, 20.0), row(3e12, 3, 5.0),
              row(9e12, 1, 1.0, real_steps=None)]  # projector training: forward time, forward+backward FLOPs
    path = tmp_path / "rehearsal.json"
    path.write_text(json.dumps({"stages": stages, "created": "then", "machine": {"load_average": [1.0]}}))
    measured = cost.cpu_throughput(path)
    assert measured["flops_per_second"] == 2e11  # median of 2e11, 1.5e11, 2e11
    assert str(path) in measured["source"]
    assert cost.cpu_throughput(tmp_path / "missing.json") == cost.CPU_MEASURED


def test_dry_run_prints_the_cost(tmp_path):
    from typer.testing import CliRunner

    from genaug.cli import app

    result = CliRunner().invoke(app, ["run", str(CONFIGS / "cifar100_diffusemix.yaml"), "--dry-run", "--out", str(tmp_path / "run")])
    # the plan and its cost are printed, then the missing data is the error (CIFAR-100 is not on this machine)
    assert "dataset.root" in str(result.exception) and "does not exist" in str(result.exception), result.output
    assert "cost estimate of 'cifar100_diffusemix'" in result.output
    assert "edit_all" in result.output and "h H100" in result.output
    demo = CliRunner().invoke(app, ["run", str(CONFIGS / "demo.yaml"), "--dry-run", "--out", str(tmp_path / "demo")])
    # the pocket models' architectures are read from their own config files
    assert demo.exit_code == 0 and "cost estimate of 'demo'" in demo.output, demo.output
    assert "no architecture known" not in demo.output and "dafusion" in demo.output


# ---------------------------------------------------------------------------- the rehearsals


@pytest.mark.slow
def test_rehearsals_of_the_real_scale_experiments(tmp_path):
    """Both real-scale experiments, every stage, at the real architectures and resolutions."""
    from genaug.manifest import read_manifest
    from genaug.rehearsal import rehearse

    timings = {}
    for name in ("cub_sdi", "cifar100_diffusemix"):
        experiment = load_experiment(CONFIGS / f"{name}.yaml")
        started = time.perf_counter()
        result = rehearse(experiment, tmp_path / name, echo=lambda line: None)
        timings[name] = time.perf_counter() - started
        stored = json.loads((tmp_path / name / "rehearsal.json").read_text())
        assert stored["stages"] == json.loads(json.dumps(result["stages"]))
        measured = {row["stage"] for row in result["stages"]}
        assert measured == set(experiment.stages) | {f"train:{arm.name}" for arm in experiment.arms}
        for row in result["stages"]:
            assert row["items"] >= 1 and row["seconds"] > 0 and row["peak_rss_bytes"] > 0, row
        for folder in standins_used(result):
            assert Path(folder, standins.COMPLETE).is_file()
        if name == "cub_sdi":
            sdi_generate = next(r for r in result["stages"] if r["stage"] == "sdi" and r["part"] == "generate")
            assert sdi_generate["real_steps"] == 50 and sdi_generate["extrapolated"]
            # one UNet call per step on [negative, positive] x 2 items: 4 latents of 64x64
            assert sdi_generate["flops_by_model"]["UNet2DConditionModel"] == cost.unet_flops(SD15, 64, 4)
            records = read_manifest(next((tmp_path / name / "artifacts").glob("sdi-*/generated/gaussian")))
            assert len(records) == 2 and records[0].params["steps"] == 1
            assert records[0].model["path"].endswith("runwayml--stable-diffusion-v1-5-seed0")
            from PIL import Image

            image = Image.open(next((tmp_path / name / "artifacts").glob("sdi-*/generated/gaussian")) / records[0].path)
            assert image.size == (512, 512)
        else:
            edit = next(r for r in result["stages"] if r["stage"] == "edit_single")
            # InstructPix2Pix at 256 px: 3 guidance branches x 2 items of 8-channel 32x32 latents
            assert edit["flops_by_model"]["UNet2DConditionModel"] == cost.unet_flops("timbrooks/instruct-pix2pix", 32, 6)
            assert edit["real_steps"] == 100
            shb = next(r for r in result["stages"] if r["stage"] == "mix_random")
            assert shb["vit_flops_per_item"] > 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"rehearsal seconds {timings}, peak RSS {peak / 2**30:.2f} GiB")
    assert peak <= 14 * 2**30


def standins_used(result) -> list[str]:
    return list(result["standins"].values())


def test_a_failing_stage_is_reported_and_what_reads_it_is_skipped(tmp_path):
    from genaug.experiment.config import ExperimentConfig
    from genaug.rehearsal import rehearse

    missing = tmp_path / "no-such-pipeline"
    experiment = ExperimentConfig.model_validate({
        "name": "broken",
        "dataset": {"name": "pocket_digits", "labels_per_class": 10},
        "seeds": [0],
        "train": {"recipe": "pocket"},
        "stages": {
            "edits": {"kind": "generate", "editor": {"name": "instruct", "model": str(missing)}},
            "mixed": {"kind": "mix", "input": "edits", "methods": ["concat"]},
        },
        "arms": [{"name": "baseline"}, {"name": "dm", "data": "mixed/concat"}],
    })
    result = rehearse(experiment, tmp_path / "rehearsal", count_flops=False, echo=lambda line: None)
    rows = {row["stage"]: row for row in result["stages"]}
    assert list(result["failed"]) == ["edits"] and "no-such-pipeline" in result["failed"]["edits"]
    assert rows["mixed"]["skipped"] == "its input edits did not run"
    assert rows["train:dm"]["skipped"] == "stage mixed did not run"
    assert rows["train:baseline"]["items"] == 2 and rows["train:baseline"]["seconds"] > 0
    assert "FAILED: edits" in (tmp_path / "rehearsal" / "rehearsal.md").read_text()


def test_cost_of_shb_is_one_clip_pass_per_patch_of_the_generated_image():
    experiment = load_experiment(CONFIGS / "cifar100_diffusemix.yaml")
    rows = {row["stage"]: row for row in cost.estimate_experiment(experiment, arms=["shb"])["rows"]}
    # 256 px with 32 px patches at stride 16: a 15 x 15 grid
    assert rows["mix_random"]["flops_per_item"] == 15 * 15 * cost.vit_flops("openai/clip-vit-base-patch32")
    assert rows["edit_random"]["items"] == 45000 and "edit_all" not in rows
    assert rows["train:shb"]["items"] == 300 * 3 * (45000 + 45000)
