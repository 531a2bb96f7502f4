"""Moved to :mod:`genaug.runtime`; this name stays an alias of that module, so that earlier imports keep working."""

import sys

import genaug.runtime

sys.modules[__name__] = genaug.runtime
