"""The recorded membership of a run folder's splits, and the lines that say how it changed."""

from __future__ import annotations

import json

from PIL import Image

from genaug.data import load_splits
from genaug.data.membership import SPLITS_FILE, split_changes, split_record, split_report


def _image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (5, 5), (value, value // 2, 7)).save(path)


def _config(root):
    return {"name": "folder", "root": root, "val_fraction": 0.3, "test_fraction": 0.3}


def test_added_and_removed_images_are_listed_per_split_and_nothing_moves(tmp_path):
    root, out = tmp_path / "data", tmp_path / "run"
    for i in range(20):
        _image(root / "ant" / f"{i:02d}.png", i)
    first = load_splits(_config(root))
    assert split_report(out, first, write=True) == []  # a new folder: nothing to compare with
    record = json.loads((out / SPLITS_FILE).read_text(encoding="utf-8"))
    assert set(record["splits"]["test"]) == set(first["test"].ids)

    for i in range(20, 40):
        _image(root / "ant" / f"{i:02d}.png", i)
    gone = first["train"].paths[0]
    gone.unlink()
    second = load_splits(_config(root))
    changes = split_changes(record, split_record(second))
    assert all(not entry["moved_in"] and not entry["moved_out"] and not entry["edited"] for entry in changes.values())
    assert changes["train"]["removed"] == [first["train"].ids[0]]
    added = sorted(i for entry in changes.values() for i in entry["added"])
    assert added == [f"ant/{i:02d}.png" for i in range(20, 40)]
    lines = split_report(out, second)
    new_in_test = sorted(set(second["test"].ids) - set(first["test"].ids))
    assert new_in_test, "20 new images and none drawn as test: pick other pixels"
    assert f"  test: {len(new_in_test)} added ({', '.join(new_in_test[:3])}" in "\n".join(lines)
    assert lines[-1].startswith("the test split changed: results of this run are not comparable")
    assert split_report(out, second, write=True) == lines  # asking again changes nothing ...
    assert split_report(out, second) == []  # ... until the record is rewritten


def test_a_folder_from_before_the_record_gets_a_one_time_notice(tmp_path):
    root, out = tmp_path / "data", tmp_path / "run"
    for i in range(6):
        _image(root / "ant" / f"{i}.png", i)
    splits = load_splits(_config(root))
    out.mkdir()
    (out / "experiment.yaml").write_text("name: old\n", encoding="utf-8")
    [notice] = split_report(out, splits, write=True)
    assert notice.startswith(f"notice: {out} was made before runs recorded their splits") and "trained again" in notice
    assert split_report(out, splits) == []


def test_pocket_digits_are_recorded_with_their_ids():
    splits = load_splits("pocket_digits")
    record = split_record(splits)
    assert {name: len(members) for name, members in record["splits"].items()} == {n: len(splits[n]) for n in splits}
    assert set(record["splits"]["test"].values()) == {""}
