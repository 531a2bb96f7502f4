"""The ``filter`` stage: marks records, never deletes, reruns cleanly; the classifier filter and config checks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from genaug.clip import Clip
from genaug.config import ConfigError, FilterConfig, TrainConfig, parse_config
from genaug.filtering import filter_set, load_classifier
from genaug.training.classifier import Classifier
from genaug.manifest import SampleRecord, SetWriter, read_manifest

from test_sdi_helpers import digits, tiny_models


@pytest.fixture(scope="module")
def clip():
    torch.set_num_threads(1)
    return Clip.from_pretrained(str(tiny_models()["clip"]))


@pytest.fixture(scope="module")
def real():
    return {"train": digits(3), "test": digits(2, pool="test")}


def make_set(set_dir, real, shards: bool = False):
    """12 synthetic digits of classes 0 and 1; record 0 is black, record 1 a copy of a real train
    image (a leak), record 2 was recorded degenerate by the generator, record 3's file is corrupt."""
    images = digits(6, pool="pretrain", classes=2)
    rows = list(range(12))
    images.images[0] = 0
    leak = int(np.flatnonzero(real["train"].labels == images.labels[1])[0])
    images.images[1] = real["train"].images[leak]
    for rank in ((0, 1) if shards else (None,)):
        with SetWriter(set_dir, rank=rank) as writer:
            for i in rows[rank::2] if shards else rows:
                record = SampleRecord(
                    id=f"img-{i:02d}", path=writer.image_path(f"img-{i:02d}", images.class_names[images.labels[i]]),
                    label=int(images.labels[i]), class_name=images.class_names[images.labels[i]], method="sdi",
                    params={"degenerate": True} if i == 2 else {}, kept=i != 2,
                )
                writer.add(record, images.images[i])
    corrupt = next(r for r in read_manifest(set_dir) if r.id == "img-03")
    (set_dir / corrupt.path).write_bytes(b"not a png")
    return real["train"].ids[leak]


def file_digests(set_dir):
    return {p.relative_to(set_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in (set_dir / "images").rglob("*")
            if p.is_file()}


def config(set_dir, filters, **kw):
    return FilterConfig(set_dir=set_dir, filters=filters, clip=str(tiny_models()["clip"]), progress=False,
                        dataset={"name": "pocket_digits"}, **kw)


def test_filter_stage_scores_marks_and_never_deletes(tmp_path, clip, real):
    leaked_from = make_set(tmp_path, real)
    files = file_digests(tmp_path)
    filters = [{"name": "frames"}, {"name": "dedupe"}, {"name": "clip_rank", "keep_ratio": 0.5}]
    report = filter_set(config(tmp_path, filters), clip=clip, real=real)

    assert file_digests(tmp_path) == files  # nothing deleted, moved or changed
    records = {r.id: r for r in read_manifest(tmp_path)}
    assert report.total == 12 and report.dropped_before == 1 and report.unreadable == ["img-03"]
    assert report.dropped["frames"] == ["img-00"]
    assert report.dropped["dedupe"] == ["img-01"]
    assert report.notes["dedupe"]["nearest_real"]["img-01"] == f"train:{leaked_from}"
    assert records["img-01"].scores["dedupe_max_cosine"] > 0.999
    assert not records["img-02"].kept and not records["img-03"].kept
    assert "clip_score" not in records["img-03"].scores  # no scores for an unreadable image
    # clip_rank keeps floor(n / 2) of each class among the 8 records still in the running
    survivors = [r for r in records.values() if r.id not in ("img-00", "img-01", "img-02", "img-03")]
    for label in (0, 1):
        members = sorted((r for r in survivors if r.label == label), key=lambda r: -r.scores["clip_score"])
        assert [r.kept for r in members] == [i < len(members) // 2 for i in range(len(members))]
    assert report.kept == sum(r.kept for r in records.values())
    saved = json.loads((tmp_path / "filter.json").read_text())
    assert saved["dropped_counts"] == {"frames": 1, "dedupe": 1, "clip_rank": 4} and saved["kept"] == report.kept
    assert {"black_fraction", "white_fraction", "dedupe_max_cosine", "clip_score"} <= set(saved["score_keys"])
    assert not list(tmp_path.glob(".*tmp*"))


def test_rerunning_with_other_filters_starts_from_the_generators_verdict(tmp_path, clip, real):
    make_set(tmp_path, real)
    filter_set(config(tmp_path, [{"name": "clip_rank", "keep_ratio": 0.25}]), clip=clip)
    report = filter_set(config(tmp_path, [{"name": "frames"}]), clip=clip)
    records = {r.id: r for r in read_manifest(tmp_path)}
    assert report.kept == 9  # 12 - degenerate - unreadable - black
    assert [i for i, r in sorted(records.items()) if not r.kept] == ["img-00", "img-02", "img-03"]
    assert all("clip_score" not in r.scores for r in records.values())  # stale scores are removed
    assert filter_set(config(tmp_path, [{"name": "frames"}]), clip=clip).kept == 9  # idempotent


def test_shard_manifests_are_merged_before_filtering(tmp_path, clip, real):
    make_set(tmp_path, real, shards=True)
    filter_set(config(tmp_path, [{"name": "frames"}]), clip=clip)
    assert [p.name for p in tmp_path.glob("manifest*.jsonl")] == ["manifest.jsonl"]
    assert len(read_manifest(tmp_path)) == 12


def test_clip_posneg_thresholds(tmp_path, clip, real):
    make_set(tmp_path, real)
    everything = filter_set(config(tmp_path, [{"name": "clip_posneg", "threshold": 0.0}]), clip=clip)
    assert everything.kept == 10  # all readable, non-degenerate records
    records = read_manifest(tmp_path)
    p = np.array([r.scores["clip_posneg"] for r in records if "clip_posneg" in r.scores])
    assert ((p > 0) & (p < 1)).all()
    nothing = filter_set(config(tmp_path, [{"name": "clip_posneg", "threshold": 1.0}]), clip=clip)
    assert nothing.kept == 0
    custom = [{"name": "clip_posneg", "positive": ["a photo of a {class}"], "negative": ["a photo without a {class} on it"]}]
    filter_set(config(tmp_path, custom), clip=clip)


class MeanColourNet(torch.nn.Module):
    """Predicts class 0 for dark images and class 1 for bright ones, very confidently."""

    def forward(self, x):
        brightness = x.mean(dim=(1, 2, 3))
        return torch.stack([-brightness, brightness], dim=1) * 100


def test_classifier_filter_drops_confidently_wrong_images(tmp_path, clip, real):
    make_set(tmp_path, real)
    from genaug.training import resolve_recipe
    from genaug.training.pipeline import InputPipeline

    augmentation = resolve_recipe(TrainConfig(recipe="pocket", augmentation={"mean": (0.5,) * 3, "std": (0.25,) * 3})).augmentation
    judge = Classifier(MeanColourNet(), InputPipeline(augmentation), ["zero", "one"], 16, torch.device("cpu"))
    report = filter_set(config(tmp_path, [{"name": "classifier", "wrong_confidence": 0.9}]), clip=clip, classifier=judge)
    records = {r.id: r for r in read_manifest(tmp_path)}
    for record in records.values():
        if "classifier_p_label" in record.scores and record.id != "img-02":
            wrong = record.scores["classifier_correct"] == 0 and record.scores["classifier_p_max"] >= 0.9
            assert record.kept == (not wrong)
    assert report.dropped["classifier"]  # the black frame is "zero" by brightness; some images are misjudged


def test_load_classifier_rebuilds_a_training_run(tmp_path, real):
    from genaug.training import train

    splits = {"train": digits(3), "val": digits(1, offset=3), "test": digits(1, pool="test")}
    train(TrainConfig(recipe="pocket", epochs=1, logging={"tensorboard": False, "progress": False}), splits, tmp_path / "run")
    judge = load_classifier(tmp_path / "run")
    assert judge.class_names == splits["train"].class_names and judge.image_size == 16
    probabilities = judge.probabilities(list(splits["test"].images))
    assert probabilities.shape == (10, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="not a finished training run"):
        load_classifier(tmp_path)


def test_filter_config_errors_name_the_filter_and_field(tmp_path):
    with pytest.raises(ConfigError, match=r"filters\[0\]\.name: unknown filter 'blur' \(allowed: classifier, "):
        parse_config(FilterConfig, {"set_dir": str(tmp_path), "filters": [{"name": "blur"}]})
    with pytest.raises(ConfigError, match="keep_ratio"):
        parse_config(FilterConfig, {"set_dir": str(tmp_path), "filters": [{"name": "clip_rank", "keep_ratio": 2}]})
    with pytest.raises(ConfigError, match="extra|Extra"):
        parse_config(FilterConfig, {"set_dir": str(tmp_path), "filters": [{"name": "frames", "black": 3}]})
    with pytest.raises(ConfigError, match="dedupe filter compares against a real dataset"):
        parse_config(FilterConfig, {"set_dir": str(tmp_path), "filters": [{"name": "dedupe"}]})
    default = FilterConfig(set_dir=tmp_path)
    assert [f["name"] for f in default.filters] == ["frames", "clip_rank"]
