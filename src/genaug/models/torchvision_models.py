"""The registered entrypoints of the architectures built on torchvision's (:mod:`genaug.models.resnet`).

torchvision is imported when one is built (about 2 s a process; the pocket and CIFAR
recipes never need it), so listing the models does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genaug.models.registry import MODELS

if TYPE_CHECKING:
    from genaug.models.resnet import ScaledResNet


@MODELS.register("resnet50")
def resnet50(num_classes: int, width: float = 1.0, in_channels: int = 3) -> "ScaledResNet":
    """ResNet-50 (bottleneck blocks (3, 4, 6, 3)), torchvision's architecture, untrained."""
    from genaug.models.resnet import Bottleneck, ScaledResNet

    return ScaledResNet(Bottleneck, [3, 4, 6, 3], num_classes, width=width, in_channels=in_channels)
