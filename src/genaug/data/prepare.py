"""``prepare_dataset``: download and extract a dataset where that is possible (``genaug data prepare``)."""

from __future__ import annotations

from pathlib import Path

from genaug.data.base import DatasetError
from genaug.data.registry import DATASETS, dataset_spec


def prepare_dataset(name: str, root: str | Path) -> Path:
    """Download and extract dataset ``name`` under ``root``; returns the folder to use as its root.

    Needs network access; does nothing when the files are already there (CIFAR). Datasets
    without a downloader raise an error saying where to put the files.
    """
    spec = dataset_spec(name)
    if spec.prepare is None:
        preparable = [known for known in DATASETS.names() if dataset_spec(known).prepare is not None]
        raise DatasetError(
            f"'{name}' has no automatic download; place it as {spec.root_hint or 'described in its loader'} "
            f"(downloadable: {', '.join(preparable)})"
        )
    return spec.prepare(Path(root).expanduser())
