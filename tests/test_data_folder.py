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
        for i in range(10 * (label + 1)):
            _solid(tmp_path / name / f"{i:02d}.png", (i, label, 0))
    first = load_splits({"name": "folder", "root": tmp_path, "seed": 0, "val_fraction": 0.2})
    second = load_splits({"name": "folder", "root": tmp_path, "seed": 1, "val_fraction": 0.2})
    assert first["test"].class_counts().tolist() == [2, 4]  # default test_fraction 0.2 of 10 and 20
    assert first["test"].ids == second["test"].ids
    assert first["val"].class_counts().tolist() == [2, 3]  # 0.2 of the remaining 8 and 16, rounded
    assert first["val"].ids != second["val"].ids
    for splits in (first, second):
        assert sorted(splits["train"].ids + splits["val"].ids + splits["test"].ids) == sorted(
            p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")
        )


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
