"""Compute parity: every arm read at its recipe's epochs and at a matched number of optimizer steps.

An arm that adds data also adds optimizer steps: with the pocket recipe (batch 16, 60
epochs) the 100 real digits make 420 steps, a 1x synthetic arm 780 and a 3x one 1,500, and
training the baseline longer alone gains several points. So a table is read twice:

- **natural**: each arm trains its recipe's ``epochs`` over whatever its data policy puts
  in an epoch (the published recipes; the view every table has);
- **matched** (``compute: {matched_steps: N}``): every arm trains exactly ``N`` optimizer
  steps (``train.steps``, with the learning-rate schedule spread over them), whatever its
  data. An arm whose natural run already makes exactly ``N`` steps is not trained again:
  its natural runs stand in the matched view too (the table says so).

:func:`natural_steps` counts an arm's natural optimizer steps from its data policy's own
epoch plans (:mod:`genaug.training.policies`) and the sizes of its real and synthetic data,
so the runner knows before training which matched runs it needs.
"""

from __future__ import annotations

import math

from pydantic import Field

from genaug.config import StrictModel
from genaug.seeds import generator_for

__all__ = ["ComputeConfig", "natural_steps"]


class ComputeConfig(StrictModel):
    """``compute:`` of an experiment file. ``matched_steps``: the optimizer steps of every arm in
    the matched view (None: the natural view only); ``arms``: the arms read in the matched view
    (None: every arm; the baseline always is), to spend the matched runs where a comparison
    needs them."""

    matched_steps: int | None = Field(default=None, ge=1)
    arms: list[str] | None = None

    def matched(self, arm: str, baseline: str | None) -> bool:
        """Whether ``arm`` is read in the matched view."""
        return self.matched_steps is not None and (self.arms is None or arm in self.arms or arm == baseline)

    @property
    def views(self) -> list[str]:
        return ["natural"] if self.matched_steps is None else ["natural", "matched"]


def natural_steps(config, real_labels, synthetic_labels, synthetic_sources=None) -> int:
    """Optimizer steps of a run of the resolved ``config`` in epoch mode: the sum over epochs of
    ``ceil(epoch length / batch_size)``, each epoch's length from its data policy's plan.

    ``real_labels`` / ``synthetic_labels``: the labels of the real training images and of the
    synthetic images the run reads (their order and values matter only to policies that
    draw per class); ``synthetic_sources``: each synthetic image's real source position
    (-1 when none). A config with ``steps`` set makes exactly that many.
    """
    import torch

    from genaug.training.policies import TrainPool, create_policy

    if getattr(config, "steps", None):
        return int(config.steps)
    real = torch.as_tensor(list(real_labels), dtype=torch.int64)
    synthetic = torch.as_tensor(list(synthetic_labels), dtype=torch.int64)
    labels = torch.cat([real, synthetic])
    sources = (
        torch.as_tensor(list(synthetic_sources), dtype=torch.int64)
        if synthetic_sources is not None
        else torch.full((len(synthetic),), -1, dtype=torch.int64)
    )
    pool = TrainPool(images=torch.zeros((len(labels), 0), dtype=torch.uint8), labels=labels, num_real=len(real), source=sources)
    policy = create_policy(config.data_policy, **config.data_policy_kwargs)
    total = 0
    for epoch in range(config.epochs):
        plan = policy.plan(epoch, config.epochs, pool, generator_for(config.seed, "plan", epoch))
        total += math.ceil(len(plan.indices) / config.batch_size)
    return total
