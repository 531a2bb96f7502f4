import json

import numpy as np
import pytest

from genaug.manifest import (
    ManifestError,
    SampleRecord,
    SetWriter,
    merge_shards,
    read_manifest,
)


def _record(item_id, writer, label=1, class_name="one"):
    return SampleRecord(
        id=item_id,
        path=writer.image_path(item_id, class_name),
        label=label,
        class_name=class_name,
        method="txt2img",
        prompt="a photo of the digit one",
        seed=7,
    )


def test_records_round_trip_through_the_manifest(tmp_path):
    image = np.full((16, 16, 3), 200, np.uint8)
    with SetWriter(tmp_path) as writer:
        writer.add(_record("a-0", writer), image)
        writer.add(_record("a-1", writer, label=2, class_name="two"), image)
    records = read_manifest(tmp_path)
    assert [r.id for r in records] == ["a-0", "a-1"]
    assert records[1].path == "images/two/a-1.png"
    assert (tmp_path / records[1].path).is_file()
    assert records[0].prompt == "a photo of the digit one" and records[0].seed == 7


def test_torn_last_line_is_ignored_and_cut_before_appending(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    with SetWriter(tmp_path) as writer:
        writer.add(_record("x", writer), image)
    with (tmp_path / "manifest.jsonl").open("a") as handle:
        handle.write('{"id": "y", "pa')  # killed mid-write
    assert [r.id for r in read_manifest(tmp_path)] == ["x"]
    with SetWriter(tmp_path) as writer:
        assert set(writer.done) == {"x"}
        writer.add(_record("y", writer), image)
    assert [r.id for r in read_manifest(tmp_path)] == ["x", "y"]


def test_record_whose_image_is_missing_is_not_done(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    with SetWriter(tmp_path) as writer:
        record = _record("gone", writer)
        writer.add(record, image)
    (tmp_path / record.path).unlink()
    with SetWriter(tmp_path) as writer:
        assert "gone" not in writer.done


def test_shards_merge_into_one_manifest(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    for rank in (0, 1):
        with SetWriter(tmp_path, rank=rank) as writer:
            writer.add(_record(f"r{rank}", writer), image)
    assert sorted(r.id for r in read_manifest(tmp_path)) == ["r0", "r1"]
    merged = merge_shards(tmp_path)
    assert [r.id for r in merged] == ["r0", "r1"]
    assert not list(tmp_path.glob("manifest.*.jsonl"))


@pytest.mark.parametrize("bad_path", ["../escape.png", "/etc/passwd", "images/\x00.png", "a/../../b.png"])
def test_paths_leaving_the_set_are_refused(tmp_path, bad_path):
    line = {"id": "ok", "path": bad_path, "label": 0, "class_name": "zero", "method": "sdi"}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(ManifestError, match="manifest.jsonl:1"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("bad_id", ["../x", "a/b", "", ".hidden", "a b"])
def test_ids_that_are_not_file_names_are_refused(bad_id):
    with pytest.raises(ValueError, match="invalid id"):
        SampleRecord(id=bad_id, path="images/x.png", label=0, class_name="zero", method="sdi")


def test_unknown_fields_and_a_missing_manifest_are_clear_errors(tmp_path):
    with pytest.raises(ManifestError, match="not a synthetic set"):
        read_manifest(tmp_path)
    line = {"id": "a", "path": "images/a.png", "label": 0, "class_name": "z", "method": "sdi", "colour": 1}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(ManifestError, match="unknown field"):
        read_manifest(tmp_path)
