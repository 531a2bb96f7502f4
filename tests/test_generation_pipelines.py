"""Editors and the generate + mix stages on tiny random pipelines loaded with from_pretrained."""

from __future__ import annotations

import numpy as np
import pytest

from genaug.config import GenerateConfig, MixConfig
from genaug.generation.stage import dataset_sources, generate, plan_edit_items
from genaug.generation.editors import create_editor
from genaug.manifest import MANIFEST, read_manifest, record_file
from genaug.mixing.stage import mix
from genaug.pocket.tiny import make_tiny_pocket

from generation_helpers import check_set_integrity, pocket_dataset, set_pixels

STEPS = 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folders = make_tiny_pocket(tmp_path_factory.mktemp("tiny"), models=["sd", "ip2p"])
    return {"ip2p": str(folders["ip2p"]), "sd": str(folders["sd"])}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def config(tmp_path, tiny, name="instruct", **kw) -> GenerateConfig:
    model = tiny["ip2p"] if name == "instruct" else tiny["sd"]
    editor = {"name": name, "model": model, "steps": STEPS, **kw.pop("editor", {})}
    return GenerateConfig(output=tmp_path / "gen", editor=editor, engine={"progress": False, **kw.pop("engine", {})}, **kw)


@pytest.mark.parametrize(
    "name", ["instruct", pytest.param("img2img", marks=pytest.mark.slow), pytest.param("txt2img", marks=pytest.mark.slow)]
)
def test_batch_of_eight_matches_items_made_alone(tmp_path, tiny, name):
    """Per-image generators make an image independent of its batch, up to CPU kernel rounding.

    Measured on this CPU: oneDNN picks another convolution kernel for a batch of one and
    GEMM row-blocking differs inside and outside full blocks, so floats differ by ~1e-6;
    after rounding to uint8 images agree exactly or within one grey level. The engine's
    fixed batch plan makes runs, resumes and shards bit-identical regardless (tested below).
    """
    dataset = pocket_dataset(8)
    cfg = config(tmp_path, tiny, name, prompts=["make it red on blue", "snowy {class}"], regime="all")
    editor = create_editor(cfg.editor, sources=dataset_sources(dataset))
    items = plan_edit_items(dataset, name, ["make it red on blue", "snowy {class}"], cfg)[:8]
    seeds = [item.seed for item in items]
    batch = editor.render(items, seeds)
    assert batch.shape == (8, 16, 16, 3) and batch.dtype == np.uint8
    alone = np.concatenate([editor.render(items[i : i + 1], seeds[i : i + 1]) for i in range(8)])
    difference = np.abs(batch.astype(int) - alone.astype(int))
    assert difference.max() <= 1, f"batch and single renders differ by {difference.max()} grey levels"
    assert np.array_equal(editor.render(items, seeds), batch)  # same batch, same pixels
    assert not np.array_equal(batch[0], batch[1])  # different seeds and prompts, different images


def test_generate_then_mix_makes_complete_sets_whose_sources_resolve(tmp_path, tiny):
    dataset = pocket_dataset(6)
    cfg = config(tmp_path, tiny, prompts="pocket", regime="all", engine={"batch_size": 8})
    cfg.prompts = ["make it red on blue", "make the background green"]
    report = generate(cfg, dataset=dataset)
    assert report.made == 12
    generated = {r.id: r for r in read_manifest(tmp_path / "gen")}
    assert sorted(generated) == sorted(f"pocket_{i:04d}-instruct-p{k}" for i in range(6) for k in range(2))
    record = generated["pocket_0003-instruct-p1"]
    assert record.source_ids == ["pocket/0003"] and record.prompt == "make the background green"
    assert record.label == int(dataset.labels[3]) and record.class_name == dataset.class_names[record.label]
    assert record.params | {"editor": "instruct", "steps": STEPS, "guidance": 4.0, "image_guidance": 1.5, "size": 16,
                            "scheduler": "EulerAncestralDiscreteScheduler", "prompt_index": 1} == record.params
    assert record.model["path"] == tiny["ip2p"] and record.model["hash"].startswith("sha256:")
    assert (tmp_path / "gen" / "generate.yaml").is_file()
    check_set_integrity(tmp_path / "gen")

    mix_cfg = MixConfig(generated=tmp_path / "gen", output=tmp_path / "mixed", methods=["concat", "rect", "fractal"],
                        fractals={"count": 4, "size": 16}, progress=False)
    reports = mix(mix_cfg, dataset=dataset)
    real_ids = set(dataset.ids)
    for method in ("concat", "rect", "fractal"):
        assert reports[method].made == 12
        mixed = read_manifest(tmp_path / "mixed" / method)
        assert len(mixed) == 12 and all(r.method == method for r in mixed)
        for r in mixed:
            real_id, generated_id = r.source_ids
            assert real_id in real_ids and generated_id in generated
            assert generated[generated_id].source_ids == [real_id] and r.label == generated[generated_id].label
        check_set_integrity(tmp_path / "mixed" / method)
    again = mix(mix_cfg, dataset=dataset)
    assert all(report.made == 0 for report in again.values())


def test_img2img_and_txt2img_records(tmp_path, tiny):
    dataset = pocket_dataset(4)
    img2img = generate(config(tmp_path, tiny, "img2img", editor={"strength": 0.6}, prompts="pocket_captions"), dataset=dataset)
    assert img2img.made == 4
    record = read_manifest(tmp_path / "gen")[0]
    assert record.method == "img2img" and record.params["strength"] == 0.6 and record.source_ids
    assert record.prompt.startswith(f"a photo of the digit {record.class_name}, ")

    out = tmp_path / "t2i"
    cfg = config(tmp_path, tiny, "txt2img", regime="random", prompts=["a photo of a {class}", "a drawing of a {class}"])
    cfg.output = out
    generate(cfg, dataset=dataset)
    records = read_manifest(out)
    assert len(records) == 4 and all(r.source_ids == [] and r.method == "txt2img" for r in records)
    assert {r.id.rsplit("-", 2)[0] for r in records} == {f"{dataset.class_names[l]}-txt2img" for l in dataset.labels}
    assert all(r.class_name.replace("_", " ") in r.prompt for r in records)


def test_rerun_after_losing_records_and_images_restores_the_same_pixels(tmp_path, tiny):
    dataset = pocket_dataset(6)
    cfg = config(tmp_path, tiny, regime="random", engine={"batch_size": 4})
    generate(cfg, dataset=dataset)
    before = set_pixels(tmp_path / "gen")
    manifest = tmp_path / "gen" / MANIFEST
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:3]) + lines[3][:20])  # two records lost, one torn mid-line
    record_file(tmp_path / "gen", read_manifest(tmp_path / "gen")[0]).unlink()  # and one image
    report = generate(cfg, dataset=dataset)
    assert report.made == 4
    after = set_pixels(tmp_path / "gen")
    assert after.keys() == before.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    check_set_integrity(tmp_path / "gen")
