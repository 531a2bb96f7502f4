"""Feathered halves and random rectangles (docs/methods/diffusemix.md)."""

import numpy as np
import pytest
import torch

import genaug.mixing as mixing
from genaug.mixing import feathered_halves, random_rect_mask, rect_mix
from genaug.mixing.concat import (
    feathered_mask,
    mask_coverage,
    random_orientation,
    random_rect_masks,
    random_rects,
    rects_to_mask,
)


def test_feathered_mask_32_band_20_element_by_element():
    mask = feathered_mask(32, 20)
    expected = torch.cat([torch.zeros(6), torch.linspace(0, 1, 20), torch.ones(6)])
    assert mask.shape == (32,)
    assert torch.equal(mask, expected)
    assert mask[5] == 0 and mask[6] == 0 and mask[25] == 1 and mask[26] == 1


def test_feathered_mask_clamps_band_to_length_and_band_zero_is_a_hard_cut():
    assert torch.equal(feathered_mask(16, 20), torch.linspace(0, 1, 16))
    assert torch.equal(feathered_mask(8, 0), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1.0]))
    assert torch.equal(feathered_mask(7, 3), torch.tensor([0, 0, 0, 0.5, 1, 1, 1]))


def test_original_on_top_when_vertical_and_on_the_left_when_horizontal():
    original = torch.zeros(1, 3, 32, 32)
    edited = torch.ones(1, 3, 32, 32)
    vertical = feathered_halves(original, edited, "vertical")
    ramp = feathered_mask(32, 20)
    assert torch.equal(vertical[0, 1, :, 5], ramp)  # varies down the rows
    assert torch.all(vertical[0, :, :6] == 0) and torch.all(vertical[0, :, 26:] == 1)
    horizontal = feathered_halves(original, edited, "horizontal")
    assert torch.equal(horizontal[0, 2, 9, :], ramp)  # varies along the columns
    assert torch.all(horizontal[0, :, :, :6] == 0) and torch.all(horizontal[0, :, :, 26:] == 1)


def test_constant_images_give_out_equal_to_the_formula():
    original = torch.full((3, 32, 32), 0.2)
    edited = torch.full((3, 32, 32), 0.7)
    out = feathered_halves(original, edited, "vertical")
    mask = feathered_mask(32, 20).view(1, 32, 1)
    assert torch.equal(out, (1 - mask) * original + mask * edited)
    assert out[0, 0, 0] == pytest.approx(0.2) and out[0, 31, 0] == pytest.approx(0.7)
    assert out[0, 15, 0] == pytest.approx(0.2 + 0.5 * float(mask[0, 15, 0]))


def test_per_sample_orientations_and_uint8_images():
    original = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    edited = torch.full((2, 1, 8, 8), 200, dtype=torch.uint8)
    out = feathered_halves(original, edited, ["vertical", "horizontal"], band=0)
    assert out.dtype == torch.uint8
    assert torch.all(out[0, 0, :4] == 0) and torch.all(out[0, 0, 4:] == 200)
    assert torch.all(out[1, 0, :, :4] == 0) and torch.all(out[1, 0, :, 4:] == 200)
    as_tensor = feathered_halves(original, edited, torch.tensor([True, False]), band=0)
    assert torch.equal(as_tensor, out)
    with pytest.raises(ValueError):
        feathered_halves(original, edited, ["vertical"])
    with pytest.raises(ValueError):
        feathered_halves(original, edited, "diagonal")


def test_random_orientation_is_a_fair_coin():
    names = random_orientation(np.random.default_rng(0), n=4000)
    assert set(names) == {"horizontal", "vertical"}
    assert abs(names.count("vertical") / 4000 - 0.5) < 0.03
    assert random_orientation(torch.Generator().manual_seed(1)) in ("horizontal", "vertical")


def test_rectangles_do_not_overlap_and_areas_respect_the_clip_bounds():
    rng = np.random.default_rng(0)
    h = w = 32
    low, high = 0.05 * h * w, 0.5 * 0.5 * h * w
    for _ in range(300):
        rects = random_rects(h, w, 0.5, rng)
        assert 1 <= len(rects) <= 5
        mask = rects_to_mask(h, w, rects)
        # disjoint: the painted pixels are exactly the sum of the areas
        assert int(mask.sum()) == sum(r.area for r in rects)
        for r in rects:
            assert 0 <= r.top and r.top + r.height <= h and 0 <= r.left and r.left + r.width <= w
            slack = (r.height + r.width) / 2 + 0.25  # rounding each side to whole pixels
            assert low - slack <= r.area <= high + slack


def test_random_rect_mask_is_binary_and_reproducible():
    mask = random_rect_mask(32, 32, 0.5, np.random.default_rng(3))
    assert mask.shape == (32, 32) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mask, random_rect_mask(32, 32, 0.5, np.random.default_rng(3)))
    from_torch = random_rect_mask(32, 32, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(from_torch, random_rect_mask(32, 32, 0.5, torch.Generator().manual_seed(3)))


def test_mean_realised_coverage_at_32x32_is_about_0_35():
    # Measured: 0.358 over 2000 draws (seed 0), 0.356-0.361 over seeds 1-4; std of one
    # draw 0.106, so the mean's standard error is 0.0024.
    masks = random_rect_masks(2000, 32, 32, 0.5, np.random.default_rng(0))
    coverage = mask_coverage(masks)
    assert coverage.shape == (2000,)
    assert float(coverage.mean()) == pytest.approx(0.358, abs=0.01)
    assert float(coverage.mean()) < 0.5


def test_rect_mix_takes_the_edit_inside_the_mask():
    original = torch.zeros(2, 3, 4, 4)
    edited = torch.ones(2, 3, 4, 4)
    mask = torch.zeros(2, 4, 4)
    mask[0, :2, :2] = 1
    out = rect_mix(original, edited, mask)
    assert torch.equal(out[:, 0], mask) and torch.equal(out[:, 2], mask)
    assert mask_coverage(mask[0]) == 0.25


def test_package_exports_and_lazy_online_names():
    for name in ["feathered_halves", "random_rect_mask", "rect_mix", "fractal_blend", "make_fractals",
                 "fractal_bank", "patch_grid", "shb_mask", "hybrid_blend"]:
        assert callable(getattr(mixing, name))
    assert {"create_mixer", "MIXERS", "OnlineMixer"} <= set(dir(mixing))
    with pytest.raises(AttributeError):
        mixing.no_such_thing
