"""Moved to :mod:`genaug.diffusion.conditioning`; this name stays an alias of that module, so that earlier imports keep working."""

import sys

import genaug.diffusion.conditioning

sys.modules[__name__] = genaug.diffusion.conditioning
