"""Incremental filter passes: the scores of a record whose image, class and scorer are unchanged
are taken from the score cache (the set's own, or an earlier set's of the stage); only new
records are scored, and the selection is recomputed over all scores."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from genaug.clip import Clip
from genaug.config import FilterConfig
from genaug.filtering import filter_set
from genaug.filtering.cache import SCORES_FILE
from genaug.manifest import SampleRecord, SetWriter, read_manifest

from test_sdi_helpers import digits, tiny_models

FILTERS = [{"name": "frames"}, {"name": "clip_rank", "keep_ratio": 0.5}]


@pytest.fixture(scope="module")
def clip():
    torch.set_num_threads(1)
    return Clip.from_pretrained(str(tiny_models()["clip"]))


class Counting:
    """The real CLIP, counting the images it embeds."""

    def __init__(self, clip, fail_after: int | None = None):
        self.clip, self.images, self.fail_after = clip, 0, fail_after

    def __getattr__(self, name):
        return getattr(self.clip, name)

    def image_embeds(self, images, **kw):
        if self.fail_after is not None and self.images >= self.fail_after:
            raise KeyboardInterrupt
        self.images += len(images)
        return self.clip.image_embeds(images, **kw)


def write_set(set_dir, n: int) -> None:
    """``n`` digits of classes 0 and 1 as a generated set whose records carry input keys (record i
    has the same image and key in every set, as an incremental generate pass copies it)."""
    images = digits(8, pool="pretrain", classes=2)
    with SetWriter(set_dir) as writer:
        for i in range(n):
            name = images.class_names[images.labels[i]]
            record = SampleRecord(id=f"img-{i:02d}", path=writer.image_path(f"img-{i:02d}", name), label=int(images.labels[i]),
                                  class_name=name, method="instruct", params={"input_key": f"key-{i:02d}"})  # fmt: skip
            writer.add(record, images.images[i])


def config(set_dir, filters=FILTERS):
    return FilterConfig(set_dir=set_dir, filters=filters, clip=str(tiny_models()["clip"]), progress=False, batch_size=4)


def test_added_records_are_the_only_ones_scored_and_the_selection_equals_a_full_run(tmp_path, clip):
    write_set(tmp_path / "before", 10)
    filter_set(config(tmp_path / "before"), clip=clip)
    write_set(tmp_path / "after", 14)  # four records added
    shutil.copytree(tmp_path / "after", tmp_path / "full")

    counting = Counting(clip)
    report = filter_set(config(tmp_path / "after"), clip=counting, reuse_from=[tmp_path / "before"])
    assert counting.images == 4  # only the new images went through CLIP
    assert report.scores_reused == {"frames": {"before": 10}, "clip_rank": {"before": 10}}
    assert report.scores_made == {"frames": 4, "clip_rank": 4}
    written = json.loads((tmp_path / "after" / "filter.json").read_text(encoding="utf-8"))
    assert written["scores_reused"] == report.scores_reused and written["scores_made"] == report.scores_made

    full = filter_set(config(tmp_path / "full"), clip=clip)
    assert full.scores_reused == {} and full.scores_made == {"frames": 14, "clip_rank": 14}
    after = {r.id: r for r in read_manifest(tmp_path / "after")}
    whole = {r.id: r for r in read_manifest(tmp_path / "full")}
    assert after.keys() == whole.keys()
    for i in whole:  # CLIP in other batches: equal up to float rounding; the same verdicts
        assert after[i].scores.keys() == whole[i].scores.keys()
        assert all(abs(after[i].scores[k] - whole[i].scores[k]) < 1e-5 for k in whole[i].scores)
        assert after[i].kept == whole[i].kept
    assert sum(r.kept for r in after.values()) == 7  # the top half of each class over all 14 records

    # A rerun takes every score from the set's own cache; other clip_rank settings rescore only it.
    counting = Counting(clip)
    again = filter_set(config(tmp_path / "after"), clip=counting)
    assert counting.images == 0 and again.scores_reused == {"frames": {"": 14}, "clip_rank": {"": 14}}
    other = [FILTERS[0], {"name": "clip_rank", "keep_ratio": 0.5, "template": "a picture of {class}"}]
    counting = Counting(clip)
    changed = filter_set(config(tmp_path / "after", other), clip=counting)
    assert counting.images == 14 and changed.scores_reused == {"frames": {"": 14}} and changed.scores_made["clip_rank"] == 14


def test_a_kill_while_scoring_leaves_the_set_as_it_was_and_the_rerun_equals_an_uninterrupted_run(tmp_path, clip):
    write_set(tmp_path / "before", 10)
    filter_set(config(tmp_path / "before"), clip=clip)
    write_set(tmp_path / "after", 16)
    shutil.copytree(tmp_path / "after", tmp_path / "clean")
    manifest = (tmp_path / "after" / "manifest.jsonl").read_bytes()

    with pytest.raises(KeyboardInterrupt):
        filter_set(config(tmp_path / "after"), clip=Counting(clip, fail_after=4), reuse_from=[tmp_path / "before"])
    assert (tmp_path / "after" / "manifest.jsonl").read_bytes() == manifest and not (tmp_path / "after" / SCORES_FILE).exists()

    resumed = filter_set(config(tmp_path / "after"), clip=clip, reuse_from=[tmp_path / "before"])
    clean = filter_set(config(tmp_path / "clean"), clip=clip, reuse_from=[tmp_path / "before"])
    assert resumed.scores_reused == clean.scores_reused == {"frames": {"before": 10}, "clip_rank": {"before": 10}}
    a = {r.id: (r.scores, r.kept) for r in read_manifest(tmp_path / "after")}
    assert a == {r.id: (r.scores, r.kept) for r in read_manifest(tmp_path / "clean")}
    lines = sorted((tmp_path / "after" / SCORES_FILE).read_text(encoding="utf-8").splitlines())
    assert lines == sorted((tmp_path / "clean" / SCORES_FILE).read_text(encoding="utf-8").splitlines()) and len(lines) == 32


def test_records_without_an_input_key_are_keyed_by_their_image_bytes(tmp_path, clip):
    images = digits(2, pool="pretrain", classes=2)
    for folder, n in (("a", 3), ("b", 4)):
        with SetWriter(tmp_path / folder) as writer:
            for i in range(n):
                name = images.class_names[images.labels[i]]
                record = SampleRecord(id=f"r-{i}", path=writer.image_path(f"r-{i}", name), label=int(images.labels[i]),
                                      class_name=name, method="txt")  # fmt: skip
                writer.add(record, images.images[i] if (folder, i) != ("b", 0) else 255 - images.images[i])
    filter_set(config(tmp_path / "a"), clip=clip)
    report = filter_set(config(tmp_path / "b"), clip=clip, reuse_from=[tmp_path / "a"])
    assert report.scores_reused["clip_rank"] == {"a": 2}  # r-0's image changed, r-3 is new
