"""Compute-matched runs (``steps``), the run's step / image counts and validation history, the
convergence flag and the pairing of arms of the same seed."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genaug.config import TrainConfig
from genaug.training import RunResult, train
from genaug.training import trainer as trainer_module
from genaug.training.health import convergence_warning, convergence_window, still_rising, validation_rise
from genaug.training.lr_schedule import cosine_factor, step_factor
from genaug.training.pipeline import InputPipeline
from genaug.training.policies import TrainPool, create_policy
from genaug.training.recipes import resolve_recipe
from genaug.training.seeding import generator_for
from training_helpers import quick, tiny_net, train_killed_in_epoch

pytestmark = pytest.mark.usefixtures("genaug_home")  # tests/conftest.py


@pytest.fixture
def counted_steps(monkeypatch):
    """The learning rate of every optimizer step the trainer makes."""
    lrs = []
    build = trainer_module.build_optimizer

    def counting(model, config):
        optimizer = build(model, config)
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
        return optimizer

    monkeypatch.setattr(trainer_module, "build_optimizer", counting)
    return lrs


@pytest.mark.parametrize(("train_size", "steps", "images"), [(50, 10, 2 * 50 + 2 * 16), (48, 7, 7 * 16)])
def test_steps_makes_exactly_that_many_optimizer_steps_whatever_the_data_size(
    tmp_path, splits, counted_steps, train_size, steps, images
):
    data = dict(splits, train=splits["train"].subset(np.arange(train_size)))
    result = train(quick(steps=steps), data, tmp_path / "run", model=tiny_net())
    assert len(counted_steps) == steps
    assert result.optimizer_steps == steps and result.images_seen == images
    assert result.epochs == math.ceil(steps / math.ceil(train_size / 16))
    # cosine over the fraction of training: step s trains at lr * f(s / N * E), and after
    # step N the schedule stands at its end, 0
    expected = [0.02 * cosine_factor(s / steps * 3, 3) for s in range(steps)]
    assert counted_steps == pytest.approx(expected, rel=1e-12, abs=1e-15)
    state = torch.load(tmp_path / "run" / "checkpoint" / "state.pt", weights_only=True)
    assert state["scheduler"]["last_epoch"] == steps and state["scheduler"]["_last_lr"][0] == pytest.approx(0.0, abs=1e-15)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    assert len(rows) == result.epochs
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["optimizer_steps"] == steps


def test_the_step_schedule_keeps_warm_up_and_milestones_at_their_fraction_of_training(tmp_path, splits, counted_steps):
    config = quick(steps=20, lr_schedule="step", warmup_epochs=1, warmup_factor=0.1, milestones=[2], lr_decay=0.5)
    train(config, splits, tmp_path / "run", model=tiny_net())
    expected = [0.02 * step_factor(s / 20 * 3, 1, 0.1, [2], 0.5) for s in range(20)]
    assert counted_steps == pytest.approx(expected, rel=1e-12)
    assert counted_steps[0] == pytest.approx(0.002) and counted_steps[-1] == pytest.approx(0.01)


def test_epoch_mode_counts_its_steps_and_images(tmp_path, splits, counted_steps):
    result = train(quick(), splits, tmp_path / "run", model=tiny_net())
    assert len(counted_steps) == result.optimizer_steps == 3 * 4
    assert result.images_seen == result.real_samples == 150 and result.epochs == 3
    assert set(counted_steps[:4]) == {0.02}  # stepped once per epoch, as before


def test_a_steps_run_killed_mid_run_resumes_bit_identical(tmp_path, splits, monkeypatch):
    config = quick(steps=10, checkpoint_every=1)
    uninterrupted = train(config, splits, tmp_path / "a", model=tiny_net(dropout=0.3))
    train_killed_in_epoch(monkeypatch, 2, config, splits, tmp_path / "b", model=tiny_net(dropout=0.3))
    resumed = train(config, splits, tmp_path / "b", model=tiny_net(seed=5, dropout=0.3))
    for name in ("checkpoint/model.safetensors", "best.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        assert all(torch.equal(a[key], b[key]) for key in a), name
    assert resumed.test == uninterrupted.test and resumed.val_history == uninterrupted.val_history
    assert resumed.optimizer_steps == 10 and resumed.images_seen == uninterrupted.images_seen


def test_validation_history_keeps_every_evaluation_and_the_last_tenth_is_always_validated(tmp_path, splits):
    result = train(quick(epochs=10, eval_every=4), splits, tmp_path / "run", model=tiny_net())
    assert [epoch for epoch, _ in result.val_history] == [4, 8, 9, 10]
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    val_top1 = [row.split(",")[header.index("val_top1")] for row in rows[1:]]
    assert [float(value) for value in val_top1 if value] == [top1 for _, top1 in result.val_history]


def test_metrics_json_written_before_the_new_fields_still_loads(tmp_path, splits):
    train(quick(epochs=1), splits, tmp_path / "run", model=tiny_net())
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for name in ("optimizer_steps", "images_seen", "val_history", "still_rising"):
        del stored[name]
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(stored))
    old = RunResult.load(tmp_path / "run")
    assert (old.optimizer_steps, old.images_seen, old.val_history, old.still_rising) == (0, 0, [], False)


# ----------------------------------------------------------------------------- convergence flag


def history(values, start=0.0):
    """Evaluations at evenly spaced positions ending at 1.0."""
    count = len(values)
    return [[start + (1.0 - start) * (i + 1) / count, value] for i, value in enumerate(values)]


def test_validation_rise_is_the_least_squares_line_across_the_window():
    # y = 2 + 10 x at x = 0, 0.5, 1 with noise that cancels: slope exactly 10
    points = [[0.0, 2.0], [0.5, 8.0], [1.0, 12.0]]
    assert validation_rise(points) == pytest.approx(10.0)
    assert validation_rise([[0.5, 3.0]]) == 0.0


def test_a_run_still_rising_over_its_last_tenth_is_flagged():
    # 60 epochs; the last 7 evaluations (54..60 of 60 epochs: >= 90 %) rise one point each
    values = [40.0] * 53 + [50.0 + i for i in range(7)]
    points = [[(i + 1) / 60, value] for i, value in enumerate(values)]
    window = convergence_window(points)
    assert [round(p[0] * 60) for p in window] == [54, 55, 56, 57, 58, 59, 60]
    # fitted rise: slope 60 points per unit of training x 6/60 = 6 points > 100 / 179 val images
    assert validation_rise(window) == pytest.approx(6.0)
    assert still_rising(points, num_val=179)
    assert "still rising" in convergence_warning(points, num_val=179)


def test_a_plateau_or_a_rise_below_one_validation_image_is_not_flagged():
    flat = [[(i + 1) / 60, 50.0 + (1.0 if i % 2 else -1.0)] for i in range(60)]
    assert not still_rising(flat, num_val=179) and convergence_warning(flat, 179) is None
    # +0.5 points over the window: less than one image of 100 (1 point), more than one of 1000
    small = [[(i + 1) / 60, 50.0 + (0.5 * (i - 53) / 6 if i >= 53 else 0.0)] for i in range(60)]
    assert not still_rising(small, num_val=100)
    assert still_rising(small, num_val=1000)
    falling = [[p, -v] for p, v in history(list(range(10)))]
    assert not still_rising(falling, num_val=100)
    assert not still_rising(history([1.0, 2.0, 3.0]), num_val=0)  # no validation set


def test_a_rise_of_more_than_one_image_within_the_scatter_is_not_flagged():
    # fitted rise 1.18 points (2 of 179 images) but one-sided p = 0.25 for the slope
    values = [50.0] * 53 + [50.0, 52.0, 49.5, 52.5, 50.0, 53.0, 51.0]
    points = [[(i + 1) / 60, value] for i, value in enumerate(values)]
    assert validation_rise(convergence_window(points)) == pytest.approx(1.1785714, rel=1e-6)
    assert not still_rising(points, num_val=179)
    # the same scatter on a rise of 4 points is flagged
    rising = [[p, v + 4.0 * (p * 60 - 54) / 6 if p * 60 >= 53.5 else v] for p, v in points]
    assert still_rising(rising, num_val=179)


def test_a_short_run_fits_its_last_three_evaluations():
    points = history([10.0, 20.0, 30.0, 40.0, 50.0])  # positions 0.2 .. 1.0: one inside the last tenth
    assert convergence_window(points) == points[-3:]
    assert still_rising(points, num_val=50)


# ----------------------------------------------------------------------------- pairing


def pool_of(num_real, num_synthetic, num_classes=3):
    labels = torch.arange(num_real + num_synthetic) % num_classes
    return TrainPool(torch.zeros(len(labels), 3, 2, 2, dtype=torch.uint8), labels, num_real,
                     torch.full((num_synthetic,), -1, dtype=torch.int64))  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs"), [("concat", {}), ("multiples", {"multiples": 2.0}),
                                               ("curriculum", {"schedule": "constant", "p": 0.0})])  # fmt: skip
@pytest.mark.parametrize("epoch", [0, 7])
def test_the_real_images_keep_the_real_only_order_of_the_same_seed_and_epoch(name, kwargs, epoch):
    pool = pool_of(12, 9)
    baseline = create_policy("real_only").plan(epoch, 10, pool, generator_for(3, "plan", epoch)).indices
    plan = create_policy(name, **kwargs).plan(epoch, 10, pool, generator_for(3, "plan", epoch)).indices
    assert plan[plan < pool.num_real].tolist() == baseline.tolist()
    if name != "curriculum":
        assert (plan >= pool.num_real).sum() > 0
        assert plan[:12].tolist() != baseline.tolist()  # the synthetic samples are spread among them
    other_seed = create_policy(name, **kwargs).plan(epoch, 10, pool, generator_for(4, "plan", epoch)).indices
    assert other_seed.tolist() != plan.tolist()


def test_interleaving_spreads_synthetic_samples_uniformly():
    pool = pool_of(10, 10)
    slots = torch.zeros(20)
    for seed in range(400):
        plan = create_policy("concat").plan(0, 1, pool, generator_for(seed, "plan", 0)).indices
        slots += (plan >= 10).float()
    # each slot holds a synthetic sample with probability 1/2: 200 +- 10 (sd) of 400
    assert (slots - 200).abs().max() < 45


def test_real_samples_get_the_real_only_augmentation_in_every_arm():
    config = resolve_recipe(TrainConfig(recipe="pocket"))
    pipeline = InputPipeline(config.augmentation)
    pool = pool_of(12, 9)
    real_plan = create_policy("real_only").plan(2, 10, pool, generator_for(0, "plan", 2))
    concat_plan = create_policy("concat").plan(2, 10, pool, generator_for(0, "plan", 2))
    real = trainer_module.epoch_augment_params(pipeline, real_plan, 12, 0, 2)
    mixed = trainer_module.epoch_augment_params(pipeline, concat_plan, 12, 0, 2)
    is_real = concat_plan.indices < 12
    # a real-only plan draws what it always drew
    expected = pipeline.draw(12, generator_for(0, "augment", 2))
    assert torch.equal(real.top, expected.top) and torch.equal(real.left, expected.left)
    assert torch.equal(mixed.top[is_real], real.top) and torch.equal(mixed.left[is_real], real.left)
    assert len(mixed) == 21


def test_identical_runs_give_identical_results_and_another_seed_does_not(tmp_path, splits):
    config = quick(epochs=2, width=0.125)
    a = train(config, splits, tmp_path / "a")
    b = train(config, splits, tmp_path / "b")
    c = train(config.model_copy(update={"seed": 1}), splits, tmp_path / "c")
    weights = [load_file(tmp_path / name / "best.safetensors") for name in "abc"]
    assert a.test == b.test and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    assert a.val_history != c.val_history or a.test != c.test


# ----------------------------------------------------------------------------- the fast path


def validated_epochs(tmp_path, splits, name, **overrides):
    result = train(quick(**overrides), splits, tmp_path / name, model=tiny_net())
    return [epoch for epoch, _ in result.val_history]


def test_the_fast_path_validates_every_fifth_epoch_and_every_epoch_of_the_last_quarter(tmp_path, splits):
    assert validated_epochs(tmp_path, splits, "fast", epochs=20) == [5, 10, 15, 16, 17, 18, 19, 20]
    assert validated_epochs(tmp_path, splits, "legacy", epochs=20, fast=False) == list(range(1, 21))
    assert validated_epochs(tmp_path, splits, "every", epochs=20, eval_every=8) == [8, 16, 18, 19, 20]


def test_the_best_validation_weights_kept_in_memory_are_those_written_at_once(tmp_path, splits):
    # the same run with best weights written at every improvement (fast: false) and kept in
    # memory (fast), SGD's update aside: equal selected weights, epoch and test metrics
    legacy = train(quick(epochs=6, fast=False), splits, tmp_path / "legacy", model=tiny_net())
    fast = train(quick(epochs=6, eval_every=1), splits, tmp_path / "fast", model=tiny_net())
    assert fast.best_epoch == legacy.best_epoch and fast.val_history == legacy.val_history
    a, b = load_file(tmp_path / "legacy" / "best.safetensors"), load_file(tmp_path / "fast" / "best.safetensors")
    assert all(torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6) for key in a)
    assert fast.test["top1"] == legacy.test["top1"]


def test_fast_checkpoints_are_timed_and_a_kill_still_resumes_bit_identical(tmp_path, splits, monkeypatch):
    written = []
    write = trainer_module.write_checkpoint
    monkeypatch.setattr(trainer_module, "write_checkpoint", lambda *args: (written.append(args[-2].epoch), write(*args))[1])
    config = quick(epochs=5)
    uninterrupted = train(config, splits, tmp_path / "a", model=tiny_net(dropout=0.3))
    assert written == [5]  # a quick run: only the last epoch's checkpoint
    monkeypatch.setattr(trainer_module, "CHECKPOINT_SECONDS", 0.0)
    written.clear()
    train_killed_in_epoch(monkeypatch, 3, config, splits, tmp_path / "b", model=tiny_net(dropout=0.3))
    assert written == [1, 2, 3]  # every epoch once 0 s have passed
    resumed = train(config, splits, tmp_path / "b", model=tiny_net(seed=9, dropout=0.3))
    for name in ("checkpoint/model.safetensors", "best.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        assert all(torch.equal(a[key], b[key]) for key in a), name
    assert resumed.test == uninterrupted.test and resumed.best_epoch == uninterrupted.best_epoch


def test_evaluation_batches_are_four_training_batches_within_a_pixel_budget():
    sizes = {recipe: trainer_module.eval_batch_size(resolve_recipe(TrainConfig(recipe=recipe)))
             for recipe in ("pocket", "cifar", "finegrained")}  # fmt: skip
    assert sizes == {"pocket": 64, "cifar": 256, "finegrained": 128}
    assert trainer_module.eval_batch_size(resolve_recipe(TrainConfig(recipe="pocket", fast=False))) == 16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_fast_path_on_cuda_reruns_identically(tmp_path, splits):
    config = quick(epochs=4, steps=20, device="cuda")
    a = train(config, splits, tmp_path / "a")
    b = train(config, splits, tmp_path / "b")
    assert a.optimizer_steps == 20 and a.test == b.test and a.val_history == b.val_history
