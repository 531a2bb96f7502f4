"""Several seeds of a pocket run as one stacked model: training-step time per seed, and how exact.

The trainer's lever for more runs per core-minute (:class:`genaug.models.stacking.SeedStack`,
trained by :func:`genaug.training.train_seeds`): K seeds' PreActResNet-18 (pocket width 0.25)
become one model whose every convolution is grouped by seed (K times the channels, K times the
groups), every BatchNorm K times as wide (its statistics are per channel, so per seed) and the
classifier one block per seed. Seed k's batch of 16 occupies channel block k of the input, so
one call trains K independent models: the per-call fixed cost of a small network (Python,
dispatch, kernel set-up) is paid once for K seeds. This script times the training step alone;
``benchmarks/training_runs.py --paths ...,stacked`` times whole runs.

It prints, for K = 1 (the plain model), 2, 4 and 8, the median milliseconds of one
forward + backward + fused-SGD step per seed, the rounds interleaved so that load changes fall
on every K alike, and the largest difference between the stacked model's logits and gradients
and those of the K separate models (the same weights and data), in float32 and float64: how far
a stacked run would be from the run its seed makes alone. (In float32 BatchNorm's gradients,
sums with much cancellation, differ by up to a few per cent of their largest entry; in float64 by
about 1e-12: the order of the sums, not the model, differs. A stacked run is therefore a
function of its seed and of K, not bit-identical to the seed alone.)

    python benchmarks/stacked_seeds.py [--rounds 8] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
from torch import nn


def build(k: int, seed: int = 0) -> tuple[list[nn.Module], nn.Module]:
    """K pocket models (seeds ``seed`` ... ``seed + k - 1``) and the :class:`SeedStack` of them."""
    from genaug.models import create_model
    from genaug.models.stacking import SeedStack

    models = []
    for index in range(k):
        torch.manual_seed(seed + index)
        models.append(create_model("preactresnet18", 10, width=0.25))
    return models, SeedStack(models)


def step_fn(model: nn.Module, k: int, batch: int = 16):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, fused=True)
    x = torch.randn(batch, 3 * k, 16, 16)
    y = torch.randint(0, 10, (batch, k))

    def step() -> None:
        logits = model(x).view(batch, k, 10)
        loss = nn.functional.cross_entropy(logits.permute(0, 2, 1), y, reduction="mean") * k  # = sum of K means
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def exactness(k: int = 4, dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    """Largest |difference| of logits, and largest relative difference of any parameter's
    gradient (to that gradient's largest entry), stacked vs separate models, in ``dtype``."""
    models, stacked = build(k)
    models, stacked = [model.to(dtype) for model in models], stacked.to(dtype)
    x = torch.randn(16, 3 * k, 16, 16, dtype=dtype)
    y = torch.randint(0, 10, (16, k))
    logits = stacked(x).view(16, k, 10)
    nn.functional.cross_entropy(logits.permute(0, 2, 1), y, reduction="none").mean(0).sum().backward()
    logit_diff, grad_diff = 0.0, 0.0
    for index, model in enumerate(models):
        alone = model(x[:, 3 * index : 3 * index + 3])
        nn.functional.cross_entropy(alone, y[:, index]).backward()
        logit_diff = max(logit_diff, (alone - logits[:, index]).abs().max().item())
        for (name, own), joint in zip(model.named_parameters(), stacked.net.parameters()):
            part = stacked.part(name, joint.grad, index)
            grad_diff = max(grad_diff, ((own.grad - part).abs().max() / own.grad.abs().max()).item())
    return logit_diff, grad_diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="steps per K per round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; torch threads {args.threads}")
    steps = {1: step_fn(build(1)[0][0], 1)}
    for k in (2, 4, 8):
        steps[k] = step_fn(build(k)[1], k)
    for step in steps.values():
        for _ in range(3):
            step()
    import time

    per_seed = {k: [] for k in steps}
    for _ in range(args.rounds):
        for k, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                step()
            per_seed[k].append((time.perf_counter() - started) / args.steps / k * 1000)
    alone = statistics.median(per_seed[1])
    for k, times in per_seed.items():
        label = "one model" if k == 1 else f"{k} stacked"
        print(f"K={k} ({label:9s}): {statistics.median(times):6.2f} ms per seed-step (median of {args.rounds} rounds), "
              f"{alone / statistics.median(times):.2f}x the runs per core-minute of K=1")  # fmt: skip
    for dtype in (torch.float32, torch.float64):
        logit_diff, grad_diff = exactness(dtype=dtype)
        print(f"stacked (K=4) vs separate models in {str(dtype).removeprefix('torch.')}: logits differ by at most "
              f"{logit_diff:.1e}, gradients by at most {100 * grad_diff:.1e} % of their largest entry")  # fmt: skip
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
