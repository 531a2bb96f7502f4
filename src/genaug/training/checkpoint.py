"""Moved to :mod:`genaug.checkpoint`; this name stays an alias of that module, so that earlier imports keep working."""

import sys

import genaug.checkpoint

sys.modules[__name__] = genaug.checkpoint
