"""PreActResNet for 32x32-class inputs (docs/methods/training-recipes.md), the DiffuseMix study's classifier.

CIFAR stem (3x3 conv, 64 channels, stride 1, no max-pool); four stages of pre-activation
blocks with 64/128/256/512 channels and strides 1/2/2/2; **no** final BN-ReLU (as in the
reference code the study inherits from PuzzleMix / Manifold Mixup); global average pool;
linear. PyTorch's default initialisation, as the reference. ``preactresnet18`` with 100
classes has exactly 11,217,316 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from genaug.models.layers import MANIFOLD_MIX_LAYERS, ManifoldMix, make_stage, mix_at, scale_channels
from genaug.models.registry import MODELS

STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)


class PreActResNet(nn.Module):
    """Pre-activation ResNet with basic blocks; ``forward(x, mix=None)`` supports manifold mixup."""

    manifold_mix_layers = MANIFOLD_MIX_LAYERS

    def __init__(self, blocks: tuple[int, int, int, int], num_classes: int, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        channels = [scale_channels(c, width) for c in STAGE_CHANNELS]
        self.stem = nn.Conv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False)
        stages, previous = [], channels[0]
        for out_channels, stride, count in zip(channels, STAGE_STRIDES, blocks):
            stages.append(make_stage(previous, out_channels, count, stride))
            previous = out_channels
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)  # = avg pool 4 on the 4x4 map of a 32x32 input
        self.fc = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor, mix: ManifoldMix | None = None) -> torch.Tensor:
        out = self.stem(mix_at(mix, 0, x))
        for index, stage in enumerate(self.stages, start=1):
            out = mix_at(mix, index, stage(out))
        return self.fc(torch.flatten(self.pool(out), 1))


@MODELS.register("preactresnet18")
def preactresnet18(num_classes: int, width: float = 1.0, in_channels: int = 3) -> PreActResNet:
    """PreActResNet-18: blocks (2, 2, 2, 2)."""
    return PreActResNet((2, 2, 2, 2), num_classes, width=width, in_channels=in_channels)


@MODELS.register("preactresnet34")
def preactresnet34(num_classes: int, width: float = 1.0, in_channels: int = 3) -> PreActResNet:
    """PreActResNet-34: blocks (3, 4, 6, 3)."""
    return PreActResNet((3, 4, 6, 3), num_classes, width=width, in_channels=in_channels)
