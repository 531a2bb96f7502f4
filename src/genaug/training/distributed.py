"""Moved to :mod:`genaug.distributed`; this name stays an alias of that module, so that earlier imports keep working."""

import sys

import genaug.distributed

sys.modules[__name__] = genaug.distributed
