"""Shared by the generation and mix-stage tests: a small pocket dataset and fake renderers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from genaug.data.base import RealDataset
from genaug.manifest import read_manifest, record_file
from genaug.pocket.render import DIGIT_NAMES, styled_digits
from genaug.pocket.tiny import make_tiny_pocket


def pocket_dataset(n: int = 12) -> RealDataset:
    """``n`` styled pocket digits with ids shaped like the real loader's (``pocket/0003``)."""
    images, labels, _, _ = styled_digits(np.arange(n))
    return RealDataset(
        name="pocket_digits", split="train", class_names=list(DIGIT_NAMES), labels=labels,
        ids=[f"pocket/{i:04d}" for i in range(n)], images=images,
    )


class SeedRenderer:
    """A renderer without a model: image = uniform noise from the seed (so pixels identify the seed)."""

    method = "fake"

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.calls: list[int] = []

    def render(self, items: Sequence[Any], seeds: Sequence[int]) -> np.ndarray:
        self.calls.append(len(items))
        return np.stack([np.random.default_rng(s).integers(20, 230, (self.size, self.size, 3), dtype=np.uint8) for s in seeds])

    def params(self) -> dict[str, Any]:
        return {"editor": "fake"}

    def rate_key(self) -> dict[str, Any]:
        return {"editor": "fake", "size": self.size}


def set_pixels(set_dir: str | Path) -> dict[str, np.ndarray]:
    """id -> pixels of every record of a set."""
    from PIL import Image

    return {r.id: np.asarray(Image.open(record_file(set_dir, r))) for r in read_manifest(set_dir)}


def check_set_integrity(set_dir: str | Path) -> None:
    """No duplicate or orphan records, no orphan or temporary image files."""
    set_dir = Path(set_dir)
    lines = [line for path in set_dir.glob("manifest*.jsonl") for line in path.read_text().splitlines() if line.strip()]
    records = read_manifest(set_dir)
    assert len(lines) == len(records), "duplicate records"
    paths = {r.path for r in records}
    for record in records:
        assert record_file(set_dir, record).is_file(), f"record {record.id} without its image"
    on_disk = {p.relative_to(set_dir).as_posix() for p in (set_dir / "images").rglob("*.png") if not p.name.startswith(".")}
    assert on_disk == paths, f"orphan images: {sorted(on_disk - paths)[:5]}"
    assert not list((set_dir / "images").rglob(".*tmp*")), "temporary files left"


def tiny_ip2p_script(tmp_path: Path, script: str) -> tuple[str, Path, dict[str, str]]:
    """A tiny pocket-architecture InstructPix2Pix in ``tmp_path``, ``script`` written there
    (``{tests}`` filled with this folder), and an environment for running it in a fresh
    single-process Python: its own GENAUG_HOME, one thread, no torchrun variables."""
    model = str(make_tiny_pocket(tmp_path, models=["ip2p"])["ip2p"])
    path = tmp_path / "generate_script.py"
    path.write_text(script.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "GENAUG_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return model, path, env
