"""Work-item ids stay unique for any file names a dataset accepts, and stable for ASCII names."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from genaug.generation.items import sanitize_id, unique_ids


def sha8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def test_ascii_names_keep_the_ids_they_always_had():
    # Seeds derive from these ids: they must not move (the demo's pocket ids, folder paths).
    assert sanitize_id("pocket/0123") == "pocket_0123"
    assert sanitize_id("train/cat/001.png") == "train_cat_001.png"
    assert sanitize_id("cat/IMG 0001 (copy).jpg") == "cat_IMG_0001_copy_.jpg"
    assert sanitize_id("../x") == "x"


def test_names_that_lose_characters_get_a_digest_of_the_original():
    assert sanitize_id("cat/猫3.jpg") == f"cat_3.jpg-{sha8('cat/猫3.jpg')}"
    assert sanitize_id("cat/狗3.jpg") == f"cat_3.jpg-{sha8('cat/狗3.jpg')}"
    assert sanitize_id("猫") == sha8("猫")  # nothing left of the name: the digest alone
    assert sanitize_id("ελιά/é" + "a" * 300).endswith("-" + sha8("ελιά/é" + "a" * 300))
    assert len(sanitize_id("é" + "a" * 300)) == 150


def test_ascii_names_that_meet_after_sanitising_are_separated():
    texts = ["cat/a_b.png", "cat/a/b.png", "cat/c.png", "cat/a b.png"]
    ids = unique_ids(texts)
    assert ids == [f"cat_a_b.png-{sha8(t)}" for t in texts[:2]] + ["cat_c.png", f"cat_a_b.png-{sha8(texts[3])}"]
    assert len(set(ids)) == 4


@pytest.mark.slow
def test_a_folder_with_non_ascii_names_generates_every_image(tmp_path, monkeypatch):
    """``cat/猫3.jpg`` and ``cat/狗3.jpg`` used to share an id and end the run in a traceback."""
    from genaug.config import GenerateConfig
    from genaug.generation import generate
    from genaug.manifest import read_manifest

    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(0)
    names = {"cat": ["猫3.jpg", "狗3.jpg", "3.jpg", "a_b.jpg", "a/b.jpg"], "狗": ["1.jpg", "2.jpg"]}
    data = tmp_path / "data"
    for folder, files in names.items():
        for name in [*files, "../../test/" + folder + "/t.jpg"]:
            path = data / "train" / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    config = GenerateConfig.model_validate({
        "dataset": {"name": "folder", "root": str(data), "image_size": 16, "labels_per_class": "all", "val_fraction": 0.0},
        "output": str(tmp_path / "set"), "regime": "single", "prompts": ["make it red on blue"],
        "editor": {"name": "instruct", "steps": 2}, "engine": {"batch_size": 8, "progress": False},
    })  # fmt: skip
    report = generate(config)
    records = read_manifest(tmp_path / "set")
    assert report.made == len(records) == 7
    assert len({record.id for record in records}) == 7
    sources = sorted(f"train/{folder}/{name}" for folder, files in names.items() for name in files)
    assert sorted(source for record in records for source in record.source_ids) == sources
    by_source = {record.source_ids[0]: record.id for record in records}
    assert by_source["train/cat/3.jpg"] == "train_cat_3.jpg-instruct-p0"  # unchanged for a plain name
    assert by_source["train/cat/猫3.jpg"] == f"train_cat_3.jpg-{sha8('train/cat/猫3.jpg')}-instruct-p0"
    assert by_source["train/cat/a/b.jpg"] == f"train_cat_a_b.jpg-{sha8('train/cat/a/b.jpg')}-instruct-p0"
