"""Several seeds trained as one stacked model: the stack computes each seed's model, a seed in a
stack trains the run it would train alone (to float32 rounding), writes its own files, reruns
identically and resumes after a kill; runs that cannot be stacked train alone."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from genaug.experiment.jobs import TrainJob, group_jobs
from genaug.models import create_model
from genaug.models.stacking import SeedStack, stack_problem
from genaug.training import train, train_seeds
from genaug.training import stacked as stacked_module
from genaug.training.policies import DataPolicy, EpochPlan, TrainPool
from genaug.training.stacked import plan_problem
from training_helpers import Killed, TinyNet, quick

pytestmark = pytest.mark.usefixtures("genaug_home")  # tests/conftest.py


def pocket_models(count: int, dtype=torch.float32) -> list[nn.Module]:
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        models.append(create_model("preactresnet18", 10, width=0.25).to(dtype))
    return models


def test_the_stack_computes_every_seeds_model_and_its_gradients_in_float64():
    models = pocket_models(3, torch.float64)
    stack = SeedStack(models)
    images = [torch.randn(6, 3, 16, 16, dtype=torch.float64) for _ in models]
    labels = [torch.randint(0, 10, (6,)) for _ in models]
    logits = stack(torch.cat(images, dim=1))
    assert logits.shape == (6, 3, 10)
    sum(nn.functional.cross_entropy(logits[:, k], labels[k]) for k in range(3)).backward()
    gradients = {name: parameter.grad for name, parameter in stack.net.named_parameters()}
    for k, model in enumerate(models):
        alone = model(images[k])
        nn.functional.cross_entropy(alone, labels[k]).backward()
        assert torch.allclose(alone, logits[:, k], rtol=0, atol=1e-12)
        for name, parameter in model.named_parameters():
            joint = stack.part(name, gradients[name], k)
            assert torch.allclose(parameter.grad, joint, rtol=1e-9, atol=1e-12), name


def test_a_seeds_weights_and_optimiser_state_leave_and_reenter_the_stack_unchanged():
    models = pocket_models(3)
    stack = SeedStack(models)
    for k, model in enumerate(models):
        assert stack.seed_state(k).keys() == model.state_dict().keys()
        assert all(torch.equal(stack.seed_state(k)[name], value) for name, value in model.state_dict().items())
    optimizer = torch.optim.SGD(stack.parameters(), lr=0.1, momentum=0.9)
    stack(torch.randn(4, 9, 16, 16)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    per_seed = [stack.seed_optimizer_state(state, k) for k in range(3)]
    alone = torch.optim.SGD(models[1].parameters(), lr=0.1, momentum=0.9)
    alone.load_state_dict(per_seed[1])  # the layout of the seed's own optimiser
    rebuilt = stack.stack_optimizer_states(per_seed)
    for index, entry in state["state"].items():
        assert torch.equal(rebuilt["state"][index]["momentum_buffer"], entry["momentum_buffer"])
    weights = [stack.seed_state(k) for k in range(3)]
    fresh = SeedStack(pocket_models(3))
    fresh.load_seed_states(weights)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), stack.state_dict().values()))


class MixesChannels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=1, keepdim=True)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (lambda: create_model("preactresnet18", 10, width=0.25), None),
        (lambda: TinyNet(), None),
        (lambda: TinyNet(dropout=0.3), "training mode"),
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), MixesChannels(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)), "training mode"),
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)), "no stacking rule for GroupNorm"),
    ],
)
def test_stack_problem_names_what_cannot_be_stacked(model, reason):
    found = stack_problem(model(), 16)
    assert found is None if reason is None else reason in found


def test_a_seed_in_a_stack_trains_the_run_it_would_train_alone(tmp_path, splits):
    """Same initial weights, data order and augmentation: after 2 epochs the weights differ only
    by float32 rounding (another seed's run differs by far more)."""
    configs = [quick(epochs=2, seed=seed) for seed in (3, 4)]
    stacked = train_seeds(configs, splits, [tmp_path / "s3", tmp_path / "s4"])
    alone = [train(config, splits, tmp_path / f"a{config.seed}") for config in configs]
    assert [result.stacked_seeds for result in stacked] == [[4], [3]]
    assert [result.stacked_seeds for result in alone] == [[], []]
    for seed in (3, 4):
        mine, theirs = load_file(tmp_path / f"s{seed}" / "best.safetensors"), load_file(tmp_path / f"a{seed}" / "best.safetensors")
        other = load_file(tmp_path / f"a{7 - seed}" / "best.safetensors")
        for name, value in theirs.items():
            if value.is_floating_point() and "running" not in name:
                rounding = (mine[name] - value).abs().max()
                assert rounding < 0.05 * (other[name] - value).abs().max(), name
    for result, other in zip(stacked, alone):
        assert result.optimizer_steps == other.optimizer_steps and result.real_samples == other.real_samples
        assert [epoch for epoch, _ in result.val_history] == [epoch for epoch, _ in other.val_history]


def test_each_seed_writes_the_files_of_a_run_and_its_test_is_its_selected_weights(tmp_path, splits):
    configs = [quick(epochs=3, seed=seed) for seed in (0, 1, 2)]
    results = train_seeds(configs, splits, [tmp_path / f"seed-{seed}" for seed in (0, 1, 2)])
    for seed, result in zip((0, 1, 2), results):
        folder = tmp_path / f"seed-{seed}"
        assert {"config.yaml", "dataset.json", "metrics.csv", "metrics.json", "best.safetensors", "warnings.log"} <= {p.name for p in folder.iterdir()}
        assert (folder / "checkpoint" / "model.safetensors").is_file()
        assert len((folder / "metrics.csv").read_text().splitlines()) == 1 + 3
        saved = json.loads((folder / "metrics.json").read_text())
        assert saved["stacked_seeds"] == [s for s in (0, 1, 2) if s != seed] and saved["test"] == result.test
        model = create_model("preactresnet18", 10, width=0.25)
        model.load_state_dict(load_file(folder / "best.safetensors"))  # the single model's layout
        # the checkpoint resumes the seed alone too: a finished run is returned as it is
        assert train(configs[seed], splits, folder).test == result.test


def test_a_stack_reruns_identically_and_a_killed_stack_resumes_bit_identical(tmp_path, splits, monkeypatch):
    configs = [quick(epochs=4, seed=seed, checkpoint_every=1) for seed in (0, 1)]
    first = train_seeds(configs, splits, [tmp_path / "a0", tmp_path / "a1"])
    again = train_seeds(configs, splits, [tmp_path / "b0", tmp_path / "b1"])
    assert [r.test for r in first] == [r.test for r in again]

    real_epoch = stacked_module.train_stacked_epoch

    def dies(*args, **kwargs):
        if args[9] == 2:  # the epoch argument: killed as epoch 3 (from 1) starts
            raise Killed
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(stacked_module, "train_stacked_epoch", dies)
    with pytest.raises(Killed):
        train_seeds(configs, splits, [tmp_path / "c0", tmp_path / "c1"])
    monkeypatch.setattr(stacked_module, "train_stacked_epoch", real_epoch)
    assert all(len((tmp_path / f"c{s}" / "metrics.csv").read_text().splitlines()) == 1 + 2 for s in (0, 1))
    resumed = train_seeds(configs, splits, [tmp_path / "c0", tmp_path / "c1"])
    assert [r.stacked_seeds for r in resumed] == [[1], [0]]  # resumed as a stack
    for seed in (0, 1):
        a, c = load_file(tmp_path / f"a{seed}" / "best.safetensors"), load_file(tmp_path / f"c{seed}" / "best.safetensors")
        assert all(torch.equal(a[key], c[key]) for key in a)
    assert [r.test for r in resumed] == [r.test for r in first]


def test_runs_that_cannot_be_stacked_train_alone(tmp_path, splits):
    configs = [quick(epochs=1, seed=seed, mixer="mixup") for seed in (0, 1)]
    assert all(result.stacked_seeds == [] for result in train_seeds(configs, splits, [tmp_path / "m0", tmp_path / "m1"]))
    configs = [quick(epochs=1, seed=seed, stack_seeds=1) for seed in (0, 1)]
    assert all(result.stacked_seeds == [] for result in train_seeds(configs, splits, [tmp_path / "o0", tmp_path / "o1"]))
    with pytest.raises(Exception, match="differ only in seed"):
        train_seeds([quick(seed=0), quick(seed=1, lr=0.5)], splits, [tmp_path / "x0", tmp_path / "x1"])


class Uneven(DataPolicy):
    """Plans 10-19 real samples an epoch, the count drawn from the seed's generator."""

    def plan(self, epoch, total_epochs, pool, generator):
        return EpochPlan.from_indices(torch.arange(10 + int(torch.randint(10, (1,), generator=generator))), pool)


def test_policies_whose_epochs_differ_in_size_between_seeds_are_found(monkeypatch):
    pool = TrainPool(images=torch.zeros(30, 3, 16, 16, dtype=torch.uint8), labels=torch.arange(30) % 10, num_real=20,
                     source=torch.full((10,), -1), soft=None)  # fmt: skip
    for policy in ("concat", "synthetic_probability", "synthetic_replacement", "curriculum"):
        assert plan_problem([quick(epochs=5, seed=seed, data_policy=policy) for seed in (0, 1)], pool) is None, policy
        assert plan_problem([quick(epochs=5, steps=7, seed=seed, data_policy=policy) for seed in (0, 1)], pool) is None
    monkeypatch.setattr(stacked_module, "create_policy", lambda name, **kwargs: Uneven())
    assert "different sizes" in plan_problem([quick(epochs=5, seed=seed) for seed in (0, 1)], pool)


def job(arm: str, seed: int, tmp_path, **train) -> TrainJob:
    return TrainJob(arm, seed, quick(seed=seed, **train), tmp_path / arm / f"seed-{seed}", (), {"name": "pocket_digits"})


def test_an_arms_seeds_are_grouped_up_to_stack_seeds_and_others_stay_alone(tmp_path):
    jobs = [job("a", seed, tmp_path, stack_seeds=3) for seed in range(5)]
    jobs += [job("b", seed, tmp_path) for seed in range(2)] + [job("m", seed, tmp_path, mixer="cutmix") for seed in range(2)]
    groups = [[(j.arm, j.seed) for j in group] for group in group_jobs(jobs)]
    assert groups == [[("a", 0), ("a", 1), ("a", 2)], [("a", 3), ("a", 4)], [("b", 0), ("b", 1)], [("m", 0)], [("m", 1)]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_stack_on_cuda_reruns_identically(tmp_path, splits):
    configs = [quick(epochs=2, seed=seed, device="cuda") for seed in (0, 1)]
    first = train_seeds(configs, splits, [tmp_path / "a0", tmp_path / "a1"])
    again = train_seeds(configs, splits, [tmp_path / "b0", tmp_path / "b1"])
    assert [r.stacked_seeds for r in first] == [[1], [0]] and [r.test for r in first] == [r.test for r in again]
