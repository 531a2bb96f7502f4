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


def test_a_batch_writes_every_image_then_every_record(tmp_path, monkeypatch):
    """add_batch: all images on disk (one sync) before the first record is appended."""
    import genaug.manifest as manifest

    synced = []
    real_sync = manifest.sync_files

    def spy(paths):
        assert not (tmp_path / "manifest.jsonl").read_text()  # no record before the sync of every image
        synced.append([p.name for p in paths])
        real_sync(paths)

    monkeypatch.setattr(manifest, "sync_files", spy)
    images = [np.full((8, 8, 3), value, np.uint8) for value in (10, 20, 30)]
    with SetWriter(tmp_path) as writer:
        writer.add_batch([(_record(f"b-{i}", writer), image) for i, image in enumerate(images)])
        assert set(writer.done) == {"b-0", "b-1", "b-2"}
    assert synced == [["b-0.png", "b-1.png", "b-2.png"]]
    records = read_manifest(tmp_path)
    assert [r.id for r in records] == ["b-0", "b-1", "b-2"]
    from PIL import Image

    assert [int(np.asarray(Image.open(tmp_path / r.path))[0, 0, 0]) for r in records] == [10, 20, 30]
    assert not list(tmp_path.glob("images/*/.*tmp*"))


def test_a_batch_whose_image_cannot_be_placed_writes_no_record(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    set_dir, outside = tmp_path / "set", tmp_path / "outside"
    outside.mkdir()
    (set_dir / "images").mkdir(parents=True)
    (set_dir / "images" / "evil").symlink_to(outside, target_is_directory=True)
    with SetWriter(set_dir) as writer:
        good, bad = _record("good", writer), _record("bad", writer, class_name="evil")
        with pytest.raises(ValueError, match="leads outside the set"):
            writer.add_batch([(good, image), (bad, image)])
        assert not writer.done
    assert read_manifest(set_dir) == [] and not list(outside.iterdir())


def test_sync_files_falls_back_to_one_fsync_per_file(tmp_path, monkeypatch):
    import genaug.manifest as manifest

    paths = [tmp_path / f"{i}.bin" for i in range(3)]
    for path in paths:
        path.write_bytes(b"x")
    fsynced = []
    real_fsync = manifest.os.fsync
    monkeypatch.setattr(manifest, "_syncfs", lambda fd: False)
    monkeypatch.setattr(manifest.os, "fsync", lambda fd: (fsynced.append(fd), real_fsync(fd)))
    manifest.sync_files(paths)
    assert len(fsynced) == 3
