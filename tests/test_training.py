"""Recipes, LR schedules, losses and metrics of genaug.training (docs/methods/training-recipes.md)."""

import math

import pytest
import torch
from torch import nn

from genaug.config import ConfigError, TrainConfig, load_config, parse_config
from genaug.training import RECIPES, bce_softmax, lr_factor, resolve_recipe, soft_cross_entropy
from genaug.training.lr_schedule import make_lr_scheduler
from genaug.training.metrics import classification_metrics, median_of_last
from genaug.training.recipes import CIFAR_MEAN, CIFAR_STD, is_resolved


# ------------------------------------------------------------------ recipes and config


def test_cifar_preset_is_the_reference_recipe():
    config = resolve_recipe(TrainConfig(recipe="cifar"))
    assert is_resolved(config)
    assert (config.model, config.width, config.epochs, config.batch_size) == ("preactresnet18", 1.0, 300, 128)
    assert (config.lr, config.momentum, config.nesterov, config.weight_decay) == (0.1, 0.9, False, 1e-4)
    assert (config.lr_schedule, config.warmup_epochs, config.warmup_factor) == ("step", 5, 0.01)
    assert (config.milestones, config.lr_decay, config.loss) == ([100, 200], 0.1, "ce")
    aug = config.augmentation
    assert (aug.image_size, aug.crop, aug.padding, aug.flip, aug.rotation) == (32, 32, 2, True, 0.0)
    assert aug.mean == pytest.approx((129.3 / 255, 124.1 / 255, 112.4 / 255))
    assert aug.std == pytest.approx((68.2 / 255, 65.4 / 255, 70.4 / 255))


def test_finegrained_preset_is_the_sdi_recipe():
    config = resolve_recipe(TrainConfig(recipe="finegrained"))
    assert (config.model, config.epochs, config.batch_size, config.lr) == ("resnet50", 100, 128, 0.01)
    assert (config.lr_schedule, config.momentum, config.weight_decay, config.loss) == ("cosine", 0.9, 1e-4, "ce")
    aug = config.augmentation
    assert (aug.image_size, aug.crop, aug.padding, aug.flip, aug.rotation) == (256, 224, 0, True, 15.0)
    assert (aug.mean, aug.std) == (CIFAR_MEAN, CIFAR_STD)


def test_pocket_preset_does_not_flip_digits():
    config = resolve_recipe(TrainConfig(recipe="pocket"))
    assert config.augmentation.flip is False
    assert (config.augmentation.crop, config.augmentation.padding, config.augmentation.padding_mode) == (16, 1, "edge")


def test_every_recipe_preset_is_a_valid_recipe_name_and_no_other_is():
    for name in RECIPES:
        assert parse_config(TrainConfig, {"recipe": name}).recipe == name
    with pytest.raises(ConfigError, match=r"recipe: unknown recipe 'cifra'; did you mean 'cifar'\? \(allowed: cifar,"):
        parse_config(TrainConfig, {"recipe": "cifra"})


def test_an_override_of_a_preset_field_wins_field_by_field():
    config = resolve_recipe(TrainConfig(recipe="cifar", lr=0.05, augmentation={"padding": 4}))
    assert config.lr == 0.05
    assert config.augmentation.padding == 4
    assert config.augmentation.crop == 32  # the rest of the section still comes from the preset
    assert config.momentum == 0.9


def test_overrides_from_the_command_line_win(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("recipe: pocket\nepochs: 30\n")
    config = resolve_recipe(load_config(TrainConfig, path, ["lr=0.2", "augmentation.flip=true"]))
    assert (config.epochs, config.lr, config.augmentation.flip) == (30, 0.2, True)


def test_resolving_twice_changes_nothing():
    once = resolve_recipe(TrainConfig(recipe="pocket", batch_size=16))
    assert resolve_recipe(once) == once


def test_an_invalid_loss_names_the_field_and_the_allowed_values():
    with pytest.raises(ConfigError) as error:
        parse_config(TrainConfig, {"loss": "mse"})
    message = str(error.value)
    assert "loss" in message and "ce" in message and "bce_softmax" in message and "mse" in message


def test_unknown_fields_are_errors():
    with pytest.raises(ConfigError, match="learning_rate"):
        parse_config(TrainConfig, {"learning_rate": 0.1})


def test_a_crop_larger_than_the_padded_image_is_an_error():
    with pytest.raises(ConfigError, match="crop"):
        resolve_recipe(TrainConfig(recipe="pocket", augmentation={"crop": 24}))


# ------------------------------------------------------------------ LR schedules


def test_step_schedule_warms_up_linearly_then_decays_at_100_and_200():
    config = resolve_recipe(TrainConfig(recipe="cifar"))
    for epoch in range(6):
        assert lr_factor(config, epoch) == pytest.approx(0.01 + 0.99 * epoch / 5, abs=1e-15)
    assert lr_factor(config, 5) == 1.0
    assert lr_factor(config, 99) == 1.0
    assert lr_factor(config, 100) == pytest.approx(0.1)
    assert lr_factor(config, 199) == pytest.approx(0.1)
    assert lr_factor(config, 200) == pytest.approx(0.01)
    assert lr_factor(config, 299) == pytest.approx(0.01)


def test_the_scheduler_sets_the_optimiser_lr_once_per_epoch():
    config = resolve_recipe(TrainConfig(recipe="cifar"))
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=config.lr)
    scheduler = make_lr_scheduler(optimizer, config)
    seen = []
    for _ in range(config.epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(0.001)
    assert seen[:6] == pytest.approx([0.1 * (0.01 + 0.99 * t / 5) for t in range(6)])
    assert seen[99:101] == pytest.approx([0.1, 0.01])
    assert seen[199:201] == pytest.approx([0.01, 0.001])


def test_cosine_schedule_endpoints_match_cosine_annealing():
    config = resolve_recipe(TrainConfig(recipe="finegrained"))
    assert lr_factor(config, 0) == 1.0
    assert lr_factor(config, 50) == pytest.approx(0.5)
    assert lr_factor(config, 100) == pytest.approx(0.0, abs=1e-15)
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.01)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
    for epoch in range(100):
        assert 0.01 * lr_factor(config, epoch) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        optimizer.step()
        reference.step()


# ------------------------------------------------------------------ losses


LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
TARGETS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.3, 0.7]])


def test_ce_is_cross_entropy_with_soft_targets():
    log_p = LOGITS - torch.logsumexp(LOGITS, dim=1, keepdim=True)
    expected = -(TARGETS * log_p).sum(dim=1).mean()
    assert soft_cross_entropy(LOGITS, TARGETS).item() == pytest.approx(expected.item(), rel=1e-6)
    # first row by hand: log(1 + e^-2 + e^-3)
    by_hand = math.log(1 + math.exp(-2) + math.exp(-3))
    assert soft_cross_entropy(LOGITS[:1], TARGETS[:1]).item() == pytest.approx(by_hand, rel=1e-6)


def test_bce_softmax_is_bce_on_softmax_probabilities_averaged_over_all_entries():
    p = torch.softmax(LOGITS.double(), dim=1)
    expected = -(TARGETS * p.log() + (1 - TARGETS) * (1 - p).log()).mean()
    assert bce_softmax(LOGITS, TARGETS).item() == pytest.approx(expected.item(), rel=1e-6)
    assert bce_softmax(LOGITS, TARGETS).item() == pytest.approx(nn.BCELoss()(torch.softmax(LOGITS, 1), TARGETS).item())
    # one row by hand: logits (2, 0, -1), target class 0, mean over the 3 entries
    p0 = [math.exp(z) / (math.exp(2) + 1 + math.exp(-1)) for z in (2.0, 0.0, -1.0)]
    by_hand = -(math.log(p0[0]) + math.log(1 - p0[1]) + math.log(1 - p0[2])) / 3
    assert bce_softmax(LOGITS[:1], TARGETS[:1]).item() == pytest.approx(by_hand, rel=1e-6)


def test_losses_are_float32_under_bf16_logits():
    logits = LOGITS.to(torch.bfloat16)
    assert soft_cross_entropy(logits, TARGETS).dtype == torch.float32
    assert bce_softmax(logits, TARGETS).dtype == torch.float32


# ------------------------------------------------------------------ metrics


def test_metrics_from_a_confusion_matrix():
    confusion = torch.zeros(5, 5, dtype=torch.float64)
    confusion[0, 0], confusion[0, 1] = 3, 1  # class 0: 3 of 4 right
    confusion[1, 1] = 2  # class 1: 2 of 2
    confusion[2, 3] = 2  # class 2: 0 of 2; classes 3, 4 have no samples
    metrics = classification_metrics(confusion, top5_hits=8.0, loss_sum=4.0)
    assert metrics["top1"] == pytest.approx(100 * 5 / 8)
    assert metrics["top5"] == pytest.approx(100.0)
    assert metrics["balanced_accuracy"] == pytest.approx(100 * (0.75 + 1.0 + 0.0) / 3)
    assert metrics["per_class"] == pytest.approx([75.0, 100.0, 0.0, None, None])
    assert metrics["loss"] == pytest.approx(0.5)


def test_median_of_the_last_ten():
    assert median_of_last(list(range(30)), 10) == 24.5
    assert median_of_last([3.0, 1.0, 2.0], 10) == 2.0
