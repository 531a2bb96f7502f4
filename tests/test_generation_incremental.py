"""Incremental generate passes: when images are added, only the items whose inputs changed are
made; the rest are copied from the earlier set, and the result equals a full run's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.config import EngineConfig, GenerateConfig
from genaug.data import load_dataset
from genaug.generation.engine import run_job
from genaug.generation.stage import generate, plan_edit_items, source_digests
from genaug.manifest import read_manifest

from generation_helpers import SeedRenderer, check_set_integrity, set_pixels


def add_images(root: Path, start: int, stop: int, classes=("cat", "dog")) -> None:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, stop):
            rng = np.random.default_rng([c, i])
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i:02d}.png")


def comparable(record) -> dict:
    """A record without what legitimately differs between an incremental and a full pass."""
    fields = dict(vars(record))
    fields["params"] = {k: v for k, v in record.params.items() if k != "reused_from"}
    fields.pop("created")
    return fields


def config(root: Path, output: Path, batch_size: int = 4) -> GenerateConfig:
    return GenerateConfig.model_validate({
        "dataset": {"name": "folder", "root": str(root), "labels_per_class": "all", "image_size": 16},
        "output": str(output), "regime": "single", "prompts": ["make it red"],
        "editor": {"name": "instruct", "steps": 2},
        "engine": {"batch_size": batch_size, "progress": False},
    })  # fmt: skip


def test_added_images_make_only_new_items_and_the_set_equals_a_full_run(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    root = tmp_path / "data"
    add_images(root, 0, 8)
    before = generate(config(root, tmp_path / "before"))
    old_ids = {record.id for record in read_manifest(tmp_path / "before")}
    assert before.made == len(old_ids) > 0 and before.reused == 0

    add_images(root, 8, 12)
    new_train = load_dataset(config(root, tmp_path / "x").dataset)
    incremental = generate(config(root, tmp_path / "after"), reuse_from=[tmp_path / "before"])
    full = generate(config(root, tmp_path / "full"))
    made_ids = {r.id for r in read_manifest(tmp_path / "after") if "reused_from" not in r.params}
    assert incremental.made == len(made_ids) == len(new_train) - len(old_ids)  # only the new items were made
    assert made_ids.isdisjoint(old_ids) and incremental.reused == len(old_ids)
    assert {r.id: r.params["reused_from"] for r in read_manifest(tmp_path / "after") if r.id in old_ids} == dict.fromkeys(old_ids, "before")

    after = {r.id: r for r in read_manifest(tmp_path / "after")}
    whole = {r.id: r for r in read_manifest(tmp_path / "full")}
    assert after.keys() == whole.keys()
    assert all(comparable(after[i]) == comparable(whole[i]) for i in whole)  # same ids, seeds, prompts, keys, params
    # Pixels: equal as far as the engine is batch-invariant (an item made in another batch may
    # differ by one grey level, module doc of genaug.generation.engine).
    a, b = set_pixels(tmp_path / "after"), set_pixels(tmp_path / "full")
    assert max(int(np.abs(a[i].astype(int) - b[i].astype(int)).max()) for i in whole) <= 1
    check_set_integrity(tmp_path / "after")

    again = generate(config(root, tmp_path / "after"), reuse_from=[tmp_path / "before"])
    assert again.made == 0 and again.already_done == len(whole)  # a rerun has nothing left to do


def test_an_edited_source_or_other_parameters_are_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    root = tmp_path / "data"
    add_images(root, 0, 6)
    dataset = load_dataset({"name": "folder", "root": root, "labels_per_class": "all"})
    items = plan_edit_items(dataset, "fake", ["p"], config(root, tmp_path / "x"))
    engine = EngineConfig(batch_size=3, progress=False)
    run_job(items, SeedRenderer(), tmp_path / "a", experiment_seed=0, engine=engine, sources=source_digests(dataset))

    edited = dataset.paths[0]
    Image.new("RGB", (16, 16), (9, 9, 9)).save(edited)
    dataset = load_dataset({"name": "folder", "root": root, "labels_per_class": "all"})
    items = plan_edit_items(dataset, "fake", ["p"], config(root, tmp_path / "x"))
    report = run_job(items, SeedRenderer(), tmp_path / "b", experiment_seed=0, engine=engine,
                     sources=source_digests(dataset), reuse_from=[tmp_path / "a"])  # fmt: skip
    edited_ids = [item.id for item in items if item.source_id == edited.relative_to(root).as_posix()]
    assert report.made == len(edited_ids) == 1 and report.reused == len(items) - 1

    class Other(SeedRenderer):
        def params(self):
            return {"editor": "fake", "steps": 3}

    report = run_job(items, Other(), tmp_path / "c", experiment_seed=0, engine=engine,
                     sources=source_digests(dataset), reuse_from=[tmp_path / "b"])  # fmt: skip
    assert report.made == len(items) and report.reused == 0


class Killed(Exception):
    pass


def test_a_kill_during_an_incremental_pass_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    root = tmp_path / "data"
    add_images(root, 0, 6)
    engine = EngineConfig(batch_size=2, progress=False)

    def job(renderer, out, reuse=()):
        dataset = load_dataset({"name": "folder", "root": root, "labels_per_class": "all"})
        items = plan_edit_items(dataset, "fake", ["p"], config(root, tmp_path / "x"))
        return run_job(items, renderer, out, experiment_seed=0, engine=engine, sources=source_digests(dataset), reuse_from=reuse)

    job(SeedRenderer(), tmp_path / "before")
    add_images(root, 6, 11)

    class Dies(SeedRenderer):
        def render(self, items, seeds):
            if len(self.calls) == 2:
                raise Killed
            return super().render(items, seeds)

    with pytest.raises(Killed):
        job(Dies(), tmp_path / "after", [tmp_path / "before"])
    partial = read_manifest(tmp_path / "after")
    assert 0 < len(partial) and any("reused_from" in r.params for r in partial)
    resumed = job(SeedRenderer(), tmp_path / "after", [tmp_path / "before"])
    uninterrupted = job(SeedRenderer(), tmp_path / "clean", [tmp_path / "before"])
    assert resumed.already_done == len(partial)
    a, b = set_pixels(tmp_path / "after"), set_pixels(tmp_path / "clean")
    assert a.keys() == b.keys() and all(np.array_equal(a[i], b[i]) for i in a)
    after = {r.id: comparable(r) for r in read_manifest(tmp_path / "after")}
    assert after == {r.id: comparable(r) for r in read_manifest(tmp_path / "clean")}
    check_set_integrity(tmp_path / "after")


def test_a_mix_stage_on_an_incremental_set_mixes_only_the_new_pairs(tmp_path, monkeypatch):
    from genaug.config import MixConfig
    from genaug.mixing.stage import mix

    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    root = tmp_path / "data"
    add_images(root, 0, 6)
    engine = EngineConfig(batch_size=3, progress=False)
    dataset_config = {"name": "folder", "root": str(root), "labels_per_class": "all"}

    def edits(out, reuse=()):
        dataset = load_dataset(dataset_config)
        items = plan_edit_items(dataset, "fake", ["p"], config(root, tmp_path / "x"))
        run_job(items, SeedRenderer(size=8), out, experiment_seed=0, engine=engine, sources=source_digests(dataset), reuse_from=reuse)

    def mixed(generated, out, reuse=()):
        settings = MixConfig(generated=generated, output=out, dataset=dataset_config, methods=["concat", "rect"], progress=False)
        return mix(settings, reuse_from=reuse)

    edits(tmp_path / "edits-1")
    first = mixed(tmp_path / "edits-1", tmp_path / "mixed-1")
    old = first["concat"].made
    add_images(root, 6, 9)
    edits(tmp_path / "edits-2", [tmp_path / "edits-1"])
    again = mixed(tmp_path / "edits-2", tmp_path / "mixed-2", [tmp_path / "mixed-1" / "concat", tmp_path / "mixed-1" / "rect"])
    full = mixed(tmp_path / "edits-2", tmp_path / "mixed-full")
    for method in ("concat", "rect"):
        assert again[method].reused == old and again[method].made == full[method].made - old > 0
        a, b = set_pixels(tmp_path / "mixed-2" / method), set_pixels(tmp_path / "mixed-full" / method)
        assert a.keys() == b.keys() and all(np.array_equal(a[i], b[i]) for i in a)  # mixing is per sample
        records = {r.id: comparable(r) for r in read_manifest(tmp_path / "mixed-2" / method)}
        assert records == {r.id: comparable(r) for r in read_manifest(tmp_path / "mixed-full" / method)}
