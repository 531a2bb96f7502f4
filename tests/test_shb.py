"""The model-free parts of semantic hybrid blending (METHODS.md 3)."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from genaug.mixing import hybrid_blend, patch_grid, shb_mask
from genaug.mixing.shb import grid_shape, normalise_grid, scale_patch


def test_patch_grid_at_224_has_13_patches_per_axis_ending_at_the_edge():
    boxes = patch_grid(224, 224, patch=32, stride=16)
    assert len(boxes) == 13 * 13
    starts = sorted({y for y, _ in boxes})
    assert starts == list(range(0, 193, 16))
    assert starts[-1] + 32 == 224
    assert boxes[:2] == [(0, 0), (0, 16)]  # row-major


def test_patch_grid_on_small_and_odd_sizes():
    assert patch_grid(40, 40, 32, 16) == [(0, 0)]  # (40 - 32) // 16 + 1 = 1: rows 32-39 in no patch
    assert grid_shape(50, 40, 32, 16) == (2, 1)
    assert patch_grid(50, 40, 32, 16) == [(0, 0), (16, 0)]
    assert patch_grid(16, 16, 32, 16) == [(0, 0)]  # smaller than a patch: the whole image
    assert grid_shape(16, 16, *scale_patch(16)) == (3, 3)


def test_scale_patch():
    assert scale_patch(16) == (8, 4)
    assert scale_patch(32) == (16, 8)
    assert scale_patch(224) == (32, 16)
    assert scale_patch(512) == (32, 16)
    assert scale_patch((224, 100)) == (32, 16)
    assert scale_patch(1) == (1, 1)


def test_ramp_similarity_brings_back_30_percent_from_the_original():
    similarity = torch.arange(13.0).repeat(13, 1).unsqueeze(0)  # class-like grows to the right
    mask = shb_mask(similarity, (224, 224))
    assert mask.shape == (1, 224, 224)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    # a straight edge survives smoothing + threshold: M' = 1 on the least class-like columns
    columns = mask[0].mean(dim=0)
    assert torch.all(mask[0] == columns) and torch.all(columns[:60] == 1) and torch.all(columns[-100:] == 0)
    assert float(mask.mean()) == pytest.approx(0.30, abs=0.01)
    original, generated = torch.zeros(1, 3, 224, 224), torch.ones(1, 3, 224, 224)
    out = hybrid_blend(original, generated, mask)
    assert float((out == 0).float().mean()) == pytest.approx(0.30, abs=0.01)  # from the original


def test_mask_follows_the_formula_step_by_step():
    grid = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(0))
    soft = shb_mask(grid, (56, 48), percentile=30, sigma=5 / 3, mode="soft")
    binary = shb_mask(grid, (56, 48))
    normalised = (grid - grid.amin(dim=(1, 2), keepdim=True)) / (
        grid.amax(dim=(1, 2), keepdim=True) - grid.amin(dim=(1, 2), keepdim=True)
    )
    upsampled = torch.nn.functional.interpolate(
        normalised.double().unsqueeze(1), size=(56, 48), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    for i in range(2):
        tau = np.percentile(upsampled[i], 30)
        smoothed = np.clip(gaussian_filter((upsampled[i] <= tau).astype(float), 5 / 3), 0, 1)
        assert np.allclose(soft[i].numpy(), smoothed, atol=1e-6)
        assert np.array_equal(binary[i].numpy(), (smoothed > 0.5).astype(np.float32))
    assert 0 <= float(soft.min()) and float(soft.max()) <= 1


def test_a_1x1_grid_returns_the_original():
    mask = shb_mask(torch.tensor([[[0.27]]]), (32, 32))
    assert torch.equal(mask, torch.ones(1, 32, 32))
    original = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    generated = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(hybrid_blend(original, generated, mask), original)
    assert torch.equal(normalise_grid(torch.full((1, 3, 3), 0.4)), torch.zeros(1, 3, 3))
    assert torch.equal(shb_mask(torch.full((3, 3), 0.4), (8, 8), mode="soft"), torch.ones(8, 8))


def test_hybrid_blend_formula_and_resize_of_the_generated_image():
    original = torch.full((3, 8, 8), 0.25)
    generated = torch.full((3, 16, 16), 0.75)
    mask = torch.zeros(8, 8)
    mask[:, :4] = 0.5
    out = hybrid_blend(original, generated, mask)
    assert torch.allclose(out[:, :, :4], torch.full((3, 8, 4), 0.5))
    assert torch.allclose(out[:, :, 4:], torch.full((3, 8, 4), 0.75))
    with pytest.raises(ValueError):
        shb_mask(torch.zeros(1, 2, 2), (4, 4), mode="blurry")
