"""torchvision's ResNet-50, from scratch with a new classifier (docs/methods/training-recipes.md, SDI's recipe).

At ``width=1`` and three input channels the model *is* torchvision's
``resnet50(weights=None, num_classes=...)``: the same modules, state-dict keys,
initialisation and 25,557,032 parameters at 1000 classes. For small runs ``width``
multiplies every channel count (stem, the planes of every stage, hence the bottleneck
and expansion widths, and the classifier input), and ``in_channels`` replaces the stem's
input channels; the replaced layers get torchvision's initialisation.

Its registered entrypoint ``resnet50`` is in :mod:`genaug.models.torchvision_models`, which
imports this module (and torchvision) only when a ResNet-50 is built.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from genaug.models.layers import MANIFOLD_MIX_LAYERS, ManifoldMix, mix_at, scale_channels

STEM_CHANNELS = 64


class ScaledResNet(ResNet):
    """torchvision's ResNet with a channel multiplier; ``forward(x, mix=None)`` supports manifold mixup."""

    manifold_mix_layers = MANIFOLD_MIX_LAYERS

    def __init__(
        self,
        block: type[Bottleneck],
        layers: list[int],
        num_classes: int,
        width: float = 1.0,
        in_channels: int = 3,
    ):
        # Read by _make_layer, which ResNet.__init__ calls; a plain float is safe to set
        # before nn.Module.__init__.
        self.width = width
        super().__init__(block, layers, num_classes=num_classes)
        stem = scale_channels(STEM_CHANNELS, width)
        if (stem, in_channels) != (STEM_CHANNELS, 3):
            self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
            self.bn1 = nn.BatchNorm2d(stem)
        if width != 1.0:
            self.fc = nn.Linear(scale_channels(512, width) * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == STEM_CHANNELS and self.inplanes == STEM_CHANNELS:
            # The first stage reads the (scaled) stem, which __init__ replaces afterwards.
            self.inplanes = scale_channels(STEM_CHANNELS, self.width)
        return super()._make_layer(block, scale_channels(planes, self.width), blocks, stride, dilate)

    def forward(self, x: torch.Tensor, mix: ManifoldMix | None = None) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(mix_at(mix, 0, x)))))
        x = mix_at(mix, 1, self.layer1(x))
        x = mix_at(mix, 2, self.layer2(x))
        x = self.layer4(self.layer3(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))

