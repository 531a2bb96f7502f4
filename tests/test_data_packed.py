"""pack_images: array datasets convert, file datasets decode once into a cache that is never trusted blindly."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from genaug.data import DatasetError, RealDataset, load_dataset, pack_images
from genaug.data import packed as packed_module


@pytest.fixture(autouse=True)
def genaug_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("GENAUG_HOME", str(home))
    return home


@pytest.fixture
def decode_calls(monkeypatch):
    """Counts files decoded by the packer."""
    calls = []
    real = packed_module.load_rgb

    def counting(path, **kwargs):
        calls.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(packed_module, "load_rgb", counting)
    return calls


def _tree(root, count=3):
    colors = {}
    for i in range(count):
        for name, base in (("red", (200, 10, 10)), ("teal", (10, 150, 150))):
            color = (base[0], base[1] + i, base[2])
            path = root / "data" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12, 9), color).save(path)
            colors[f"{name}/{i}.png"] = color
    return load_dataset({"name": "folder", "root": root / "data", "val_fraction": 0.0, "test_fraction": 0.34}), colors


def test_array_datasets_become_chw_uint8_and_resize_only_when_asked():
    train = load_dataset("pocket_digits")
    packed = pack_images(train)
    assert packed.dtype == torch.uint8 and packed.shape == (100, 3, 16, 16)
    assert torch.equal(packed, torch.from_numpy(train.images).permute(0, 3, 1, 2))
    assert pack_images(train, 16).shape == (100, 3, 16, 16)
    flat = RealDataset("flat", "train", ["a"], np.zeros(2), ["x", "y"], images=np.full((2, 4, 6, 3), 77, np.uint8))
    resized = pack_images(flat, 8)
    assert resized.shape == (2, 3, 8, 8) and (resized == 77).all()


def test_file_datasets_are_packed_decoded_and_resized(genaug_home, decode_calls):
    train, colors = _tree(genaug_home.parent)
    packed = pack_images(train, 8)
    assert packed.shape == (len(train), 3, 8, 8) and packed.dtype == torch.uint8
    for row, image_id in zip(packed, train.ids):
        assert row[:, 4, 4].tolist() == list(colors[image_id])  # a solid colour survives resizing
    assert len(decode_calls) == len(train)
    assert len(list((genaug_home / "packed").glob("*.safetensors"))) == 1
    with pytest.raises(DatasetError, match="needs a size"):
        pack_images(train)


def test_a_cache_hit_returns_the_identical_tensor_without_decoding(genaug_home, decode_calls):
    train, _ = _tree(genaug_home.parent)
    first = pack_images(train, 8)
    decode_calls.clear()
    second = pack_images(train, 8)
    assert torch.equal(first, second) and decode_calls == []
    assert pack_images(train, 6).shape[-1] == 6 and len(decode_calls) == len(train)  # another size, another key


def test_a_corrupted_or_truncated_cache_file_is_rebuilt(genaug_home, decode_calls):
    train, _ = _tree(genaug_home.parent)
    original = pack_images(train, 8)
    (cache,) = (genaug_home / "packed").glob("*.safetensors")
    data = bytearray(cache.read_bytes())
    data[-5] ^= 0xFF  # one pixel byte flipped: safetensors itself cannot notice
    cache.write_bytes(bytes(data))
    decode_calls.clear()
    assert torch.equal(pack_images(train, 8), original) and len(decode_calls) == len(train)
    cache.write_bytes(cache.read_bytes()[:100])
    decode_calls.clear()
    assert torch.equal(pack_images(train, 8), original) and len(decode_calls) == len(train)
    decode_calls.clear()
    assert torch.equal(pack_images(train, 8), original) and decode_calls == []  # the rebuilt file is good


def test_a_changed_file_makes_a_new_cache(genaug_home):
    train, _ = _tree(genaug_home.parent)
    before = pack_images(train, 8)
    index = 0
    Image.new("RGB", (12, 9), (1, 2, 3)).save(train.paths[index])
    stat = os.stat(train.paths[index])
    os.utime(train.paths[index], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = pack_images(train, 8)
    assert after[index, :, 4, 4].tolist() == [1, 2, 3] and torch.equal(after[1:], before[1:])


def test_a_file_that_fails_to_decode_while_packing_is_named(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (4, 4), (9, 9, 9)).save(good)
    broken = tmp_path / "broken.bmp"
    Image.new("RGB", (40, 40), (9, 9, 9)).save(broken)
    broken.write_bytes(broken.read_bytes()[:200])  # BMP headers are fine; the pixels are cut
    dataset = RealDataset("manual", "train", ["a"], np.zeros(2), ["good", "broken"], paths=[good, broken])
    with pytest.raises(DatasetError, match=f"1 image files could not be decoded while packing:\n  {broken}: "):
        pack_images(dataset, 4)
