"""Wide ResNet WRN-d-k for 32x32-class inputs (Zagoruyko & Komodakis 2016; docs/methods/training-recipes.md).

Depth d = 6n + 4 (WRN-28: n = 4 blocks per stage); a 3x3 stem with 16 channels; three
stages of pre-activation blocks with 16k/32k/64k channels and strides 1/2/2, dropout
between the two convolutions of a block (default 0); final BN + ReLU; average pool;
linear. The pool is adaptive: on a 32x32 input the final map is 8x8 and it equals the
reference's avg pool 8, and smaller inputs work too. Convolutions have no bias and use
the reference initialisation (He normal, fan-out; BN weight 1, bias 0; linear bias 0).
"""

from __future__ import annotations

import torch
from torch import nn

from genaug.models.layers import MANIFOLD_MIX_LAYERS, ManifoldMix, make_stage, mix_at, scale_channels
from genaug.models.registry import MODELS

STEM_CHANNELS = 16
STAGE_CHANNELS = (16, 32, 64)
STAGE_STRIDES = (1, 2, 2)


class WideResNet(nn.Module):
    """WRN-depth-k; ``forward(x, mix=None)`` supports manifold mixup."""

    manifold_mix_layers = MANIFOLD_MIX_LAYERS

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int,
        dropout: float = 0.0,
        width: float = 1.0,
        in_channels: int = 3,
    ):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"Wide ResNet depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        stem = scale_channels(STEM_CHANNELS, width)
        channels = [scale_channels(c * widen_factor, width) for c in STAGE_CHANNELS]
        self.stem = nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False)
        stages, previous = [], stem
        for out_channels, stride in zip(channels, STAGE_STRIDES):
            stages.append(make_stage(previous, out_channels, blocks, stride, dropout))
            previous = out_channels
        self.stages = nn.ModuleList(stages)
        self.bn = nn.BatchNorm2d(previous)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, mix: ManifoldMix | None = None) -> torch.Tensor:
        out = self.stem(mix_at(mix, 0, x))
        for index, stage in enumerate(self.stages, start=1):
            out = mix_at(mix, index, stage(out))
        out = torch.relu(self.bn(out))
        return self.fc(torch.flatten(self.pool(out), 1))


@MODELS.register("wrn28_10")
def wrn28_10(num_classes: int, dropout: float = 0.0, width: float = 1.0, in_channels: int = 3) -> WideResNet:
    """WRN-28-10: widths 160/320/640."""
    return WideResNet(28, 10, num_classes, dropout=dropout, width=width, in_channels=in_channels)


@MODELS.register("wrn28_2")
def wrn28_2(num_classes: int, dropout: float = 0.0, width: float = 1.0, in_channels: int = 3) -> WideResNet:
    """WRN-28-2: widths 32/64/128."""
    return WideResNet(28, 2, num_classes, dropout=dropout, width=width, in_channels=in_channels)
