"""Incremental SDI passes (docs/methods/sdi.md): when images are added to a class, an SDI stage
reuses what the changed data does not reach (a kept projector, the other classes' vectors and
images) and makes the rest; without ``keep_projector`` the projector is trained again and
nothing downstream of it is reused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from genaug.data.base import RealDataset
from genaug.data.pocket_digits import first_train_digits
from genaug.manifest import read_manifest
from genaug.sdi import build_bank, generate_from_samples, sample_features, train_projector
from genaug.sdi.embed import embed_training_images
from genaug.sdi.sample import samples_path
from genaug.sdi.tables import load_table, table_info
from genaug.sdi.train import projector_digest, projector_path

from generation_helpers import check_set_integrity, set_pixels
from test_sdi_helpers import sdi_config

MULTIPLIER = 2


BEFORE = {0: 2, 1: 2, 2: 2}
AFTER = {0: 2, 1: 3, 2: 2}  # one image added to class 1


def config(work: Path, **fields):
    return sdi_config(work, dataset={"name": "pocket_digits"}, sample={"multiplier": MULTIPLIER, **fields.pop("sample", {})},
                      **fields)  # fmt: skip


def run_sdi(cfg, data: RealDataset, earlier: list[Path] = (), renderer=None):
    """Every SDI step on ``data``, given the work dirs of earlier runs; returns the projector run
    and the generation report."""
    datasets = {"train": data}
    embed_training_images(cfg, datasets=datasets)
    run = train_projector(cfg, datasets=datasets, reuse_from=earlier)
    build_bank(cfg)
    sample_features(cfg, reuse_from=earlier)
    sets = [folder / "generated" / "gaussian" for folder in earlier]
    report = generate_from_samples(cfg, renderer=renderer, reuse_from=sets)
    return run, report


def set_of(work: Path) -> Path:
    return work / "generated" / "gaussian"


def comparable(record) -> dict:
    """A record without what differs between an incremental pass and a full one by design."""
    fields = dict(vars(record))
    fields["params"] = {k: v for k, v in record.params.items() if k != "reused_from"}
    fields["embedding"] = {k: v for k, v in record.embedding.items() if k != "file"}
    fields.pop("created")
    return fields


def test_a_kept_projector_remakes_only_the_class_whose_images_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    before = tmp_path / "before"
    run_sdi(config(before, keep_projector=True), first_train_digits(BEFORE))
    assert len(read_manifest(set_of(before))) == MULTIPLIER * sum(BEFORE.values())

    after = tmp_path / "after"
    run, report = run_sdi(config(after, keep_projector=True), first_train_digits(AFTER), [before])
    assert run.reused_from == "before" and run.kept  # the images changed: kept, not equal
    assert projector_digest(projector_path(after)) == projector_digest(projector_path(before))
    info = table_info(samples_path(after, "gaussian"))
    assert info["reused_classes"] == {"zero": "before", "two": "before"}
    assert report.reused == MULTIPLIER * (AFTER[0] + AFTER[2]) and report.made == MULTIPLIER * AFTER[1]
    records = {r.id: r for r in read_manifest(set_of(after))}
    old = {r.id: r for r in read_manifest(set_of(before))}
    for record in records.values():
        if record.class_name == "one":
            assert "reused_from" not in record.params
        else:  # copied: same input key, the vector row of this run's table, the same pixels
            assert record.params["reused_from"] == "before/generated/gaussian"
            assert record.params["input_key"] == old[record.id].params["input_key"]
            assert record.embedding["file"] == str(samples_path(after, "gaussian").resolve())
            vectors = load_table(record.embedding["file"]).features
            assert np.array_equal(vectors[record.embedding["row"]], load_table(old[record.id].embedding["file"]).features[old[record.id].embedding["row"]])
    check_set_integrity(set_of(after))

    # A full run on the new data with that projector (copied into a fresh work dir) makes the
    # same set: same ids, seeds, keys and records; the same pixels.
    full = tmp_path / "full"
    projector_path(full).parent.mkdir(parents=True)
    shutil.copy(projector_path(before), projector_path(full))
    cfg = config(full, keep_projector=True)
    embed_training_images(cfg, datasets={"train": first_train_digits(AFTER)})
    build_bank(cfg)
    sample_features(cfg)
    whole = generate_from_samples(cfg)
    assert whole.made == len(records) and whole.reused == 0
    full_records = {r.id: comparable(r) for r in read_manifest(set_of(full))}
    assert {i: comparable(r) for i, r in records.items()} == full_records
    a, b = set_pixels(set_of(after)), set_pixels(set_of(full))
    assert a.keys() == b.keys() and all(np.array_equal(a[i], b[i]) for i in a)

    again = run_sdi(config(after, keep_projector=True), first_train_digits(AFTER), [before])[1]
    assert again.made == 0 and again.already_done == len(records)  # a rerun has nothing left to do


def test_without_keep_projector_changed_images_retrain_it_and_nothing_downstream_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    before = tmp_path / "before"
    run_sdi(config(before), first_train_digits(BEFORE))
    run, report = run_sdi(config(tmp_path / "after"), first_train_digits(AFTER), [before])
    assert run.reused_from is None and run.steps >= 1  # trained on the new images
    assert table_info(samples_path(tmp_path / "after", "gaussian"))["reused_classes"] == {}
    assert report.reused == 0 and report.made == MULTIPLIER * sum(AFTER.values())

    # Unchanged images, other generation settings: the projector and every class's vectors are
    # the earlier run's (equal inputs), every image is made again (its renderer changed).
    run, report = run_sdi(config(tmp_path / "guided", generate={"guidance_scale": 3.0}), first_train_digits(BEFORE), [before])
    assert run.reused_from == "before" and not run.kept
    assert sorted(table_info(samples_path(tmp_path / "guided", "gaussian"))["reused_classes"]) == ["one", "two", "zero"]
    assert report.reused == 0 and report.made == MULTIPLIER * sum(BEFORE.values())
    # Another sampling seed: the projector is reused, every class is sampled again.
    run, report = run_sdi(config(tmp_path / "seeded", sample={"seed": 5}), first_train_digits(BEFORE), [before])
    assert run.reused_from == "before" and table_info(samples_path(tmp_path / "seeded", "gaussian"))["reused_classes"] == {}


class Killed(Exception):
    pass


def test_a_kill_during_an_incremental_sdi_pass_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    from genaug.sdi.generate import build_renderer

    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    before = tmp_path / "before"
    run_sdi(config(before, keep_projector=True, generate={"engine": {"batch_size": 2, "progress": False}}), first_train_digits(BEFORE))

    after = tmp_path / "after"
    cfg = config(after, keep_projector=True, generate={"engine": {"batch_size": 2, "progress": False}})
    data = {"train": first_train_digits(AFTER)}
    embed_training_images(cfg, datasets=data)
    train_projector(cfg, datasets=data, reuse_from=[before])
    build_bank(cfg)
    sample_features(cfg, reuse_from=[before])
    renderer = build_renderer(cfg, load_table(samples_path(after, "gaussian")))
    real_render, calls = renderer.render, []

    def dies(items, seeds):
        calls.append(len(items))
        if len(calls) == 2:
            raise Killed
        return real_render(items, seeds)

    monkeypatch.setattr(renderer, "render", dies)
    with pytest.raises(Killed):
        generate_from_samples(cfg, renderer=renderer, reuse_from=[set_of(before)])
    partial = read_manifest(set_of(after))
    assert 0 < len(partial) < MULTIPLIER * sum(AFTER.values()) and any("reused_from" in r.params for r in partial)

    resumed = run_sdi(cfg, data["train"], [before])[1]  # every step again: what is done is kept
    clean_cfg = config(tmp_path / "clean", keep_projector=True, generate={"engine": {"batch_size": 2, "progress": False}})
    run_sdi(clean_cfg, data["train"], [before])
    assert resumed.already_done == len(partial)
    a, b = set_pixels(set_of(after)), set_pixels(set_of(tmp_path / "clean"))
    assert a.keys() == b.keys() and all(np.array_equal(a[i], b[i]) for i in a)
    assert {r.id: comparable(r) for r in read_manifest(set_of(after))} == {r.id: comparable(r) for r in read_manifest(set_of(tmp_path / "clean"))}
    check_set_integrity(set_of(after))


def test_the_experiment_stages_take_from_their_earlier_runs_after_images_are_added(tmp_path, monkeypatch):
    """Through the stage graph (what `genaug run` runs): images added to one class of a folder;
    the SDI stage keeps its projector and remakes only that class, the filter stage scores only
    the remade images; both say so in stage.json."""
    import json

    import yaml
    from PIL import Image

    from genaug.data import load_splits
    from genaug.experiment import load_experiment
    from genaug.experiment.graph import build_graph
    from genaug.experiment.stages import run_stage
    from test_sdi_helpers import tiny_models

    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    root = tmp_path / "data"

    def add(name: str, start: int, stop: int) -> None:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, stop):
            pixels = np.random.default_rng([ord(name), i]).integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")

    for name in ("a", "b", "c"):
        add(name, 0, 6)
    models = tiny_models()
    sdi = {"kind": "sdi", "clip": str(models["clip"]), "model": str(models["sd"]), "device": "cpu", "keep_projector": True,
           "train": {"preset": "pocket", "pools": ["train"], "hidden": 32, "batch_size": 8, "epochs": 1, "progress": False},
           "sample": {"multiplier": MULTIPLIER}, "generate": {"steps": 2, "engine": {"batch_size": 8, "progress": False}}}  # fmt: skip
    filtered = {"kind": "filter", "input": "sdi", "clip": str(models["clip"]), "progress": False,
                "filters": [{"name": "frames"}, {"name": "clip_rank", "keep_ratio": 0.5}]}  # fmt: skip
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump({
        "name": "incremental", "seeds": [0], "dataset": {"name": "folder", "root": str(root), "image_size": 16},
        "train": {"recipe": "pocket", "epochs": 1}, "stages": {"sdi": sdi, "filtered": filtered},
        "arms": [{"name": "baseline"}, {"name": "sdi", "data": "filtered"}],
    }), encoding="utf-8")  # fmt: skip

    def run_all() -> dict[str, dict]:
        nodes = build_graph(load_experiment(path), tmp_path / "artifacts")
        return {name: run_stage(node, nodes) for name, node in nodes.items()}

    def train_ids() -> dict[str, set[str]]:
        train = load_splits({"name": "folder", "root": str(root), "image_size": 16})["train"]
        return {name: {i for i, label in zip(train.ids, train.labels) if train.class_names[label] == name} for name in ("a", "b", "c")}

    first, before = run_all(), train_ids()
    stop = 6
    while train_ids()["b"] == before["b"]:  # add images to class b until one lands in its train split
        add("b", stop, stop + 2)
        stop += 2
    second = run_all()
    assert first["sdi"]["key"] != second["sdi"]["key"]  # the data changed: a new stage folder
    assert second["sdi"]["projector_reused_from"] == f"sdi-{first['sdi']['key']}" and second["sdi"]["projector_kept"]
    assert second["sdi"]["classes_reused"] == ["a", "c"]
    images = {name: MULTIPLIER * len(ids) for name, ids in train_ids().items()}
    assert second["sdi"]["reused"] == images["a"] + images["c"] and second["sdi"]["made"] == images["b"]
    assert second["filtered"]["scores_reused"] == {"frames": images["a"] + images["c"], "clip_rank": images["a"] + images["c"]}
    assert second["filtered"]["scores_made"] == {"frames": images["b"], "clip_rank": images["b"]}
    stored = json.loads((tmp_path / "artifacts" / f"filter-{second['filtered']['key']}" / "stage.json").read_text(encoding="utf-8"))
    assert stored["scores_made"] == second["filtered"]["scores_made"]
