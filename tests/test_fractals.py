"""Fractal blending and the generated fractal bank (docs/methods/diffusemix.md)."""


import numpy as np
import pytest
import torch
from PIL import Image

from genaug.mixing import fractal_bank, fractal_blend, make_fractals
from genaug.mixing.fractals import fractal_cache_path, sample_fractals, save_fractal_pngs


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_fractal_blend_is_exact_at_alpha_0_2():
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    fractal = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(fractal_blend(image, fractal, alpha=0.2), (1 - 0.2) * image + 0.2 * fractal)
    constant = fractal_blend(torch.full((3, 4, 4), 0.5), torch.ones(3, 4, 4))
    assert torch.allclose(constant, torch.full((3, 4, 4), 0.6))


def test_fractal_is_resized_and_uint8_brought_to_the_image_scale():
    image = torch.zeros(1, 3, 8, 8)
    fractal = torch.full((3, 64, 64), 255, dtype=torch.uint8)  # a bank entry
    assert torch.allclose(fractal_blend(image, fractal, 0.2), torch.full((1, 3, 8, 8), 0.2))
    pixels = torch.full((3, 8, 8), 100, dtype=torch.uint8)
    out = fractal_blend(pixels, fractal, 0.2)
    assert out.dtype == torch.uint8 and torch.all(out == 131)  # 0.8 * 100 + 0.2 * 255 = 131
    per_sample = fractal_blend(torch.zeros(2, 1, 4, 4), torch.ones(3, 4, 4), torch.tensor([0.2, 0.3]))
    assert per_sample.shape == (2, 1, 4, 4)
    assert torch.allclose(per_sample[:, 0, 0, 0], torch.tensor([0.2, 0.3]))


def test_make_fractals_shape_and_determinism_per_index():
    bank = make_fractals(10, 32, seed=3)
    assert bank.shape == (10, 3, 32, 32) and bank.dtype == torch.uint8
    assert torch.equal(bank, make_fractals(10, 32, seed=3))
    for i in (0, 4, 9):
        assert torch.equal(bank[i], make_fractals(i + 1, 32, seed=3)[i])
    assert not torch.equal(bank, make_fractals(10, 32, seed=4))
    assert len({bytes(f.numpy()) for f in bank}) == 10


def test_fractals_are_not_degenerate():
    bank = make_fractals(20, 64, seed=0)
    covered = (bank.amax(dim=1) > 0).float().mean(dim=(1, 2))
    assert torch.all(covered > 0.02) and torch.all(covered < 0.8)
    assert bank.float().std(dim=(2, 3)).mean() > 10  # coloured, not flat


def test_bank_cache_round_trip_and_rebuild_of_a_torn_file(home):
    bank = fractal_bank(n=6, size=16, seed=2)
    path = fractal_cache_path(6, 16, 2)
    assert path == home / "fractals" / "6_16_2.safetensors" and path.is_file()
    assert torch.equal(bank, make_fractals(6, 16, seed=2))
    stamp = path.stat().st_mtime_ns
    assert torch.equal(fractal_bank(n=6, size=16, seed=2), bank)
    assert path.stat().st_mtime_ns == stamp  # read, not remade
    path.write_bytes(b"torn")
    assert torch.equal(fractal_bank(n=6, size=16, seed=2), bank)
    assert [p.name for p in path.parent.iterdir()] == ["6_16_2.safetensors"]  # no temp left


def test_folder_bank_and_png_export(tmp_path):
    bank = make_fractals(3, 16, seed=0)
    paths = save_fractal_pngs(bank, tmp_path / "pngs")
    assert [p.name for p in paths] == ["fractal_00000.png", "fractal_00001.png", "fractal_00002.png"]
    assert torch.equal(fractal_bank(size=16, folder=tmp_path / "pngs"), bank)
    Image.new("L", (40, 20), 128).save(tmp_path / "pngs" / "grey.JPG")
    loaded = fractal_bank(size=8, folder=tmp_path / "pngs")
    assert loaded.shape == (4, 3, 8, 8) and loaded.dtype == torch.uint8
    assert fractal_bank(n=2, size=8, folder=tmp_path / "pngs").shape == (2, 3, 8, 8)
    with pytest.raises(ValueError):
        fractal_bank(size=8, folder=tmp_path)  # no images at its top level


def test_sample_fractals_draws_uniformly():
    bank = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 3, 2, 2)
    drawn = sample_fractals(bank, 5000, torch.Generator().manual_seed(0))
    counts = np.bincount(drawn[:, 0, 0, 0].numpy(), minlength=5)
    assert drawn.shape == (5000, 3, 2, 2)
    assert np.all(np.abs(counts / 5000 - 0.2) < 0.03)
    again = sample_fractals(bank, 7, np.random.default_rng(1))
    assert torch.equal(again, sample_fractals(bank, 7, np.random.default_rng(1)))
