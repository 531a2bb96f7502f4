"""Several seeds' copies of one classifier as one model (:class:`SeedStack`).

K models of the same architecture become one module whose every convolution is grouped by
seed (K times the channels and the groups), every BatchNorm K times as wide (its statistics
are per channel, so per seed) and every linear layer one block per seed. The input holds
seed k's images in channel block k (``(N, K * C, H, W)``), the output is ``(N, K, classes)``:
one call computes K independent models. For a small network the fixed cost of a call
(Python, dispatch, kernel set-up) is a large share of a step, and it is paid once for K seeds
(benchmarks/RESULTS.md, "Several seeds as one stacked model").

The stacked model computes the same function as the K models: in float64 their outputs and
gradients agree to rounding (about 1e-15). In float32 the order of some sums differs (grouped
kernels), so a seed trained in a stack of K is a function of its seed and of K, not bit-equal
to the seed trained alone. :func:`stack_problem` says why a model cannot be stacked: a layer
without a stacking rule, or a forward pass that mixes channels across seeds or draws random
numbers (dropout), found by comparing the stack with the separate models in float64.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["SeedStack", "StackedLinear", "stack_problem"]

#: How a stacked tensor holds its seeds: ``block``: seed k is the k-th of K equal slices of
#: dimension 0; ``index``: seed k is ``tensor[k]``; ``shared``: one value for every seed.
BLOCK, INDEX, SHARED = "block", "index", "shared"


class StackedLinear(nn.Module):
    """K independent linear layers: input ``(N, K * in)``, output ``(N, K * out)``;
    ``weight`` is ``(K, out, in)`` and ``bias`` ``(K, out)``."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seeds, out, width = self.weight.shape
        y = torch.einsum("nki,koi->nko", x.reshape(x.shape[0], seeds, width), self.weight) + self.bias
        return y.reshape(x.shape[0], seeds * out)


def stack_modules(models: list[nn.Module]) -> nn.Module:
    """One module computing ``models`` side by side on channel blocks (module doc)."""
    first, seeds = models[0], len(models)
    if isinstance(first, nn.Conv2d):
        conv = nn.Conv2d(first.in_channels * seeds, first.out_channels * seeds, first.kernel_size, first.stride,
                         first.padding, first.dilation, groups=first.groups * seeds, bias=first.bias is not None,
                         padding_mode=first.padding_mode)  # fmt: skip
        with torch.no_grad():
            conv.weight.copy_(torch.cat([model.weight for model in models]))
            if first.bias is not None:
                conv.bias.copy_(torch.cat([model.bias for model in models]))
        return conv
    if isinstance(first, nn.BatchNorm2d):
        norm = nn.BatchNorm2d(first.num_features * seeds, first.eps, first.momentum, first.affine, first.track_running_stats)
        norm.load_state_dict(
            {name: value if name == "num_batches_tracked" else torch.cat([model.state_dict()[name] for model in models])
             for name, value in first.state_dict().items()}  # fmt: skip
        )
        return norm
    if isinstance(first, nn.Linear):
        if first.bias is None:
            raise TypeError("no stacking rule for a Linear layer without bias")
        return StackedLinear(models)
    if any(True for _ in first.parameters(recurse=False)) or any(True for _ in first.buffers(recurse=False)):
        raise TypeError(f"no stacking rule for {type(first).__name__}")
    stacked = copy.copy(first)
    stacked._modules = {name: stack_modules([model._modules[name] for model in models]) if child is not None else None
                        for name, child in first._modules.items()}  # fmt: skip
    return stacked


class SeedStack(nn.Module):
    """``models`` (one per seed, the same architecture) as one model; ``forward`` takes
    ``(N, K * C, H, W)`` and returns ``(N, K, classes)``.

    :meth:`seed_state` / :meth:`load_seed_state` move one seed's weights out of and into the
    stack in the single model's ``state_dict`` layout, and :meth:`seed_optimizer_state` /
    :meth:`stack_optimizer_states` do the same for an optimiser whose parameters are the
    stack's, so a seed's checkpoint is the checkpoint its model alone would have.
    """

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.seeds = len(models)
        self.net = stack_modules(models).to(next(models[0].parameters()))  # the models' device and dtype
        self.layout = {
            name: INDEX if isinstance(self.net.get_submodule(name.rpartition(".")[0]), StackedLinear)
            else SHARED if name.endswith("num_batches_tracked") else BLOCK
            for name in self.net.state_dict()
        }  # fmt: skip
        self.param_names = [name for name, _ in self.net.named_parameters()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape[0], self.seeds, -1)

    def part(self, name: str, value: torch.Tensor, seed: int) -> torch.Tensor:
        """Seed ``seed``'s part of the stacked tensor ``value`` of state entry ``name``."""
        kind = self.layout[name]
        if kind == SHARED:
            return value.clone()
        if kind == INDEX:
            return value[seed].clone()
        return value.chunk(self.seeds)[seed].clone()

    def join(self, name: str, parts: list[torch.Tensor]) -> torch.Tensor:
        """The stacked tensor of state entry ``name`` from every seed's part (inverse of :meth:`part`)."""
        kind = self.layout[name]
        if kind == SHARED:
            return parts[0]
        return torch.stack(parts) if kind == INDEX else torch.cat(parts)

    def seed_state(self, seed: int) -> dict[str, torch.Tensor]:
        """Seed ``seed``'s weights and buffers, keyed as its model alone would key them."""
        return {name: self.part(name, value.detach(), seed) for name, value in self.net.state_dict().items()}

    def load_seed_states(self, states: list[dict[str, torch.Tensor]]) -> None:
        """Load every seed's weights (``states[k]``: seed k's, in the single model's layout)."""
        self.net.load_state_dict({name: self.join(name, [state[name] for state in states]) for name in self.layout})

    def seed_optimizer_state(self, state: dict, seed: int) -> dict:
        """Seed ``seed``'s part of the state of an optimiser over this stack's parameters."""
        per_param = {
            index: {key: self.part(self.param_names[index], value, seed) if torch.is_tensor(value) and value.dim() else value
                    for key, value in entry.items()}  # fmt: skip
            for index, entry in state["state"].items()
        }
        return {"state": per_param, "param_groups": copy.deepcopy(state["param_groups"])}

    def stack_optimizer_states(self, states: list[dict]) -> dict:
        """The optimiser state over this stack from every seed's (inverse of :meth:`seed_optimizer_state`)."""
        per_param = {}
        for index, entry in states[0]["state"].items():
            name = self.param_names[int(index)]
            per_param[index] = {
                key: self.join(name, [state["state"][index][key] for state in states]) if torch.is_tensor(value) and value.dim() else value
                for key, value in entry.items()
            }  # fmt: skip
        return {"state": per_param, "param_groups": copy.deepcopy(states[0]["param_groups"])}


def stack_problem(model: nn.Module, image_size: int, in_channels: int = 3, seeds: int = 2) -> str | None:
    """Why ``model`` cannot be trained in a :class:`SeedStack` (None when it can).

    ``seeds`` float64 copies of ``model`` with perturbed weights are stacked and run on random
    images in training mode (batch statistics, dropout) and in evaluation mode; the stack
    must give every copy's output to 1e-6 of its scale (a channel mixed across seeds or a
    random draw differs by the order of the output itself; float64 rounding, amplified by
    batch statistics over few values, stays near 1e-7).
    """
    try:
        copies = [copy.deepcopy(model).double() for _ in range(seeds)]
    except Exception as error:  # noqa: BLE001 - a module that cannot be copied cannot be stacked either
        return f"the model cannot be copied ({error})"
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for index, replica in enumerate(copies[1:], start=1):
            for parameter in replica.parameters():
                parameter.add_(0.01 * index * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    try:
        stack = SeedStack(copies)
    except TypeError as error:
        return str(error)
    images = [torch.randn(8, in_channels, image_size, image_size, generator=generator, dtype=torch.float64) for _ in copies]
    for training in (True, False):
        stack.train(training)
        for replica in copies:
            replica.train(training)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # leaves the caller's random state as it was
            torch.manual_seed(0)
            joint = stack(torch.cat(images, dim=1))
            for index, replica in enumerate(copies):
                torch.manual_seed(0)
                alone = replica(images[index])
                scale = float(alone.abs().max()) if alone.numel() else 0.0
                if alone.shape != joint[:, index].shape or not torch.allclose(alone, joint[:, index], rtol=1e-6, atol=1e-6 * scale):
                    mode = "training" if training else "evaluation"
                    return f"its forward pass in {mode} mode is not the same per seed (it mixes channels or draws random numbers)"
    return None
