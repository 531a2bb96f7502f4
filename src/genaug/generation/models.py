"""Moved to :mod:`genaug.diffusion.models`; this name stays an alias of that module, so that earlier imports keep working."""

import sys

import genaug.diffusion.models

sys.modules[__name__] = genaug.diffusion.models
