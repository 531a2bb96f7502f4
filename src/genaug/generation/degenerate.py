"""Moved to :mod:`genaug.degenerate`; this name stays an alias of that module, so that earlier imports keep working."""

import sys

import genaug.degenerate

sys.modules[__name__] = genaug.degenerate
