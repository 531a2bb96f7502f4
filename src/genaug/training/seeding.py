"""Moved to :mod:`genaug.seeds`; this name stays an alias of that module, so that earlier imports keep working."""

import sys

import genaug.seeds

sys.modules[__name__] = genaug.seeds
