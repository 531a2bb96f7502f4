"""``genaug data info``: classes with counts per split, packed size, skipped and ignored files,
UTF-8 JSON, flags, and the needs of an experiment's methods checked in one line each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from genaug.cli import app, main

runner = CliRunner()


def photos(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, count in {"葡萄": 12, "红 苹果": 9, "cat": 3}.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("a note", encoding="utf-8")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0")
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (root / "README").write_text("top", encoding="utf-8")
    return root


def test_data_info_lists_classes_counts_packed_size_ignored_files_and_flags(tmp_path):
    root = photos(tmp_path / "photos")
    result = runner.invoke(app, ["data", "info", "folder", f"root={root}", "image_size=24", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "葡萄" in result.output and "\\u" not in result.output  # UTF-8, not escaped
    info = json.loads(result.output)
    assert info["class_names"] == ["cat", "红 苹果", "葡萄"] and info["packed_size"] == 24
    for name, total in {"cat": 3, "红 苹果": 9, "葡萄": 12}.items():
        assert sum(info["splits"][split]["per_class"][name] for split in ("train", "val", "test")) == total
    assert {(Path(item["path"]).name, item["reason"]) for item in info["ignored"]} == {
        ("README", "not an image file (no suffix)"), ("notes.txt", "not an image file (.txt)"), (".DS_Store", "hidden file"),
    }
    assert [Path(item["path"]).name for item in info["skipped"]] == ["broken.jpg"]
    short = [name for name in info["class_names"] if info["splits"]["val"]["per_class"][name] < 2]
    assert short and [flag.split("'")[1] for flag in info["flags"]] == short
    assert all(flag.startswith("val: class ") and "fewer than 2" in flag for flag in info["flags"])

    table = runner.invoke(app, ["data", "info", "folder", f"root={root}", "image_size=24"], catch_exceptions=False)
    assert table.exit_code == 0
    text = " ".join(table.output.split())
    assert "packed at 24 x 24 px" in text and "红 苹果" in text and "notes.txt: not an image file (.txt)" in text
    assert f"flag: {' '.join(info['flags'][0].split())}" in text


def test_data_info_on_an_experiment_checks_what_its_methods_need(tmp_path, monkeypatch, capsys):
    root = photos(tmp_path / "photos")
    (root / "empty").mkdir()
    (root / "lone").mkdir()
    Image.new("RGB", (20, 30), (1, 2, 3)).save(root / "lone" / "only.png")
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({
        "name": "e", "dataset": {"name": "folder", "root": str(root), "image_size": 16},
        "train": {"recipe": "pocket", "augmentation": {"image_size": 64, "crop": 64}}, "seeds": [0],
        "stages": {"words": {"kind": "generate", "editor": {"name": "dafusion"}}},
        "arms": [{"name": "base"}, {"name": "words", "data": "words"}],
    }, allow_unicode=True), encoding="utf-8")  # fmt: skip
    monkeypatch.setattr("sys.argv", ["genaug", "data", "info", str(path)])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 problems:\n")
    problems = [line.strip() for line in err.splitlines() if line.strip().startswith(f"in {path}")]
    assert len(problems) == 2, err
    assert "1 class(es) have no training image: 'empty'" in problems[0]
    assert "train (recipe 'pocket') needs images of at least 64 px" in problems[1] and "images are 16 px" in problems[1]
    assert "lone" not in err  # DA-Fusion learns a class word from one image (it runs 1-shot)
