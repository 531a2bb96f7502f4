"""The ``synthetic_replacement`` data policy (Diff-Mix's sampling): each access to a real
sample is replaced, with probability p, by a synthetic sample drawn uniformly from the
whole synthetic pool."""

from __future__ import annotations

import pytest
import torch

from genaug.training.policies import TrainPool, create_policy
from genaug.training.registry import POLICIES


def pool(num_real: int, synthetic_labels: list[int], real_labels: list[int] | None = None) -> TrainPool:
    real = torch.tensor(real_labels if real_labels is not None else [0] * num_real)
    labels = torch.cat([real, torch.tensor(synthetic_labels, dtype=torch.int64)])
    source = torch.full((len(synthetic_labels),), -1)
    return TrainPool(images=torch.zeros(len(labels), 3, 1, 1, dtype=torch.uint8), labels=labels, num_real=num_real, source=source)


def test_the_default_p_is_diffmix_official_and_bad_p_is_refused():
    assert POLICIES.spec("synthetic_replacement").params().p == 0.1
    assert create_policy("synthetic_replacement").p == 0.1
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1\.5"):
        create_policy("synthetic_replacement", p=1.5)


def test_a_share_p_of_the_epoch_is_synthetic_drawn_uniformly_from_the_whole_pool():
    """Real samples all of class 0, the pool of classes 1-4: replacements ignore the class and
    the source, every synthetic sample is equally likely, and the epoch keeps the real length."""
    train = pool(2000, [1, 2, 3, 4] * 5, real_labels=[0] * 2000)
    policy = create_policy("synthetic_replacement", p=0.3)
    plans = [policy.plan(epoch, 10, train, torch.Generator().manual_seed(epoch)) for epoch in range(5)]
    for plan in plans:
        assert len(plan.indices) == 2000 and plan.real + plan.synthetic == 2000
        assert abs(plan.synthetic / 2000 - 0.3) < 0.035
        real = plan.indices[plan.indices < 2000]
        assert len(real.unique()) == len(real)  # the kept real samples each appear once
    picked = torch.cat([plan.indices[plan.indices >= 2000] for plan in plans]) - 2000
    share = torch.bincount(picked, minlength=20).float() / len(picked)
    assert torch.allclose(share, torch.full((20,), 1 / 20), atol=0.02)


def test_p_0_trains_on_the_real_set_and_p_1_on_synthetic_only():
    train = pool(50, [0] * 10)
    generator = torch.Generator().manual_seed(0)
    assert sorted(create_policy("synthetic_replacement", p=0.0).plan(0, 1, train, generator).indices.tolist()) == list(range(50))
    plan = create_policy("synthetic_replacement", p=1.0).plan(0, 1, train, generator)
    assert plan.synthetic == 50 and bool((plan.indices >= 50).all())


def test_without_synthetic_samples_the_epoch_is_the_real_set():
    plan = create_policy("synthetic_replacement", p=0.5).plan(0, 1, pool(30, []), torch.Generator().manual_seed(0))
    assert sorted(plan.indices.tolist()) == list(range(30)) and plan.synthetic == 0


def test_the_plan_depends_only_on_the_generator_seed():
    train = pool(100, [0] * 40)
    policy = create_policy("synthetic_replacement", p=0.2)
    a = policy.plan(3, 10, train, torch.Generator().manual_seed(7))
    b = policy.plan(3, 10, train, torch.Generator().manual_seed(7))
    assert torch.equal(a.indices, b.indices)
