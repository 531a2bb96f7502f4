"""Pieces shared by the classifier families: channel scaling and the manifold-mixup hook."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: Where a model can mix: 0 = the input, 1 = after stage 1, 2 = after stage 2 (docs/methods/online-mixing.md).
MANIFOLD_MIX_LAYERS = (0, 1, 2)

#: Scaled channel counts never drop below this, so tiny widths still train.
MIN_CHANNELS = 8


def scale_channels(channels: int, width: float) -> int:
    """``max(8, round(channels * width))``; exactly ``channels`` at width 1."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    if width == 1.0:
        return channels
    return max(MIN_CHANNELS, round(channels * width))


@dataclass(frozen=True)
class ManifoldMix:
    """Mix a batch's hidden state at one point of the forward pass.

    ``h -> lam * h + (1 - lam) * h[perm]``, applied at ``layer`` (0 = input,
    1 = after stage 1, 2 = after stage 2) and nowhere else.
    """

    layer: int
    lam: float
    perm: torch.Tensor

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.lam * h + (1.0 - self.lam) * h[self.perm.to(h.device)]

    def at(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        """``self(h)`` if this is the mixing point, else ``h`` unchanged."""
        return self(h) if layer == self.layer else h


def mix_at(mix: ManifoldMix | None, layer: int, h: torch.Tensor) -> torch.Tensor:
    """Apply ``mix`` at ``layer`` if one was given (models call this at each mixing point)."""
    return h if mix is None else mix.at(layer, h)


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 + shortcut.

    The 1x1 conv shortcut, when the shape changes, reads the *pre-activated* input
    (He et al. 2016, identity mappings); otherwise the shortcut is the raw input. The
    same block serves PreActResNet (no dropout) and Wide ResNet (dropout between the
    convolutions, Zagoruyko & Komodakis 2016). Convolutions have no bias.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = torch.relu(self.bn2(out))
        if self.dropout > 0:
            out = nn.functional.dropout(out, self.dropout, self.training)
        return self.conv2(out) + shortcut


def make_stage(in_channels: int, out_channels: int, blocks: int, stride: int, dropout: float = 0.0) -> nn.Sequential:
    """``blocks`` pre-activation blocks; only the first changes resolution and width."""
    layers = [PreActBlock(in_channels, out_channels, stride, dropout)]
    layers += [PreActBlock(out_channels, out_channels, 1, dropout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)
