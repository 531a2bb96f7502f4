"""Reusing the images of earlier sets: an item whose input key an earlier set recorded is copied
from it instead of being made again (the generate engine's and the mix stage's incremental passes).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from genaug.manifest import SampleRecord, SetWriter, image_readable, read_manifest, record_file

__all__ = ["copy_from_donors", "donor_name", "find_donors"]


def find_donors(keys: dict[str, str], sets: Sequence[Path]) -> dict[str, tuple[Path, SampleRecord]]:
    """For each item id of ``keys``, the first of ``sets`` holding a record of that id and input
    key whose image is readable, with the record (earlier sets without keys give nothing)."""
    if not keys:
        return {}
    found: dict[str, tuple[Path, SampleRecord]] = {}
    for donor in sets:
        if not any(donor.glob("manifest*.jsonl")):
            continue
        try:
            records = read_manifest(donor)
        except (OSError, ValueError):
            continue  # a damaged earlier set is simply not used
        for record in records:
            if record.id in found or keys.get(record.id) is None or record.params.get("input_key") != keys[record.id]:
                continue
            if image_readable(record_file(donor, record)):
                found[record.id] = (donor, record)
    return found


def copy_from_donors(
    items: Sequence, donors: dict[str, tuple[Path, SampleRecord]], writer: SetWriter, batch_size: int
) -> None:
    """Copy each item's image and record from its earlier set, ``batch_size`` at a time, as
    :meth:`SetWriter.add_batch` writes made images (images synced before their records).
    The record is the earlier one with this set's image path and ``params.reused_from`` (and the
    item's own ``embedding``: where its vector is in this run's samples table)."""
    from PIL import Image

    for start in range(0, len(items), batch_size):
        entries = []
        for item in items[start : start + batch_size]:
            donor, record = donors[item.id]
            with Image.open(record_file(donor, record)) as image:
                pixels = np.array(image.convert("RGB"))
            params = {**record.params, "reused_from": donor_name(donor, writer.set_dir)}
            embedding = getattr(item, "extra", {}).get("embedding", record.embedding)
            copied = replace(record, path=writer.image_path(item.id, item.class_name), params=params, embedding=embedding)
            entries.append((copied, pixels))
        writer.add_batch(entries)


def donor_name(donor: Path, set_dir: Path) -> str:
    """An earlier set as ``params.reused_from`` names it: its folder relative to the folder it
    shares with this set (``generate-<key>``, ``mix-<key>/concat``, ``sdi-<key>/generated/gaussian``)."""
    donor, here = Path(os.path.abspath(donor)), Path(os.path.abspath(set_dir))
    common = Path(os.path.commonpath([donor, here]))
    return donor.relative_to(common).as_posix() if donor != common else donor.name
