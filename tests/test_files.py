"""The one atomic write and the one safetensors save (genaug.files)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from genaug.files import atomic_path, save_safetensors, write_bytes_atomic, write_json_atomic, write_text_atomic


def test_atomic_writes_replace_the_file_whole_and_leave_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    write_text_atomic(path, "old")
    write_json_atomic(path, {"x": math.nan, "p": tmp_path, "n": 1})
    assert json.loads(path.read_text()) == {"x": None, "p": str(tmp_path), "n": 1}
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01", fsync=True)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(path, suffix=".png") as tmp:
            assert tmp.name.startswith(".image.tmp-") and tmp.suffix == ".png"
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["image.png"]


def test_save_safetensors_writes_cpu_contiguous_tensors_with_metadata(tmp_path):
    weights = torch.arange(6.0).reshape(2, 3).t()  # not contiguous
    path = save_safetensors(tmp_path / "sub" / "w.safetensors", {"w": weights}, {"epoch": "3"})
    assert torch.equal(load_file(str(path))["w"], weights)
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"epoch": "3"}
    assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"]
