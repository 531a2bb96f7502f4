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
from genaug.manifest import read_manifest
from genaug.pocket.render import DIGIT_NAMES, pocket_pools, styled_digits
from genaug.sdi import build_bank, generate_from_samples, sample_features, train_projector
from genaug.sdi.embed import embed_training_images
from genaug.sdi.sample import samples_path
from genaug.sdi.tables import load_table, table_info
from genaug.sdi.train import projector_digest, projector_path

from generation_helpers import check_set_integrity, set_pixels
from test_sdi_helpers import sdi_config

MULTIPLIER = 2


def pocket_train(counts: dict[int, int]) -> RealDataset:
    """The first ``counts[c]`` pocket training digits of each class c (ids ``pocket/<index>``)."""
    indices = pocket_pools()["train"]
    labels = styled_digits(indices)[1]
    chosen = np.sort(np.concatenate([indices[labels == c][:n] for c, n in counts.items()]))
    images, labels, _, _ = styled_digits(chosen)
    return RealDataset(name="pocket_digits", split="train", class_names=list(DIGIT_NAMES), labels=labels,
                       ids=[f"pocket/{int(i):04d}" for i in chosen], images=images)  # fmt: skip


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
    run_sdi(config(before, keep_projector=True), pocket_train(BEFORE))
    assert len(read_manifest(set_of(before))) == MULTIPLIER * sum(BEFORE.values())

    after = tmp_path / "after"
    run, report = run_sdi(config(after, keep_projector=True), pocket_train(AFTER), [before])
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
    embed_training_images(cfg, datasets={"train": pocket_train(AFTER)})
    build_bank(cfg)
    sample_features(cfg)
    whole = generate_from_samples(cfg)
    assert whole.made == len(records) and whole.reused == 0
    full_records = {r.id: comparable(r) for r in read_manifest(set_of(full))}
    assert {i: comparable(r) for i, r in records.items()} == full_records
    a, b = set_pixels(set_of(after)), set_pixels(set_of(full))
    assert a.keys() == b.keys() and all(np.array_equal(a[i], b[i]) for i in a)

    again = run_sdi(config(after, keep_projector=True), pocket_train(AFTER), [before])[1]
    assert again.made == 0 and again.already_done == len(records)  # a rerun has nothing left to do


def test_without_keep_projector_changed_images_retrain_it_and_nothing_downstream_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    before = tmp_path / "before"
    run_sdi(config(before), pocket_train(BEFORE))
    run, report = run_sdi(config(tmp_path / "after"), pocket_train(AFTER), [before])
    assert run.reused_from is None and run.steps >= 1  # trained on the new images
    assert table_info(samples_path(tmp_path / "after", "gaussian"))["reused_classes"] == {}
    assert report.reused == 0 and report.made == MULTIPLIER * sum(AFTER.values())

    # Unchanged images, other generation settings: the projector and every class's vectors are
    # the earlier run's (equal inputs), every image is made again (its renderer changed).
    run, report = run_sdi(config(tmp_path / "guided", generate={"guidance_scale": 3.0}), pocket_train(BEFORE), [before])
    assert run.reused_from == "before" and not run.kept
    assert sorted(table_info(samples_path(tmp_path / "guided", "gaussian"))["reused_classes"]) == ["one", "two", "zero"]
    assert report.reused == 0 and report.made == MULTIPLIER * sum(BEFORE.values())
    # Another sampling seed: the projector is reused, every class is sampled again.
    run, report = run_sdi(config(tmp_path / "seeded", sample={"seed": 5}), pocket_train(BEFORE), [before])
    assert run.reused_from == "before" and table_info(samples_path(tmp_path / "seeded", "gaussian"))["reused_classes"] == {}


class Killed(Exception):
    pass


def test_a_kill_during_an_incremental_sdi_pass_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    from genaug.sdi.generate import build_renderer

    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    before = tmp_path / "before"
    run_sdi(config(before, keep_projector=True, generate={"engine": {"batch_size": 2, "progress": False}}), pocket_train(BEFORE))

    after = tmp_path / "after"
    cfg = config(after, keep_projector=True, generate={"engine": {"batch_size": 2, "progress": False}})
    data = {"train": pocket_train(AFTER)}
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
