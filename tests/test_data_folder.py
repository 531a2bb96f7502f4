"""The class-folder loader: layouts, label order, odd and broken files, strict mode."""

import io

import numpy as np
import pytest
from PIL import Image

from genaug.data import DatasetError, dataset_info, load_dataset, load_splits


def _solid(path, color, size=(6, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _odd_tree(root):
    """train/ with one image of every awkward kind and a truncated PNG; test/ with one image."""
    train = root / "train"
    (train / "cat").mkdir(parents=True)
    (train / "dog").mkdir()
    Image.fromarray(np.full((4, 4), 77, np.uint8), "L").save(train / "cat" / "gray.png")
    Image.fromarray(np.full((4, 4), 25700, np.uint16)).save(train / "cat" / "deep.png")
    Image.new("RGB", (8, 8), (200, 30, 30)).convert("CMYK").save(train / "cat" / "print.jpg", quality=95)
    palette = Image.fromarray(np.array([[0, 1], [1, 1]], np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    palette.save(train / "dog" / "palette.png", transparency=0)
    Image.fromarray(np.full((4, 4, 4), (200, 0, 0, 128), np.uint8), "RGBA").save(train / "dog" / "alpha.png")
    encoded = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(encoded, "PNG")
    (train / "dog" / "cut.png").write_bytes(encoded.getvalue()[:200])
    (train / "dog" / "README.txt").write_text("not an image, ignored")
    _solid(train / "cat" / ".ipynb_checkpoints" / "gray-checkpoint.png", (1, 2, 3))  # hidden: ignored
    _solid(root / "test" / "dog" / "one.png", (0, 0, 250))
    return train / "dog" / "cut.png"


def test_odd_images_load_as_rgb_and_the_truncated_one_is_listed(tmp_path):
    cut = _odd_tree(tmp_path)
    train = load_dataset({"name": "folder", "root": tmp_path, "val_fraction": 0.0})
    assert train.class_names == ["cat", "dog"]
    assert train.ids == [
        "train/cat/deep.png",
        "train/cat/gray.png",
        "train/cat/print.jpg",
        "train/dog/alpha.png",
        "train/dog/palette.png",
    ]
    assert train.labels.tolist() == [0, 0, 0, 1, 1]
    assert [(item.path, "truncated" in item.reason.lower()) for item in train.skipped] == [(str(cut), True)]

    pixel = {image_id: np.asarray(train.image(i))[1, 1].tolist() for i, image_id in enumerate(train.ids)}
    assert pixel["train/cat/deep.png"] == [100, 100, 100]  # 25700 / 257
    assert pixel["train/cat/gray.png"] == [77, 77, 77]
    assert pixel["train/dog/alpha.png"] == [227, 127, 127]  # on white
    assert pixel["train/dog/palette.png"] == [0, 0, 255]  # index 1; index 0 is transparent
    assert np.asarray(train.image(train.ids.index("train/dog/palette.png")))[0, 0].tolist() == [255, 255, 255]
    assert np.abs(np.array(pixel["train/cat/print.jpg"]) - [200, 30, 30]).max() <= 6


def test_strict_mode_fails_naming_every_bad_file(tmp_path):
    cut = _odd_tree(tmp_path)
    with pytest.raises(DatasetError) as caught:
        load_dataset({"name": "folder", "root": tmp_path, "strict": True})
    assert str(cut) in str(caught.value) and "1 unusable" in str(caught.value)


def test_an_empty_class_folder_keeps_its_label(tmp_path):
    _solid(tmp_path / "apple" / "a.png", (255, 0, 0))
    (tmp_path / "banana").mkdir()
    _solid(tmp_path / "cherry" / "c1.png", (0, 255, 0))
    _solid(tmp_path / "cherry" / "nested" / "c2.png", (0, 255, 0))
    splits = load_splits({"name": "folder", "root": tmp_path, "val_fraction": 0.0, "test_fraction": 0.5})
    train, test = splits["train"], splits["test"]
    assert train.class_names == ["apple", "banana", "cherry"]
    assert sorted(train.ids + test.ids) == ["apple/a.png", "cherry/c1.png", "cherry/nested/c2.png"]
    labels = dict(zip(train.ids + test.ids, np.concatenate([train.labels, test.labels]).tolist()))
    assert labels == {"apple/a.png": 0, "cherry/c1.png": 2, "cherry/nested/c2.png": 2}
    assert [(item.path, "empty class folder" in item.reason) for item in train.skipped] == [(str(tmp_path / "banana"), True)]
    info = dataset_info(splits)
    assert info["splits"]["train"]["per_class"]["banana"] == 0
    assert info["splits"]["test"]["image_sizes"] == {"min": [4, 6], "max": [4, 6], "most_common": [4, 6], "probed": 1}
    banana = {"path": str(tmp_path / "banana"), "reason": train.skipped[0].reason, "splits": ["train", "val", "test"]}
    assert info["skipped"] == [banana]  # listed once for the three splits of the one tree
    with pytest.raises(DatasetError, match="banana"):
        load_dataset({"name": "folder", "root": tmp_path, "strict": True})


def test_an_empty_tree_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(DatasetError, match=f"{tmp_path}.*no class folders"):
        load_dataset({"name": "folder", "root": tmp_path})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DatasetError, match=f"no usable images under {tmp_path}"):
        load_dataset({"name": "folder", "root": tmp_path})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset({"name": "folder", "root": tmp_path / "nowhere"})


def test_one_tree_carves_a_stratified_test_set_that_ignores_the_experiment_seed(tmp_path):
    for label, name in enumerate(["ant", "bee"]):
        for i in range(40 * (label + 1)):
            _solid(tmp_path / name / f"{i:02d}.png", (i, label, 0))
    first = load_splits({"name": "folder", "root": tmp_path, "seed": 0, "val_fraction": 0.2})
    second = load_splits({"name": "folder", "root": tmp_path, "seed": 1, "val_fraction": 0.2})
    assert first["test"].ids == second["test"].ids
    assert first["val"].ids != second["val"].ids
    # drawn by content: about 0.2 of 40 and 80 as test, then 0.2 of the rest as val (binomial spread)
    assert 3 <= first["test"].class_counts()[0] <= 14 and 8 <= first["test"].class_counts()[1] <= 25
    assert 2 <= first["val"].class_counts()[0] <= 12 and 6 <= first["val"].class_counts()[1] <= 22
    for splits in (first, second):
        assert sorted(splits["train"].ids + splits["val"].ids + splits["test"].ids) == sorted(
            p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")
        )


def _membership(splits):
    return {image_id: split for split, dataset in splits.items() for image_id in dataset.ids}


def test_adding_and_removing_images_never_moves_another_image_between_splits(tmp_path):
    config = {"name": "folder", "root": tmp_path, "val_fraction": 0.3, "test_fraction": 0.3, "labels_per_class": "all"}
    for name in ("ant", "bee", "cat"):
        for i in range(12):
            _solid(tmp_path / name / f"{i:02d}.png", (i, len(name), ord(name[0])))
    before = _membership(load_splits(config))
    assert {"train", "val", "test"} == set(before.values())
    for i in range(12, 30):  # 18 photos added to one class, 3 to another
        _solid(tmp_path / "ant" / f"{i:02d}.png", (i, 3, 97))
    for i in range(12, 15):
        _solid(tmp_path / "bee" / f"{i:02d}.png", (i, 3, 98))
    (tmp_path / "cat" / "00.png").unlink()
    after = _membership(load_splits(config))
    kept = set(before) - {"cat/00.png"}
    assert {image_id: after[image_id] for image_id in kept} == {image_id: before[image_id] for image_id in kept}
    assert len(after) == len(before) - 1 + 21


def test_a_renamed_copy_lands_in_the_split_of_its_twin(tmp_path):
    for i in range(30):
        _solid(tmp_path / "ant" / f"{i:02d}.png", (i, 1, 2))
    for i in range(30):  # the same bytes under other names
        (tmp_path / "ant" / f"copy-{i:02d}.png").write_bytes((tmp_path / "ant" / f"{i:02d}.png").read_bytes())
    where = _membership(load_splits({"name": "folder", "root": tmp_path, "val_fraction": 0.3, "labels_per_class": "all"}))
    assert {where[f"ant/{i:02d}.png"] for i in range(30)} >= {"train", "test"}
    assert all(where[f"ant/copy-{i:02d}.png"] == where[f"ant/{i:02d}.png"] for i in range(30))


def test_a_class_of_one_image_keeps_it_in_train(tmp_path):
    _solid(tmp_path / "solo" / "only.png", (1, 2, 3))
    for i in range(10):
        _solid(tmp_path / "many" / f"{i}.png", (i, 2, 3))
    splits = load_splits({"name": "folder", "root": tmp_path, "test_fraction": 0.99, "val_fraction": 0.9})
    assert splits["train"].ids.count("solo/only.png") == 1


def test_split_folders_are_used_as_they_are(tmp_path):
    for i in range(3):
        _solid(tmp_path / "train" / "x" / f"{i}.png", (i, 0, 0))
        _solid(tmp_path / "train" / "y" / f"{i}.png", (0, i, 0))
    _solid(tmp_path / "val" / "y" / "v.png", (1, 1, 1))
    _solid(tmp_path / "test" / "x" / "t.png", (2, 2, 2))
    splits = load_splits({"name": "folder", "root": tmp_path})
    assert splits["val"].ids == ["val/y/v.png"] and splits["val"].labels.tolist() == [1]
    assert splits["test"].ids == ["test/x/t.png"] and splits["test"].labels.tolist() == [0]
    assert len(splits["train"]) == 6
    _solid(tmp_path / "test" / "zebra" / "z.png", (3, 3, 3))
    with pytest.raises(DatasetError, match="zebra"):
        load_dataset({"name": "folder", "root": tmp_path, "split": "test"})
