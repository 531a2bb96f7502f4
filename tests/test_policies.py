"""Data policies (docs/methods/progressive-scheduling.md): how many real and synthetic samples each epoch uses, and which."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genaug.config import ConfigError, TrainConfig, parse_config
from genaug.data import load_splits
from genaug.mixing.fractals import fractal_bank, save_fractal_pngs
from genaug.training import create_policy, resolve_recipe, train
from genaug.training.policies import TrainPool, synthetic_partners
from genaug.training.registry import POLICIES
from genaug.training.recipes import POCKET_MEAN, POCKET_STD
from genaug.training.schedules import blend_ratio
from genaug.training.seeding import generator_for
from genaug.training.trainer import build_mixer
from test_synthetic_set import write_recoloured_set
from training_helpers import train_killed_in_epoch


def make_pool(real_labels, synthetic_labels, sources=None):
    """A pool of labels only (policies never look at pixels); ``sources`` defaults to -1."""
    labels = torch.tensor(list(real_labels) + list(synthetic_labels), dtype=torch.int64)
    source = torch.full((len(synthetic_labels),), -1) if sources is None else torch.tensor(sources)
    return TrainPool(images=torch.zeros(len(labels), 3, 1, 1, dtype=torch.uint8), labels=labels,
                     num_real=len(real_labels), source=source)  # fmt: skip


def counts(policy, pool, epoch, total_epochs, seed=0):
    plan = policy.plan(epoch, total_epochs, pool, generator_for(seed, "plan", epoch))
    assert len(plan.indices) == plan.real + plan.synthetic
    assert plan.real == int((plan.indices < pool.num_real).sum())
    return plan.real, plan.synthetic


def two_classes(real_per_class=5, synthetic_per_class=5):
    """Classes 0 and 1, each synthetic image made from the real image of its rank in the class."""
    real = [0] * real_per_class + [1] * real_per_class
    synthetic = [0] * synthetic_per_class + [1] * synthetic_per_class
    sources = [i % real_per_class for i in range(synthetic_per_class)]
    sources += [real_per_class + i % real_per_class for i in range(synthetic_per_class)]
    return make_pool(real, synthetic, sources)


def test_the_config_checks_policy_names_against_the_registry():
    assert {"real_only", "concat", "subset", "curriculum", "synthetic_probability", "multiples"} <= set(POLICIES)
    with pytest.raises(ConfigError, match=r"data_policy: unknown data policy 'curicculum'; did you mean 'curriculum'\? \(allowed: .*concat"):
        parse_config(TrainConfig, {"data_policy": "curicculum"})
    with pytest.raises(ConfigError, match=r"data_policy_kwargs.pp: unknown key 'pp'; did you mean 'p'\? \(allowed: p\)"):
        parse_config(TrainConfig, {"data_policy": "synthetic_probability", "data_policy_kwargs": {"pp": 0.2}})


@pytest.mark.parametrize("name", POLICIES.names())
def test_every_policy_builds_with_default_params_and_plans_an_epoch(name):
    """Contract of every registered policy: valid in a config, built with its defaults, a plan
    of pool positions whose real/synthetic counts add up."""
    parse_config(TrainConfig, {"data_policy": name})
    pool = two_classes()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="data_policy 'subset' reproduces")
        real, synthetic = counts(create_policy(name), pool, 1, 4)
    assert real + synthetic > 0 and synthetic <= pool.num_synthetic * 2


def test_real_only_and_concat_counts():
    pool = two_classes(5, 7)
    assert counts(create_policy("real_only"), pool, 0, 3) == (10, 0)
    assert counts(create_policy("concat"), pool, 2, 3) == (10, 14)


# ----------------------------------------------------------------------------- curriculum


@pytest.mark.parametrize(
    ("schedule", "params", "epoch", "expected"),
    [
        ("linear", {}, 0, (10, 0)),
        ("step", {"milestones": [2, 4], "values": [0.0, 0.5, 1.0]}, 1, (10, 0)),
        ("step", {"milestones": [2, 4], "values": [0.0, 0.5, 1.0]}, 4, (0, 10)),
        ("warmup", {"warmup_epochs": 3}, 2, (10, 0)),
        ("cosine", {}, 0, (10, 0)),
        ("constant", {"p": 1.0}, 3, (0, 10)),
    ],
)
def test_curriculum_counts_where_rho_is_0_or_1_are_exact(schedule, params, epoch, expected):
    policy = create_policy("curriculum", schedule=schedule, **params)
    assert counts(policy, two_classes(), epoch, 6) == expected


@pytest.mark.parametrize("epoch", [0, 5, 9])
def test_curriculum_linear_replaces_a_share_rho_of_the_epoch(epoch):
    pool = make_pool([0, 1] * 5000, [0, 1] * 50)
    real, synthetic = counts(create_policy("curriculum", schedule="linear"), pool, epoch, 10)
    rho = blend_ratio("linear", epoch, 10)  # 0, 0.5, 0.9
    assert real + synthetic == 10_000  # the epoch keeps the real set's length
    assert abs(synthetic - rho * 10_000) <= 4 * (10_000 * rho * (1 - rho)) ** 0.5  # 4 binomial sd


def test_replacement_prefers_the_same_source_image_then_the_same_class():
    # real 0, 1 (class 0), 2 (class 1), 3 (class 2); synthetic 4, 5 made from real 0,
    # 6 of class 0 from no real image, 7 of class 1 made from a real image outside the pool.
    pool = make_pool([0, 0, 1, 2], [0, 0, 0, 1], sources=[0, 0, -1, -1])
    seen = {position: set() for position in range(4)}
    for seed in range(40):
        choice = torch.rand(4, generator=torch.Generator().manual_seed(seed))
        for position, partner in enumerate(synthetic_partners(pool, torch.arange(4), choice).tolist()):
            seen[position].add(partner)
    assert seen == {0: {4, 5}, 1: {4, 5, 6}, 2: {7}, 3: {-1}}  # class 2 has no synthetic image

    always = create_policy("curriculum", schedule="constant", p=1.0)
    plan = always.plan(0, 1, pool, generator_for(0, "plan", 0))
    assert (plan.real, plan.synthetic) == (1, 3)  # the class-2 image has nothing to be replaced by
    assert 3 in plan.indices.tolist()


def test_a_replaced_sample_comes_from_its_own_source_image():
    pool = two_classes(real_per_class=5, synthetic_per_class=10)  # two edits of every real image
    policy = create_policy("synthetic_probability", p=1.0)
    for epoch in range(3):
        plan = policy.plan(epoch, 3, pool, generator_for(0, "plan", epoch))
        assert plan.synthetic == 10
    order = torch.randperm(10, generator=generator_for(0, "plan", 2))
    replaced = plan.indices - pool.num_real
    assert torch.equal(pool.source[replaced], order)  # each real sample became an edit of itself


# ----------------------------------------------------------------------------- synthetic_probability


@pytest.mark.parametrize(("p", "expected"), [(0.0, (10, 0)), (1.0, (0, 10))])
def test_synthetic_probability_extremes(p, expected):
    assert counts(create_policy("synthetic_probability", p=p), two_classes(), 4, 5) == expected


def test_synthetic_probability_replaces_a_share_p_at_every_epoch():
    pool = make_pool([0, 1] * 5000, [0, 1] * 50)
    policy = create_policy("synthetic_probability", p=0.3)
    for epoch in (0, 7):
        real, synthetic = counts(policy, pool, epoch, 8)
        assert real + synthetic == 10_000 and abs(synthetic - 3000) <= 4 * (10_000 * 0.21) ** 0.5


# ----------------------------------------------------------------------------- multiples


def test_multiples_adds_a_fixed_draw_of_multiples_times_each_class_count():
    # class 0: 4 real, 12 synthetic (enough: drawn without replacement);
    # class 1: 2 real, 3 synthetic (too few for 2 x 2 = 4: drawn with replacement)
    pool = make_pool([0] * 4 + [1] * 2, [0] * 12 + [1] * 3)
    policy = create_policy("multiples", multiples=2)
    plans = [policy.plan(epoch, 3, pool, generator_for(0, "plan", epoch)) for epoch in range(3)]
    assert [(plan.real, plan.synthetic) for plan in plans] == [(6, 12)] * 3
    draws = [sorted(plan.indices[plan.indices >= 6].tolist()) for plan in plans]
    assert draws[0] == draws[1] == draws[2]  # drawn once, reshuffled every epoch
    class_0 = [i for i in draws[0] if pool.labels[i] == 0]
    class_1 = [i for i in draws[0] if pool.labels[i] == 1]
    assert len(class_0) == 8 and len(set(class_0)) == 8
    assert len(class_1) == 4 and len(set(class_1)) < 4
    assert not torch.equal(plans[0].indices, plans[1].indices)
    assert counts(create_policy("multiples", multiples=0.5), pool, 0, 1) == (6, 3)  # round(0.5 * n_c)


def test_multiples_needs_synthetic_images_of_every_class():
    pool = make_pool([0, 0, 1], [0, 0])
    with pytest.raises(ValueError, match="class 1 has 1 real images but no synthetic"):
        create_policy("multiples").plan(0, 1, pool, generator_for(0, "plan", 0))


# ----------------------------------------------------------------------------- subset


def test_subset_draws_a_fixed_labels_per_class_from_the_union_and_warns():
    pool = two_classes(real_per_class=5, synthetic_per_class=5)
    policy = create_policy("subset")  # the real count per class, as the reference's 500 of CIFAR-100
    with pytest.warns(UserWarning, match=r"'subset'.*trains on \d+ of the 10 real images"):
        first = policy.plan(0, 2, pool, generator_for(0, "plan", 0))
    second = policy.plan(1, 2, pool, generator_for(0, "plan", 1))
    assert sorted(first.indices.tolist()) == sorted(second.indices.tolist())  # the same subset every epoch
    # the reference's rule: one permutation of the whole pool (seed 0), the first 5 of each class
    order = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    expected = [i for c in (0, 1) for i in order[pool.labels[order] == c][:5].tolist()]
    assert sorted(first.indices.tolist()) == sorted(expected)
    real = sum(i < 10 for i in expected)
    assert (first.real, first.synthetic) == (real, 10 - real) and real < 10


def test_subset_of_a_real_set_alone_is_a_plain_per_class_subset_without_warning(recwarn):
    pool = make_pool([0] * 6 + [1] * 2, [])
    assert counts(create_policy("subset", labels_per_class=3), pool, 0, 1) == (5, 0)  # 3 + the 2 there are
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


# ----------------------------------------------------------------------------- every policy


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("subset", {"labels_per_class": 3}),
        ("curriculum", {"schedule": "cosine"}),
        ("synthetic_probability", {"p": 0.5}),
        ("multiples", {"multiples": 1.5}),
    ],
)
@pytest.mark.filterwarnings("ignore:data_policy 'subset'")
def test_a_plan_depends_only_on_the_epochs_generator(name, kwargs):
    pool = two_classes(5, 8)
    a = create_policy(name, **kwargs).plan(3, 6, pool, generator_for(7, "plan", 3))
    b = create_policy(name, **kwargs).plan(3, 6, pool, generator_for(7, "plan", 3))  # as after a resume
    assert torch.equal(a.indices, b.indices)


def test_bad_policy_arguments_are_config_errors_naming_the_policy():
    with pytest.raises(ConfigError, match="curriculum.*schedule 'linear' takes parameters none"):
        create_policy("curriculum", schedule="linear", p=0.3)
    with pytest.raises(ConfigError, match="curriculum.*unknown rho schedule 'linearr'"):
        create_policy("curriculum", schedule="linearr")
    with pytest.raises(ConfigError, match="synthetic_probability.*p must be in"):
        create_policy("synthetic_probability", p=1.5)
    with pytest.raises(ConfigError, match="multiples.*unexpected keyword"):
        create_policy("multiples", multiple=2)
    with pytest.raises(ConfigError, match="unknown data policy 'curricula'; did you mean 'curriculum'"):
        create_policy("curricula")


# ----------------------------------------------------------------------------- training runs


@pytest.fixture(autouse=True)
def _genaug_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def pocket(tmp_path_factory):
    """Pocket digits (5 per class) and a synthetic set of two recoloured copies of each, at 24 px."""
    splits = load_splits("pocket_digits", labels_per_class=5)
    splits["val"] = splits["val"].subset(np.arange(0, len(splits["val"]), 4))  # keeps evaluation quick
    splits["test"] = splits["test"].subset(np.arange(0, len(splits["test"]), 4))
    set_dir = tmp_path_factory.mktemp("synthetic") / "recoloured"
    write_recoloured_set(set_dir, splits["train"], copies=2, size=24)
    return splits, set_dir


def quick(**overrides):
    settings = dict(recipe="pocket", epochs=3, width=0.125, cpu_threads=1,
                    logging={"progress": False, "tensorboard": False})  # fmt: skip
    settings.update(overrides)
    return TrainConfig(**settings)


def epoch_counts(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [(int(row["real_samples"]), int(row["synthetic_samples"])) for row in csv.DictReader(handle)]


@pytest.mark.parametrize(
    ("policy", "kwargs", "expected"),
    [
        ("real_only", {}, [(50, 0)] * 3),
        ("concat", {}, [(50, 100)] * 3),
        ("curriculum", {"schedule": "step", "milestones": [1, 2], "values": [0.0, 0.5, 1.0]}, None),
        ("synthetic_probability", {"p": 1.0}, [(0, 50)] * 3),
        ("multiples", {"multiples": 3}, [(50, 150)] * 3),
        ("subset", {"labels_per_class": 5}, None),
    ],
)
@pytest.mark.filterwarnings("ignore:data_policy 'subset'")
def test_training_with_each_policy_reports_its_real_and_synthetic_counts(tmp_path, pocket, policy, kwargs, expected):
    splits, set_dir = pocket
    config = quick(data_policy=policy, data_policy_kwargs=kwargs)
    result = train(config, splits, tmp_path / "run", synthetic=set_dir)
    rows = epoch_counts(tmp_path / "run")
    if policy == "curriculum":  # rho 0, 0.5, 1
        assert rows[0] == (50, 0) and sum(rows[1]) == 50 and rows[2] == (0, 50)
    elif policy == "subset":
        assert all(sum(row) == 50 for row in rows) and len(set(rows)) == 1
    else:
        assert rows == expected
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    totals = (sum(r for r, _ in rows), sum(s for _, s in rows))
    assert (stored["real_samples"], stored["synthetic_samples"]) == totals
    assert (result.real_samples, result.synthetic_samples) == totals


def test_a_killed_and_resumed_curriculum_run_replays_every_epoch(tmp_path, pocket, monkeypatch):
    splits, set_dir = pocket
    config = quick(epochs=4, data_policy="curriculum", data_policy_kwargs={"schedule": "linear"}, mixer="fractal",
                   mixer_kwargs={"bank": {"count": 4, "size": 16}})  # fmt: skip
    train(config, splits, tmp_path / "a", synthetic=set_dir)
    train_killed_in_epoch(monkeypatch, 2, config, splits, tmp_path / "b", synthetic=set_dir)
    train(config, splits, tmp_path / "b", synthetic=set_dir)

    a, b = load_file(tmp_path / "a" / "best.safetensors"), load_file(tmp_path / "b" / "best.safetensors")
    assert all(torch.equal(a[key], b[key]) for key in a)
    with open(tmp_path / "a" / "metrics.csv") as file_a, open(tmp_path / "b" / "metrics.csv") as file_b:
        rows_a, rows_b = list(csv.DictReader(file_a)), list(csv.DictReader(file_b))
    timing = {"epoch_seconds", "samples_per_second"}
    assert [{k: v for k, v in row.items() if k not in timing} for row in rows_a] == [
        {k: v for k, v in row.items() if k not in timing} for row in rows_b
    ]
    assert int(rows_a[0]["synthetic_samples"]) == 0 and int(rows_a[3]["synthetic_samples"]) > 0


# ----------------------------------------------------------------------------- online mixers in the trainer


MIXERS = {
    "mixup": {"alpha": 1.0},
    "manifold_mixup": {"alpha": 2.0},
    "cutmix": {"alpha": 1.0},
    "puzzlemix": {"alpha": 1.0},
    "fractal": {"bank": {"count": 4, "size": 16, "seed": 0}},
}


@pytest.mark.parametrize("loss", ["ce", "bce_softmax"])
@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_training_with_each_online_mixer_on_real_and_synthetic_data(tmp_path, pocket, mixer, loss):
    splits, set_dir = pocket
    config = quick(epochs=2, mixer=mixer, mixer_kwargs=MIXERS[mixer], loss=loss, data_policy="concat")
    result = train(config, splits, tmp_path / "run", synthetic=set_dir)
    assert epoch_counts(tmp_path / "run") == [(50, 100)] * 2
    assert (result.real_samples, result.synthetic_samples) == (100, 200)
    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        assert all(np.isfinite(float(row["train_loss"])) for row in csv.DictReader(handle))
    assert np.isfinite(result.test["loss"])


def test_the_trainer_gives_mixers_the_batch_normalisation_and_the_fractal_bank(tmp_path):
    def mixer(name, **kwargs):  # read as from a file: the mixer's kwargs are checked when the config is loaded
        return build_mixer(resolve_recipe(parse_config(TrainConfig, {"recipe": "pocket", "mixer": name, "mixer_kwargs": kwargs})))

    fractal = mixer("fractal", bank={"count": 3, "size": 8, "seed": 2}, low=0.25)
    torch.testing.assert_close(fractal.bank, fractal_bank(3, 8, 2).float() / 255)
    torch.testing.assert_close(fractal.mean.flatten(), torch.tensor(POCKET_MEAN))
    torch.testing.assert_close(fractal.std.flatten(), torch.tensor(POCKET_STD))
    assert (fractal.low, fractal.high) == (0.25, 0.3)

    save_fractal_pngs(fractal_bank(2, 8, 5), tmp_path / "fractals")
    from_folder = mixer("fractal", bank={"folder": str(tmp_path / "fractals"), "size": 8})
    torch.testing.assert_close(from_folder.bank, fractal_bank(2, 8, 5).float() / 255)

    puzzlemix = mixer("puzzlemix")
    assert (puzzlemix.mean, puzzlemix.std) == (POCKET_MEAN, POCKET_STD)
    with pytest.raises(ConfigError, match=r"mixer_kwargs: \['mean'\].*augmentation.mean/std"):
        mixer("puzzlemix", mean=[0.5, 0.5, 0.5])
    with pytest.raises(ConfigError, match="(?s)mixer_kwargs.bank.*count >= 1"):
        mixer("fractal", bank={"count": 0})
