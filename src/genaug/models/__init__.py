"""Classifiers and the ``create_model`` registry (docs/README.md; docs/methods/training-recipes.md).

>>> model = create_model("preactresnet18", num_classes=100)
>>> MODELS.names("wrn*")
['wrn28_10', 'wrn28_2']

Every model accepts ``width`` (channel multiplier for small runs) and ``in_channels``, and
its ``forward(x, mix=None)`` takes a :class:`ManifoldMix` for manifold mixup.
"""

from genaug.lazy import lazy_exports
from genaug.models.layers import MANIFOLD_MIX_LAYERS, ManifoldMix, PreActBlock, scale_channels
from genaug.models.preact_resnet import PreActResNet, preactresnet18, preactresnet34
from genaug.models.registry import MODELS, create_model
from genaug.models.wide_resnet import WideResNet, wrn28_2, wrn28_10

__all__ = [
    "MANIFOLD_MIX_LAYERS",
    "ManifoldMix",
    "PreActBlock",
    "PreActResNet",
    "ScaledResNet",
    "WideResNet",
    "MODELS",
    "create_model",
    "preactresnet18",
    "preactresnet34",
    "resnet50",
    "scale_channels",
    "wrn28_10",
    "wrn28_2",
]

# torchvision's ResNet-50 imports torchvision: on first use only.
__getattr__, __dir__ = lazy_exports(__name__, {
    "genaug.models.resnet": ("ScaledResNet",),
    "genaug.models.torchvision_models": ("resnet50",),
})
