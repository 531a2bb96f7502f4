"""Moved to :mod:`genaug.diffusion.frozen`; this name stays an alias of that module, so that earlier imports keep working."""

import sys

import genaug.diffusion.frozen

sys.modules[__name__] = genaug.diffusion.frozen
