"""Soft labels recorded by a generator (Diff-Mix) become the training targets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from genaug.config import TrainConfig
from genaug.data.base import DatasetError, RealDataset
from genaug.data.synthetic import concat_synthetic_sets, load_synthetic_set
from genaug.manifest import SampleRecord, write_manifest
from genaug.training.losses import bce_softmax, soft_cross_entropy
from genaug.training.policies import create_policy
from genaug.training.trainer import build_train_pool

CLASSES = ["cat", "dog", "fox"]


def real_set() -> RealDataset:
    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    return RealDataset(name="toy", split="train", class_names=CLASSES, labels=np.array([0, 1, 2]),
                       ids=["r0", "r1", "r2"], images=images)


def write_set(folder, soft: dict[str, dict] | None = None, prefix: str = "s"):
    """Three records made from r0 (cat), r1 (dog), r2 (fox); ``soft`` adds soft labels by id."""
    records = []
    for i, (name, label) in enumerate([("cat", 0), ("dog", 1), ("fox", 2)]):
        path = f"images/{name}/{prefix}{i}.png"
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(folder / path)
        params = {"soft_label": soft[f"{prefix}{i}"]} if soft and f"{prefix}{i}" in soft else {}
        records.append(SampleRecord(id=f"{prefix}{i}", path=path, label=label, class_name=name, method="diffmix",
                                    source_ids=[f"r{i}"], params=params))
    write_manifest(folder, records)
    return folder


def weights(s: float, gamma: float = 0.5) -> list[float]:
    return [1 - s**gamma, s**gamma]


def test_records_soft_labels_become_pool_targets_in_the_real_class_order(tmp_path):
    soft = {"s0": {"labels": [0, 2], "classes": ["cat", "fox"], "weights": weights(0.5)}}
    synthetic = load_synthetic_set(write_set(tmp_path, soft), class_names=CLASSES)
    assert synthetic.soft_labels == {"s0": {"cat": 1 - math.sqrt(0.5), "fox": math.sqrt(0.5)}}
    config = TrainConfig(recipe="pocket", augmentation={"image_size": 8})
    pool = build_train_pool(real_set(), synthetic, config, torch.device("cpu"))
    expected = torch.tensor([
        [1, 0, 0], [0, 1, 0], [0, 0, 1],  # real, one-hot
        [1 - math.sqrt(0.5), 0, math.sqrt(0.5)], [0, 1, 0], [0, 0, 1],  # synthetic
    ], dtype=torch.float32)
    torch.testing.assert_close(pool.targets(torch.arange(6), 3), expected, rtol=0, atol=0)
    assert pool.labels.tolist() == [0, 1, 2, 0, 1, 2]  # the hard label stays the source class
    # a set without soft labels keeps one-hot targets and no table
    plain = load_synthetic_set(write_set(tmp_path / "plain"), class_names=CLASSES)
    plain_pool = build_train_pool(real_set(), plain, config, torch.device("cpu"))
    assert plain_pool.soft is None
    torch.testing.assert_close(plain_pool.targets(torch.tensor([3, 5]), 3), torch.tensor([[1.0, 0, 0], [0, 0, 1]]))
    other = load_synthetic_set(write_set(tmp_path / "other", prefix="t"), class_names=CLASSES)
    joined = concat_synthetic_sets([other, synthetic])
    assert joined.soft_labels == synthetic.soft_labels
    assert joined.soft_targets(CLASSES)[3].tolist() == pytest.approx([1 - math.sqrt(0.5), 0, math.sqrt(0.5)])


def test_the_loss_of_a_hand_made_batch_with_soft_targets_is_exact(tmp_path):
    soft = {"s1": {"labels": [1, 0], "classes": ["dog", "cat"], "weights": [0.25, 0.75]}}
    synthetic = load_synthetic_set(write_set(tmp_path, soft), class_names=CLASSES)
    pool = build_train_pool(real_set(), synthetic, TrainConfig(recipe="pocket", augmentation={"image_size": 8}),
                            torch.device("cpu"))
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    targets = pool.targets(torch.tensor([4, 0]), 3)  # s1 (0.75 cat + 0.25 dog), r0 (cat)
    log_p = torch.log_softmax(logits.double(), dim=1)
    expected_ce = float(-(0.75 * log_p[0, 0] + 0.25 * log_p[0, 1]) - log_p[1, 0]) / 2
    assert float(soft_cross_entropy(logits, targets)) == pytest.approx(expected_ce, rel=1e-6)
    p = torch.softmax(logits.double(), dim=1)
    t = torch.tensor([[0.75, 0.25, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    expected_bce = float(-(t * p.log() + (1 - t) * (1 - p).log()).mean())
    assert float(bce_softmax(logits, targets)) == pytest.approx(expected_bce, rel=1e-6)
    assert float(F.cross_entropy(logits, targets)) == pytest.approx(expected_ce, rel=1e-6)


def test_synthetic_probability_pairs_each_real_image_with_its_own_outputs(tmp_path):
    """DA-Fusion's policy: with p = 1 every real sample becomes a synthetic one made from it."""
    synthetic = load_synthetic_set(write_set(tmp_path), class_names=CLASSES)
    pool = build_train_pool(real_set(), synthetic, TrainConfig(recipe="pocket", augmentation={"image_size": 8}),
                            torch.device("cpu"))
    assert pool.source.tolist() == [0, 1, 2]
    plan = create_policy("synthetic_probability", p=1.0).plan(0, 1, pool, torch.Generator().manual_seed(0))
    assert plan.synthetic == 3 and plan.real == 0
    assert sorted((int(i) - 3) for i in plan.indices) == [0, 1, 2]


@pytest.mark.parametrize("soft, message", [
    ({"classes": ["cat", "fox"], "weights": [0.5, 0.6]}, "summing to 1"),
    ({"classes": ["cat"], "weights": [0.5, 0.5]}, "one non-negative weight per class"),
    ({"weights": [1.0]}, "without 'classes'"),
])
def test_a_malformed_soft_label_names_the_record(tmp_path, soft, message):
    with pytest.raises(DatasetError, match=f"record s0 .*{message}|record s0 has a soft_label {message}"):
        load_synthetic_set(write_set(tmp_path, {"s0": soft}), class_names=CLASSES)


def test_a_soft_label_naming_an_unknown_class_is_an_error(tmp_path):
    soft = {"s0": {"classes": ["cat", "wolf"], "weights": [0.5, 0.5]}}
    synthetic = load_synthetic_set(write_set(tmp_path, soft), class_names=CLASSES)
    with pytest.raises(DatasetError, match="soft label of s0 names class 'wolf'"):
        synthetic.soft_targets(CLASSES)
    assert json.dumps(synthetic.soft_labels)


class FixedLogits(torch.nn.Module):
    """Logits that do not depend on the image or on training (the parameter enters times 0)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1) + 0.0 * self.unused


def test_an_epoch_of_training_on_soft_labels_has_the_exact_mean_loss(tmp_path, monkeypatch):
    """``train`` on real + a set with soft labels (concat: every sample once per epoch): the
    logged train loss is the mean of -sum_k t_k log softmax(z)_k over the pool."""
    import csv

    from genaug.training import train
    from training_helpers import pocket_splits

    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    splits = pocket_splits(labels_per_class=2, val_per_class=1)
    splits["test"] = splits["test"].subset(np.arange(10))
    names = list(splits["train"].class_names)
    folder = tmp_path / "set"
    records, soft = [], [("zero", "seven", 0.5), ("three", "eight", 0.81), ("nine", "one", 0.25)]
    for i, (source, target, s) in enumerate(soft):
        path = f"images/{source}/d{i}.png"
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16, 3), 30 * i, dtype=np.uint8)).save(folder / path)
        records.append(SampleRecord(
            id=f"d{i}", path=path, label=names.index(source), class_name=source, method="diffmix",
            params={"soft_label": {"classes": [source, target], "weights": weights(s)}}))
    write_manifest(folder, records)

    logits = torch.linspace(-1.0, 1.5, 10)[None, :]
    config = TrainConfig(recipe="pocket", epochs=1, batch_size=7, data_policy="concat",
                         logging={"progress": False, "tensorboard": False})
    train(config, splits, tmp_path / "run", synthetic=folder, model=FixedLogits(logits))
    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        logged = float(next(csv.DictReader(handle))["train_loss"])

    log_p = torch.log_softmax(logits[0].double(), dim=0)
    losses = [-float(log_p[int(label)]) for label in splits["train"].labels]
    for source, target, s in soft:
        w_source, w_target = weights(s)
        losses.append(-(w_source * float(log_p[names.index(source)]) + w_target * float(log_p[names.index(target)])))
    assert logged == pytest.approx(sum(losses) / len(losses), rel=1e-5)
