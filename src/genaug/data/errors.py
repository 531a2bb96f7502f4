"""The errors of loading a real dataset (below :mod:`genaug.data.base` and :mod:`genaug.data.images`, which both raise them)."""

from __future__ import annotations

__all__ = ["DatasetError", "MissingDataError"]


class DatasetError(ValueError):
    """A real dataset that cannot be loaded as asked; the message names the file or field."""


class MissingDataError(DatasetError, FileNotFoundError):
    """A file or folder the dataset needs is not where it is expected; the message names the path."""
