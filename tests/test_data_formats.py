"""Dataset formats on disk: CIFAR pickles, CUB-200-2011 index files, .npz, torchvision-backed sets."""

import os
import pickle
import urllib.error

import numpy as np
import pytest
from PIL import Image

from genaug.config import ConfigError
from genaug.data import DatasetError, MissingDataError, clean_class_name, load_dataset, load_splits, prepare_dataset


# ----------------------------------------------------------------------------------------
# CIFAR
# ----------------------------------------------------------------------------------------


def _cifar_rows(images):
    """(N, 32, 32, 3) -> the distributed (N, 3072) layout: 1024 red, 1024 green, 1024 blue."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def _pickle(path, content):
    # Bytes keys and protocol 2, as in the files the CIFAR authors distribute.
    with open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)


def _fake_cifar10(parent, rng):
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 2, b"num_vis": 3072})
    images = rng.integers(0, 256, (13, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 13).tolist()
    for i in range(5):
        rows = slice(2 * i, 2 * i + 2)
        batch = {b"batch_label": b"training batch", b"labels": labels[rows], b"data": _cifar_rows(images[rows])}
        _pickle(folder / f"data_batch_{i + 1}", {**batch, b"filenames": [b"x.png", b"y.png"]})
    _pickle(folder / "test_batch", {b"labels": labels[10:], b"data": _cifar_rows(images[10:])})
    return folder, images, labels, [name.decode() for name in names]


def test_cifar10_pickles_load_with_their_labels_names_and_pixels(tmp_path):
    folder, images, labels, names = _fake_cifar10(tmp_path, np.random.default_rng(0))
    splits = load_splits({"name": "cifar10", "root": tmp_path, "val_fraction": 0.0})
    train, test = splits["train"], splits["test"]
    assert train.class_names == names
    assert train.labels.tolist() == labels[:10] and test.labels.tolist() == labels[10:]
    assert np.array_equal(train.images, images[:10]) and np.array_equal(test.images, images[10:])
    assert train.ids[:2] == ["train/00000", "train/00001"] and test.ids == ["test/00000", "test/00001", "test/00002"]
    inside = load_dataset({"name": "cifar10", "root": folder, "split": "test"})  # the extracted folder itself
    assert np.array_equal(inside.images, test.images)


def test_cifar100_uses_the_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine_names = [f"class_{i:03d}".encode() for i in range(100)]
    _pickle(folder / "meta", {b"fine_label_names": fine_names, b"coarse_label_names": [b"c"] * 20})
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    for part, rows in (("train", slice(0, 4)), ("test", slice(4, 6))):
        fine = [99, 0, 42, 7, 5, 63][rows]
        _pickle(folder / part, {b"fine_labels": fine, b"coarse_labels": [1] * len(fine), b"data": _cifar_rows(images[rows])})
    test = load_dataset({"name": "cifar100", "root": tmp_path, "split": "test"})
    assert test.num_classes == 100 and test.class_names[42] == "class_042"
    assert test.labels.tolist() == [5, 63] and np.array_equal(test.images, images[4:])
    assert load_dataset({"name": "cifar100", "root": tmp_path, "val_fraction": 0.0}).labels.tolist() == [99, 0, 42, 7]


def test_cifar_missing_files_are_named_exactly(tmp_path):
    folder, *_ = _fake_cifar10(tmp_path, np.random.default_rng(2))
    os.remove(folder / "data_batch_3")
    with pytest.raises(MissingDataError, match=str(folder / "data_batch_3")):
        load_dataset({"name": "cifar10", "root": tmp_path})
    assert len(load_dataset({"name": "cifar10", "root": tmp_path, "split": "test"})) == 3  # test needs no train batch
    with pytest.raises(MissingDataError, match=str(tmp_path / "empty" / "cifar-100-python" / "meta")):
        load_dataset({"name": "cifar100", "root": tmp_path / "empty", "split": "test"})


def test_cifar_pickles_cannot_run_code(tmp_path):
    folder, *_ = _fake_cifar10(tmp_path, np.random.default_rng(3))
    _pickle(folder / "test_batch", {b"labels": [0], b"data": os.system})
    with pytest.raises(DatasetError, match="refusing to load 'posix.system'"):
        load_dataset({"name": "cifar10", "root": tmp_path, "split": "test"})


def test_prepare_reports_download_failures_and_datasets_without_a_downloader(tmp_path, monkeypatch):
    import torchvision.datasets.utils

    def offline(url, download_root, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", offline)
    with pytest.raises(DatasetError, match="cifar-100-python.tar.gz into .*no network"):
        prepare_dataset("cifar100", tmp_path)
    downloadable = r"downloadable: cifar10, cifar100, dtd, flowers102, pets\)"
    with pytest.raises(DatasetError, match=r"'cub200' has no automatic download.*" + downloadable):
        prepare_dataset("cub200", tmp_path)
    with pytest.raises(ConfigError, match=r"name: unknown dataset 'mnist' \(allowed: cars, cifar10,"):
        prepare_dataset("mnist", tmp_path)
    folder, *_ = _fake_cifar10(tmp_path / "ready", np.random.default_rng(4))
    assert prepare_dataset("cifar10", tmp_path / "ready") == folder  # complete: nothing downloaded


# ----------------------------------------------------------------------------------------
# CUB-200-2011
# ----------------------------------------------------------------------------------------


def _fake_cub(parent):
    folder = parent / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    rows = []  # (image id, relative path, class id, is_train)
    for class_id, name in enumerate(classes, start=1):
        for k in range(2):
            image_id = len(rows) + 1
            relative = f"{name}/{name.split('.')[1]}_{k:04d}.jpg"
            path = folder / "images" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12, 10), (class_id * 60, k * 100, 0)).save(path)
            rows.append((image_id, relative, class_id, 1 if k == 0 else 0))
    (folder / "classes.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(classes, start=1)))
    (folder / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel, _, _ in rows))
    (folder / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in rows))
    (folder / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in rows))
    return folder, classes


def test_cub_loads_the_official_split(tmp_path):
    folder, classes = _fake_cub(tmp_path)
    splits = load_splits({"name": "cub200", "root": tmp_path, "val_fraction": 0.0})
    train, test = splits["train"], splits["test"]
    assert train.class_names == classes
    assert train.ids == [
        "001.Black_footed_Albatross/Black_footed_Albatross_0000.jpg",
        "002.Laysan_Albatross/Laysan_Albatross_0000.jpg",
        "003.Sooty_Albatross/Sooty_Albatross_0000.jpg",
    ]
    assert train.labels.tolist() == [0, 1, 2] and test.labels.tolist() == [0, 1, 2]
    assert all(image_id.endswith("_0001.jpg") for image_id in test.ids)
    assert np.abs(np.asarray(test.image(2))[5, 5].astype(int) - [180, 100, 0]).max() <= 3  # JPEG
    assert load_dataset({"name": "cub200", "root": folder, "split": "test"}).ids == test.ids
    assert [clean_class_name(name) for name in classes[:2]] == ["Black footed Albatross", "Laysan Albatross"]


def test_cub_missing_split_file_and_missing_image(tmp_path):
    folder, _ = _fake_cub(tmp_path)
    os.remove(folder / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0000.jpg")
    train = load_dataset({"name": "cub200", "root": tmp_path, "val_fraction": 0.0})
    assert train.labels.tolist() == [0, 2]
    (skipped,) = train.skipped
    assert skipped.path.endswith("Laysan_Albatross_0000.jpg") and skipped.reason == "file not found"
    os.remove(folder / "train_test_split.txt")
    with pytest.raises(MissingDataError, match=str(folder / "train_test_split.txt")):
        load_dataset({"name": "cub200", "root": tmp_path})


def test_clean_class_name():
    assert clean_class_name("012.Yellow_headed_Blackbird") == "Yellow headed Blackbird"
    assert clean_class_name("aquarium_fish") == "aquarium fish"
    assert clean_class_name("Audi S4 Sedan 2012") == "Audi S4 Sedan 2012"


# ----------------------------------------------------------------------------------------
# .npz (MedMNIST style)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [None, 3])
def test_npz_round_trip_gray_and_rgb(tmp_path, channels):
    rng = np.random.default_rng(5)
    shape = (lambda n: (n, 5, 7)) if channels is None else (lambda n: (n, 5, 7, 3))
    counts = {"train": 8, "val": 3, "test": 4}
    arrays = {f"{part}_images": rng.integers(0, 256, shape(n), dtype=np.uint8) for part, n in counts.items()}
    arrays["train_labels"] = np.array([[0], [1], [2], [0], [1], [2], [0], [1]])  # (N, 1), as MedMNIST
    arrays["val_labels"] = np.array([[2], [1], [0]])
    arrays["test_labels"] = np.array([1, 1, 0, 2])  # (N,)
    arrays["class_names"] = np.array(["adipose", "background", "debris"])
    np.savez(tmp_path / "path.npz", **arrays)
    splits = load_splits({"name": "npz", "root": tmp_path})  # the folder holding one .npz
    for part in ("train", "val", "test"):
        dataset = splits[part]
        expected = arrays[f"{part}_images"] if channels else np.repeat(arrays[f"{part}_images"][..., None], 3, axis=-1)
        assert np.array_equal(dataset.images, expected)
        assert dataset.labels.tolist() == arrays[f"{part}_labels"].ravel().tolist()
        assert dataset.class_names == ["adipose", "background", "debris"]
    assert splits["val"].ids == ["val/00000", "val/00001", "val/00002"]  # the file's own val split


def test_npz_class_names_option_default_names_and_errors(tmp_path):
    images = np.zeros((4, 2, 2), np.uint8)
    np.savez(
        tmp_path / "d.npz", train_images=images, train_labels=np.array([0, 1, 3, 3]), test_images=images[:1], test_labels=[2]
    )
    assert load_dataset({"name": "npz", "root": tmp_path / "d.npz", "split": "test"}).class_names == ["0", "1", "2", "3"]
    named = load_dataset({"name": "npz", "root": tmp_path / "d.npz", "classes": ["a", "b", "c", "d"], "split": "test"})
    assert named.class_names == ["a", "b", "c", "d"]
    with pytest.raises(DatasetError, match="names 2 classes but .* has label 3"):
        load_dataset({"name": "npz", "root": tmp_path / "d.npz", "classes": ["a", "b"]})
    multi = np.ones((4, 2), int)
    np.savez(tmp_path / "multi.npz", train_images=images, train_labels=multi, test_images=images, test_labels=multi)
    with pytest.raises(DatasetError, match=r"'train_labels' must be .*\(multi-label\?\)"):
        load_dataset({"name": "npz", "root": tmp_path / "multi.npz"})
    np.savez(tmp_path / "nontest.npz", train_images=images, train_labels=np.zeros(4, int))
    with pytest.raises(DatasetError, match="no 'test_images' array"):
        load_dataset({"name": "npz", "root": tmp_path / "nontest.npz"})


# ----------------------------------------------------------------------------------------
# torchvision-backed sets (no data here: only that a missing root is explained)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("flowers102", "flowers-102/jpg"),
        ("pets", "oxford-iiit-pet/images"),
        ("cars", "stanford_cars/cars_train"),
        ("dtd", "dtd/dtd/images"),
    ],
)
def test_torchvision_sets_explain_a_missing_root(tmp_path, name, expected):
    with pytest.raises(MissingDataError) as caught:
        load_dataset({"name": name, "root": tmp_path / "data", "split": "test"})
    message = str(caught.value)
    assert f"{name} not found under {tmp_path / 'data'}" in message and expected in message
