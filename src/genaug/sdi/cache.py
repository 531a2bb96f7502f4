"""Moved to :mod:`genaug.diffusion.cache`; this name stays an alias of that module, so that earlier imports keep working."""

import sys

import genaug.diffusion.cache

sys.modules[__name__] = genaug.diffusion.cache
