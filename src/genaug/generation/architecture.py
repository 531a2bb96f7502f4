"""Moved to :mod:`genaug.diffusion.architecture`; this name stays an alias of that module, so that earlier imports keep working."""

import sys

import genaug.diffusion.architecture

sys.modules[__name__] = genaug.diffusion.architecture
