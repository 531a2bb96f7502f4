"""Shared by the SDI and filter tests: tiny model folders (built once per process), small data."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from genaug.config import SdiConfig
from genaug.data.base import RealDataset
from genaug.pocket.render import DIGIT_NAMES, pocket_pools, styled_digits


@lru_cache(maxsize=1)
def tiny_models() -> dict[str, Path]:
    """Random tiny ``sd`` and ``clip`` folders (saved, loaded back by the code under test) whose
    tokenizer has SD's 77 positions and every word of SDI's prompts as one token."""
    from genaug.pocket.tiny import SD_MAX_LENGTH, make_tiny_pocket
    from genaug.sdi.conditioning import NEGATIVE_PROMPT, SDI_PROMPT

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="genaug-sdi-tiny-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return make_tiny_pocket(root, models=("sd", "clip"), extra_texts=(SDI_PROMPT, NEGATIVE_PROMPT), model_max_length=SD_MAX_LENGTH)


def digits(per_class: int, pool: str = "train", offset: int = 0, classes: int = 10) -> RealDataset:
    """``per_class`` styled pocket digits of each of the first ``classes`` classes from a pocket pool."""
    indices = pocket_pools()[pool]
    labels = styled_digits(indices)[1]
    chosen = np.sort(np.concatenate([indices[labels == c][offset : offset + per_class] for c in range(classes)]))
    images, labels, _, _ = styled_digits(chosen)
    return RealDataset(
        name="pocket_digits", split=pool, class_names=list(DIGIT_NAMES), labels=labels,
        ids=[f"pocket/{int(i):04d}" for i in chosen], images=images,
    )


def sdi_config(work_dir: Path, **sections) -> SdiConfig:
    """An SDI config on the tiny models: projector trained on the ``train`` pool only, small and quiet."""
    models = tiny_models()
    train = {"preset": "pocket", "pools": ["train"], "hidden": 32, "batch_size": 8, "epochs": 1, "progress": False,
             **sections.pop("train", {})}
    generate = {"steps": 2, "engine": {"batch_size": 8, "progress": False}, **sections.pop("generate", {})}
    return SdiConfig(work_dir=work_dir, clip=str(models["clip"]), model=str(models["sd"]), device="cpu",
                     train=train, generate=generate, **sections)
