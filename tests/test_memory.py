"""Out-of-memory back-off on real tiny models: the UNet's and CLIP's forward raise above a batch size.

The models are the tiny random pocket models; only their forward is wrapped so that a call
with more than ``limit`` rows raises the error a full GPU raises. Below the limit the real
forward runs, so outputs can be compared bit for bit with a run at a batch that fits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genaug.config import GenerateConfig
from genaug.generation.stage import generate
from genaug.manifest import read_manifest
from genaug.memory import BatchBackoff, DoesNotFitError, format_bytes, is_out_of_memory, memory_needed
from genaug.pocket.tiny import make_tiny_pocket

from generation_helpers import check_set_integrity, pocket_dataset, set_pixels

CUDA_MESSAGE = "CUDA out of memory. Tried to allocate 3.00 GiB. GPU 0 has a total capacity of 7.79 GiB"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_pocket(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def fail_above(monkeypatch, cls, limit: int, key: str, calls: list[int]) -> None:
    """Make ``cls.forward`` raise CUDA's out-of-memory error when its batch (argument ``key``) exceeds ``limit``."""
    forward = cls.forward

    def guarded(self, *args, **kwargs):
        rows = (kwargs[key] if key in kwargs else args[0]).shape[0]
        calls.append(rows)
        if rows > limit:
            raise torch.cuda.OutOfMemoryError(CUDA_MESSAGE)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(cls, "forward", guarded)


# ---------------------------------------------------------------------------- the helper


def test_backoff_halves_keeps_the_halved_size_and_names_the_item_that_does_not_fit():
    seen = []

    def call(start, stop):
        seen.append((start, stop))
        if stop - start > 3:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 3221225472 bytes.")
        return list(range(start, stop))

    backoff = BatchBackoff("stage x", 8)
    assert sum(backoff.run(call, 10), []) == list(range(10))
    assert seen == [(0, 8), (0, 4), (0, 2), (2, 4), (4, 6), (6, 8), (8, 10)] and backoff.batch_size == 2
    assert backoff.halvings == 2

    def never(start, stop):
        raise torch.cuda.OutOfMemoryError(CUDA_MESSAGE)

    with pytest.raises(DoesNotFitError) as error:
        BatchBackoff("stage x", 4, "cuda:0").run(never, 3, lambda i: f"item a{i}")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("stage x: item a0 does not fit in memory even alone (it needed 3.00 GiB more on cuda:0); ")


def test_memory_needed_reads_cuda_and_cpu_messages():
    assert memory_needed(torch.cuda.OutOfMemoryError(CUDA_MESSAGE)) == "3.00 GiB"
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 1610612736 bytes. Error code 12 (Cannot allocate memory)")
    assert is_out_of_memory(cpu) and memory_needed(cpu) == "1.50 GiB"
    assert memory_needed(RuntimeError("MPS backend out of memory")) is None
    assert (format_bytes(512), format_bytes(3 << 20)) == ("512 B", "3.00 MiB")


# ---------------------------------------------------------------------------- the generation engine


def instruct_config(tmp_path, tiny, name: str, batch_size: int) -> GenerateConfig:
    return GenerateConfig(
        output=tmp_path / name, editor={"name": "instruct", "model": str(tiny["ip2p"]), "steps": 2},
        prompts=["make it red on blue", "make the background green"], regime="all",
        engine={"batch_size": batch_size, "progress": False, "device": "cpu"},
    )


def test_generation_backs_off_to_the_batch_that_fits_with_identical_images(tmp_path, tiny, monkeypatch):
    """8 images asked per call, the UNet takes at most 2 (x3 rows: InstructPix2Pix's guidance triples them)."""
    from diffusers import UNet2DConditionModel

    dataset = pocket_dataset(5)  # 10 items: batches of 8 and 2 in the plan
    fits = generate(instruct_config(tmp_path, tiny, "fits", 2), dataset=dataset)
    calls: list[int] = []
    fail_above(monkeypatch, UNet2DConditionModel, 3 * 2, "sample", calls)
    backed_off = generate(instruct_config(tmp_path, tiny, "oom", 8), dataset=dataset)

    assert 24 in calls and 12 in calls and max(calls) == 24  # 8 and 4 images tried, then 2
    assert backed_off.batch_size == 2 and backed_off.made == fits.made == 10
    a, b = set_pixels(tmp_path / "oom"), set_pixels(tmp_path / "fits")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)  # bit for bit
    records = read_manifest(tmp_path / "oom")
    assert {record.params["batch_size"] for record in records} == {2}
    assert {record.params["batch_size"] for record in read_manifest(tmp_path / "fits")} == {2}
    check_set_integrity(tmp_path / "oom")


def test_generation_stops_with_one_line_when_one_image_does_not_fit(tmp_path, tiny, monkeypatch):
    from diffusers import UNet2DConditionModel

    fail_above(monkeypatch, UNet2DConditionModel, 0, "sample", [])
    with pytest.raises(DoesNotFitError) as error:
        generate(instruct_config(tmp_path, tiny, "none", 4), dataset=pocket_dataset(2))
    assert str(error.value).startswith(
        "editor instruct: item pocket_0000-instruct-p0 does not fit in memory even alone (it needed 3.00 GiB more on cpu); "
    )
    assert read_manifest(tmp_path / "none") == []


def test_the_cli_prints_the_one_line_and_exits_2(tmp_path, tiny, monkeypatch, capsys):
    from diffusers import UNet2DConditionModel

    from genaug.cli import main

    fail_above(monkeypatch, UNet2DConditionModel, 0, "sample", [])
    monkeypatch.setattr("sys.argv", [
        "genaug", "generate", f"output={tmp_path / 'cli'}", "dataset.labels_per_class=1", f"editor.model={tiny['ip2p']}",
        "editor.steps=2", "engine.progress=false", "engine.device=cpu",
    ])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # besides loading bars
    assert line.startswith("error: editor instruct: item pocket_") and "it needed 3.00 GiB more on cpu" in line
    assert not list((tmp_path / "cli" / "images").rglob("*.png"))


# ---------------------------------------------------------------------------- CLIP scoring


def fresh_clip(tiny):
    from genaug.clip import Clip

    return Clip.from_pretrained(tiny["clip"], stage="mix shb")


def vision_tower(tiny) -> type:
    """The class of CLIP's vision tower (its forward is what a full device fails in)."""
    return type(fresh_clip(tiny).model.vision_model)


def text_tower(tiny) -> type:
    return type(fresh_clip(tiny).model.text_model)


def digit_pairs(n):
    from genaug.pocket.render import DIGIT_NAMES, styled_digits

    images, labels, _, _ = styled_digits(np.arange(n))
    edits = styled_digits(np.arange(n, 2 * n))[0]
    as_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
    return as_tensor(images), as_tensor(edits), [DIGIT_NAMES[label] for label in labels]


def test_shb_patch_scoring_backs_off_with_identical_masks_and_blends(tiny, monkeypatch):
    """6 pairs x 9 patches = 54 patches asked in one CLIP call; the vision tower takes at most 10."""
    from genaug.mixing import semantic_hybrid_blend
    from genaug.mixing.shb import score_patches

    originals, generated, names = digit_pairs(6)
    fits_clip = fresh_clip(tiny)
    fits = semantic_hybrid_blend(originals, generated, names, fits_clip, batch_size=6, return_heatmaps=True)
    fits_grid = score_patches(generated, names, fits_clip, patch=8, stride=4, batch_size=6)
    calls: list[int] = []
    fail_above(monkeypatch, vision_tower(tiny), 10, "pixel_values", calls)
    clip = fresh_clip(tiny)
    backed_off = semantic_hybrid_blend(originals, generated, names, clip, batch_size=64, return_heatmaps=True)

    assert calls[:4] == [54, 27, 13, 6] and clip.batch_limit == 6
    assert backed_off.clip_batch_size == fits.clip_batch_size == 6
    assert torch.equal(score_patches(generated, names, clip, patch=8, stride=4, batch_size=64), fits_grid)
    assert torch.equal(backed_off.heatmaps, fits.heatmaps)
    assert torch.equal(backed_off.masks, fits.masks) and torch.equal(backed_off.images, fits.images)


def test_clip_embeddings_back_off_and_a_patch_that_does_not_fit_is_named(tiny, monkeypatch):
    images = np.stack([digit_pairs(5)[0][i].permute(1, 2, 0).numpy() for i in range(5)])
    texts = [f"a photo of a {name}" for name in digit_pairs(5)[2]]
    expected_images = fresh_clip(tiny).image_embeds(images, batch_size=1)
    expected_texts = fresh_clip(tiny).text_embeds(texts, batch_size=1)
    fail_above(monkeypatch, vision_tower(tiny), 1, "pixel_values", [])
    fail_above(monkeypatch, text_tower(tiny), 1, "input_ids", [])
    clip = fresh_clip(tiny)
    assert torch.equal(clip.image_embeds(images, batch_size=4), expected_images)
    assert torch.equal(clip.text_embeds(texts, batch_size=4), expected_texts)
    assert clip.batch_limit == 1 and clip.batch_size_used(64) == 1

    fail_above(monkeypatch, vision_tower(tiny), 0, "pixel_values", [])
    originals, generated, names = digit_pairs(2)
    from genaug.mixing import semantic_hybrid_blend

    with pytest.raises(DoesNotFitError) as error:
        semantic_hybrid_blend(originals, generated, names, fresh_clip(tiny), batch_size=16)
    assert str(error.value).startswith(
        "mix shb: patch (0, 0) of image 0 (8x8 px) does not fit in memory even alone (it needed 3.00 GiB more on cpu); "
    )


def test_mix_records_and_filter_report_hold_the_clip_batch_used(tmp_path, tiny, monkeypatch):
    from genaug.config import FilterConfig, MixConfig
    from genaug.filtering.stage import filter_set
    from genaug.mixing.stage import mix

    dataset = pocket_dataset(4)
    generate(instruct_config(tmp_path, tiny, "gen", 8), dataset=dataset)
    fail_above(monkeypatch, vision_tower(tiny), 5, "pixel_values", [])
    config = MixConfig(generated=tmp_path / "gen", output=tmp_path / "mixed", methods=["shb"], progress=False,
                       shb={"clip": str(tiny["clip"]), "device": "cpu", "clip_batch_size": 32})
    assert mix(config, dataset=dataset)["shb"].made == 8
    assert {record.params["clip_batch_size"] for record in read_manifest(tmp_path / "mixed" / "shb")} == {4}

    report = filter_set(FilterConfig(set_dir=tmp_path / "gen", clip=str(tiny["clip"]), device="cpu", batch_size=16,
                                     filters=[{"name": "clip_rank", "keep_ratio": 0.5}], progress=False))
    assert report.clip_batch_size == 4


def test_sdi_latent_cache_backs_off_with_identical_latents(tiny, monkeypatch):
    from diffusers import AutoencoderKL

    from genaug.sdi.cache import build_latent_cache

    vae = AutoencoderKL.from_pretrained(str(tiny["sd"]), subfolder="vae").eval()
    dataset = pocket_dataset(8)
    fits = build_latent_cache(vae, dataset, 16, batch_size=2)
    calls: list[int] = []
    fail_above(monkeypatch, type(vae.encoder), 2, "sample", calls)
    backed_off = build_latent_cache(vae, dataset, 16, batch_size=8)
    assert calls == [8, 4, 2, 2, 2, 2]
    assert torch.equal(backed_off.mean, fits.mean) and torch.equal(backed_off.std, fits.std)
