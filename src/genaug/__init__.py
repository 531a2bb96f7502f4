"""genaug: generative dataset augmentation.

Grow an image-classification training set with diffusion-model images, mix and filter
them, train classifiers on real + synthetic data under controlled budgets, and report
which augmentation helped.
"""

__version__ = "0.1.0"
