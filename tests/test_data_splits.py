"""Pocket digits splits, the generic val hold-out and labels_per_class subset, dataset configs."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from genaug.config import ConfigError, DatasetConfig
from genaug.data import RealDataset, load_dataset, load_splits
from genaug.data.splits import per_class_subset, stratified_holdout
from genaug.pocket.render import DIGIT_NAMES, caption, load_digits, pocket_pools, styled_digits


def _digit_indices(dataset):
    return {int(image_id.split("/")[1]) for image_id in dataset.ids}


@pytest.fixture(scope="module")
def pocket():
    splits = load_splits("pocket_digits")
    splits["pretrain"] = load_dataset("pocket_digits", split="pretrain")
    return splits


def test_pocket_splits_are_disjoint_by_digit_and_cover_the_pools(pocket):
    indices = {split: _digit_indices(dataset) for split, dataset in pocket.items()}
    for a in indices:
        for b in indices:
            if a < b:
                assert not indices[a] & indices[b], (a, b)
    pools = pocket_pools()
    assert indices["pretrain"] == set(pools["pretrain"].tolist())
    assert indices["test"] == set(pools["test"].tolist())
    assert indices["train"] | indices["val"] <= set(pools["train"].tolist())


def test_pocket_defaults_ten_per_class_and_forty_percent_val(pocket):
    assert pocket["train"].class_counts().tolist() == [10] * 10
    pool_labels = load_digits().labels[pocket_pools()["train"]]
    expected_val = [int(np.floor(0.4 * np.sum(pool_labels == c) + 0.5)) for c in range(10)]
    assert pocket["val"].class_counts().tolist() == expected_val
    assert pocket["train"].class_names == list(DIGIT_NAMES)
    assert pocket["train"].images.shape == (100, 16, 16, 3) and pocket["train"].images.dtype == np.uint8
    assert [dataset.split for dataset in pocket.values()] == ["train", "val", "test", "pretrain"]


def test_pocket_ids_labels_images_and_captions_agree_with_the_renderer(pocket):
    test = pocket["test"]
    index = int(test.ids[5].split("/")[1])
    assert test.ids[5] == f"pocket/{index:04d}"
    images, labels, fg, bg = styled_digits(np.array([index]))
    assert test.labels[5] == labels[0] == load_digits().labels[index]
    assert np.array_equal(test.images[5], images[0])
    assert test.captions[5] == caption(labels[0], fg[0], bg[0])
    assert all(f"the digit {DIGIT_NAMES[label]}," in text for label, text in zip(test.labels, test.captions))


def test_pocket_is_deterministic_given_the_seed_and_the_seed_moves_only_val_and_train(pocket):
    again = load_splits("pocket_digits")
    for split in ("train", "val", "test"):
        assert again[split].ids == pocket[split].ids
        assert np.array_equal(again[split].images, pocket[split].images)
    other = load_splits({"name": "pocket_digits", "seed": 3})
    assert other["test"].ids == pocket["test"].ids
    assert other["train"].ids != pocket["train"].ids and other["val"].ids != pocket["val"].ids
    assert _digit_indices(other["train"]) | _digit_indices(other["val"]) <= set(pocket_pools()["train"].tolist())


def test_load_dataset_returns_the_split_load_splits_draws(pocket):
    assert load_dataset("pocket_digits", split="val").ids == pocket["val"].ids
    assert load_dataset(DatasetConfig(split="train")).ids == pocket["train"].ids


def test_smaller_subsets_are_nested_in_larger_ones_and_all_keeps_the_pool(pocket):
    five = load_dataset("pocket_digits", labels_per_class=5)
    everything = load_dataset("pocket_digits", labels_per_class="all")
    assert five.class_counts().tolist() == [5] * 10
    assert set(five.ids) < set(pocket["train"].ids) < set(everything.ids)
    assert set(everything.ids) | set(pocket["val"].ids) == {f"pocket/{i:04d}" for i in pocket_pools()["train"]}
    assert not set(everything.ids) & set(pocket["val"].ids)


def test_stratified_holdout_takes_the_fraction_of_every_class_and_keeps_one_behind():
    labels = np.array([0] * 10 + [1] * 20 + [2] * 1 + [3] * 2)
    held = stratified_holdout(labels, 0.3, seed=0, stream=1)
    assert np.bincount(labels[held], minlength=4).tolist() == [3, 6, 0, 1]  # 0.3 * 2 = 0.6 rounds up; 1 stays
    assert np.array_equal(held, np.sort(held))
    assert not np.array_equal(held, stratified_holdout(labels, 0.3, seed=1, stream=1))
    assert np.array_equal(held, stratified_holdout(labels, 0.3, seed=0, stream=1))


def test_per_class_subset_takes_at_most_k_of_each_class():
    labels = np.array([0] * 7 + [1] * 2)
    chosen = per_class_subset(labels, 3, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [3, 2]


def test_val_and_train_are_disjoint_for_an_array_dataset(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [20, 30, 50])
    arrays = {
        "train_images": rng.integers(0, 255, (100, 4, 4), dtype=np.uint8),
        "train_labels": labels[:, None],
        "test_images": rng.integers(0, 255, (6, 4, 4), dtype=np.uint8),
        "test_labels": np.array([0, 1, 2, 0, 1, 2]),
    }
    np.savez(tmp_path / "d.npz", **arrays)
    splits = load_splits({"name": "npz", "root": tmp_path / "d.npz", "val_fraction": 0.2, "labels_per_class": 12, "seed": 4})
    assert splits["val"].class_counts().tolist() == [4, 6, 10]
    assert splits["train"].class_counts().tolist() == [12, 12, 12]
    assert not set(splits["train"].ids) & set(splits["val"].ids)
    for dataset in (splits["train"], splits["val"]):
        rows = [int(image_id.split("/")[1]) for image_id in dataset.ids]
        assert np.array_equal(dataset.images[:, :, :, 0], arrays["train_images"][rows])
        assert np.array_equal(dataset.labels, labels[rows])


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"name": "imagenet"}, r"unknown dataset 'imagenet' \(allowed: cars, cifar10"),
        ({"name": "folder"}, "needs a 'root'"),
        ({"name": "cifar10", "root": ".", "split": "pretrain"}, "split 'pretrain' is not available for 'cifar10'"),
        ({"name": "pocket_digits", "classes": ["a"]}, "classes is only used by: npz"),
        ({"name": "pocket_digits", "test_fraction": 0.3}, "test_fraction is only used by: folder"),
        ({"labels_per_class": 0}, "labels_per_class must be >= 1 or 'all'"),
        ({"val_fraction": 1.0}, "val_fraction must be in"),
        ({"split": "validation"}, "split"),
    ],
)
def test_invalid_dataset_configs_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(fields)


def test_importing_genaug_data_does_not_import_torch():
    code = "import sys, genaug.data; print('torch' in sys.modules, 'torchvision' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_a_loader_that_drops_a_part_is_reported(monkeypatch):
    from genaug.data import registry

    spec = registry.dataset_spec("pocket_digits")
    monkeypatch.setattr(registry.DATASETS.spec("pocket_digits"), "target", dataclasses.replace(spec, load=lambda config, parts: {}))
    with pytest.raises(ValueError, match="did not return part"):
        load_dataset("pocket_digits", split="test")
    assert isinstance(spec.load(DatasetConfig(), frozenset({"test"}))["test"], RealDataset)


def test_spare_to_test_adds_the_pool_images_left_out_of_train_and_val():
    plain = load_splits({"name": "pocket_digits", "labels_per_class": 10})
    spare = load_splits({"name": "pocket_digits", "labels_per_class": 10, "spare_to_test": True})
    assert spare["train"].ids == plain["train"].ids and spare["val"].ids == plain["val"].ids
    assert spare["test"].ids[: len(plain["test"])] == plain["test"].ids
    added = spare["test"].ids[len(plain["test"]) :]
    assert len(added) == 448 - 179 - 100 and len(spare["test"]) == 451 + 169  # pool - val - train
    assert not set(spare["test"].ids) & (set(spare["train"].ids) | set(spare["val"].ids))
    assert load_dataset({"name": "pocket_digits", "labels_per_class": 10, "spare_to_test": True, "split": "test"}).ids == spare["test"].ids
