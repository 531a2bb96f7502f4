"""The model-free parts of semantic hybrid blending (docs/methods/semantic-hybrid-blending.md)."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from genaug.mixing import hybrid_blend, patch_grid, shb_mask
from genaug.clip import extract_patches, patch_starts
from genaug.mixing import semantic_hybrid_blend
from genaug.mixing.shb import grid_shape, normalise_grid, scale_patch, score_patches, similarity_map


def test_patch_grid_at_224_has_13_patches_per_axis_ending_at_the_edge():
    boxes = patch_grid(224, 224, patch=32, stride=16)
    assert len(boxes) == 13 * 13
    starts = sorted({y for y, _ in boxes})
    assert starts == list(range(0, 193, 16))
    assert starts[-1] + 32 == 224
    assert boxes[:2] == [(0, 0), (0, 16)]  # row-major


def test_patch_grid_clamps_the_last_patch_to_the_edge():
    # n = (L - P) // stride + 1 patches per axis; the last one moved to end at the edge
    assert patch_grid(10, 10, 4, 4) == [(0, 0), (0, 6), (6, 0), (6, 6)]  # 2 per axis, not 0 and 4
    assert grid_shape(50, 40, 32, 16) == (2, 1)
    assert patch_grid(50, 40, 32, 16) == [(0, 8), (18, 8)]  # rows 0 and 50 - 32; one column, at the edge
    assert patch_grid(40, 40, 32, 16) == [(8, 8)]
    assert patch_grid(16, 16, 32, 16) == [(0, 0)]  # smaller than a patch: the whole image
    assert grid_shape(16, 16, *scale_patch(16)) == (3, 3)
    for h, w, p, s in [(10, 10, 4, 2), (50, 48, 32, 16), (23, 37, 8, 4), (224, 224, 32, 16), (100, 61, 32, 16)]:
        covered = torch.zeros(h, w, dtype=torch.bool)
        for y, x in patch_grid(h, w, p, s):
            assert y + min(p, h) <= h and x + min(p, w) <= w
            covered[y : y + p, x : x + p] = True
        assert covered.all()  # overlap >= 0.5 and two or more patches per axis: no pixel left out


def test_shb_and_clip_share_one_patch_grid():
    for size, p, s in [(10, 4, 4), (50, 32, 16), (37, 8, 5), (3, 8, 4)]:
        assert [y for y, _ in patch_grid(size, size, p, s)][:: len(patch_starts(size, p, s))] == patch_starts(size, p, s)
    images = torch.arange(2 * 3 * 10 * 10, dtype=torch.int64).view(2, 3, 10, 10)
    patches = extract_patches(images, 4, 4)
    assert patches.shape == (2, 2, 2, 3, 4, 4)
    for k, (y, x) in enumerate(patch_grid(10, 10, 4, 4)):
        assert torch.equal(patches[1, k // 2, k % 2], images[1, :, y : y + 4, x : x + 4])


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
    )[:, 0].float().double().numpy()  # A is kept in float32 (similarity_map)
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


# ---------------------------------------------------------------------------- the whole method


class RampClip:
    """A stand-in for genaug.clip.Clip whose patches grow more class-like to the right."""

    def __init__(self) -> None:
        self.calls = 0

    def text_embeds(self, texts, batch_size=256):
        return torch.ones(len(texts), 1)

    def patch_similarity(self, images, texts, patch_size, stride, batch_size=256):
        self.calls += 1
        gh, gw = grid_shape(*images.shape[-2:], patch_size, stride)
        return torch.arange(float(gw)).repeat(len(images), gh, 1)

    def patch_batch_size(self):
        return 256

    def batch_size_used(self, asked):
        return asked


def test_semantic_hybrid_blend_brings_back_30_percent_least_like_the_class():
    original = torch.zeros(2, 3, 224, 224, dtype=torch.uint8)
    generated = torch.full((2, 3, 224, 224), 255, dtype=torch.uint8)
    clip = RampClip()
    result = semantic_hybrid_blend(original, generated, ["seven", "one"], clip, return_heatmaps=True)
    assert (result.patch, result.stride) == (32, 16) and clip.calls == 1
    assert result.replaced_fraction.tolist() == pytest.approx([0.30, 0.30], abs=0.01)
    assert torch.equal(result.replaced_fraction, result.masks.double().mean(dim=(1, 2)))
    from_original = (result.images == 0).all(dim=1)
    assert torch.equal(from_original, result.masks.bool())  # binary: each pixel from one image
    assert torch.all(from_original[:, :, :60]) and not torch.any(from_original[:, :, -100:])  # the left, least class-like
    assert result.heatmaps.shape == (2, 224, 224)
    assert float(result.heatmaps[0, 0, 0]) == 0.0 and float(result.heatmaps[0, 0, -1]) == 1.0


def test_semantic_hybrid_blend_on_a_1x1_grid_returns_the_original_without_clip():
    original = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    generated = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    clip = RampClip()
    result = semantic_hybrid_blend(original, generated, ["a", "b", "c"], clip, patch=32, stride=16)
    assert torch.equal(result.images, original) and clip.calls == 0
    assert result.replaced_fraction.tolist() == [1.0, 1.0, 1.0]
    assert semantic_hybrid_blend(original, generated, ["a", "b", "c"], clip).patch == 16  # scaled: 3 x 3 grid
    assert clip.calls == 1


def test_binary_and_soft_masks():
    original = torch.zeros(1, 3, 64, 64)
    generated = torch.ones(1, 3, 64, 64)
    binary = semantic_hybrid_blend(original, generated, ["x"], RampClip(), mode="binary")
    soft = semantic_hybrid_blend(original, generated, ["x"], RampClip(), mode="soft")
    assert set(binary.masks.unique().tolist()) == {0.0, 1.0}
    assert 0 < int(((soft.masks > 0) & (soft.masks < 1)).sum())  # a feathered edge
    assert torch.equal(binary.masks, (soft.masks > 0.5).float())
    # out = original * M' + generated * (1 - M'): here 1 - M'
    torch.testing.assert_close(soft.images, (1 - soft.masks)[:, None].expand(1, 3, 64, 64))
    assert float(soft.replaced_fraction[0]) == pytest.approx(float(binary.replaced_fraction[0]), abs=0.02)


def test_inputs_are_checked():
    image = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match="one class name per pair"):
        semantic_hybrid_blend(image, image, ["a", "b"], RampClip())
    with pytest.raises(ValueError, match="dtype"):
        semantic_hybrid_blend(image, image.float(), ["a"], RampClip())
    with pytest.raises(ValueError, match="mode"):
        semantic_hybrid_blend(image, image, ["a"], RampClip(), mode="blurry")


# ---------------------------------------------------------------------------- with a real (tiny, random) CLIP


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from genaug.clip import Clip
    from genaug.pocket.tiny import make_tiny_pocket

    return Clip.from_pretrained(make_tiny_pocket(tmp_path_factory.mktemp("tinyclip"))["clip"])


def digit_pairs(n):
    from genaug.pocket.render import DIGIT_NAMES, styled_digits

    images, labels, _, _ = styled_digits(np.arange(n))
    edits = styled_digits(np.arange(n, 2 * n))[0]
    as_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
    return as_tensor(images), as_tensor(edits), [DIGIT_NAMES[label] for label in labels]


def test_batched_shb_equals_one_pair_at_a_time(tiny_clip):
    originals, generated, names = digit_pairs(12)
    batched = semantic_hybrid_blend(originals, generated, names, tiny_clip, batch_size=64, return_heatmaps=True)
    assert (batched.patch, batched.stride) == (8, 4)
    for i in range(12):
        single = semantic_hybrid_blend(originals[i : i + 1], generated[i : i + 1], names[i : i + 1], tiny_clip, batch_size=5)
        assert torch.equal(single.masks[0], batched.masks[i])
        assert torch.equal(single.images[0], batched.images[i])
    assert 0.2 < float(batched.replaced_fraction.mean()) < 0.4


def test_patch_scores_equal_the_crop_by_crop_reference(tiny_clip):
    """The reference procedure: each patch cropped, preprocessed and encoded on its own."""
    originals, generated, names = digit_pairs(4)
    grids = score_patches(generated, names, tiny_clip, patch=8, stride=4)
    for i in range(4):
        text = tiny_clip.text_embeds([f"a photo of a {names[i]}"])[0]
        image = generated[i].permute(1, 2, 0).numpy()
        by_crop = torch.tensor(
            [float(tiny_clip.image_embeds(image[y : y + 8, x : x + 8])[0] @ text) for y, x in patch_grid(16, 16, 8, 4)]
        ).view(3, 3)
        torch.testing.assert_close(grids[i], by_crop, atol=1e-5, rtol=1e-5)
        assert torch.equal(shb_mask(grids[i], (16, 16)), shb_mask(by_crop, (16, 16)))


def test_batched_patch_preprocessing_equals_the_processor_on_each_patch(tiny_clip):
    from transformers import CLIPImageProcessor

    from genaug.clip import Clip

    patches = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batched = tiny_clip.patch_pixel_values(patches)
    assert torch.equal(batched, torch.cat([tiny_clip.pixel_values(p.permute(1, 2, 0).numpy()) for p in patches]))
    # CLIP ViT-B/32's own processor: 32 px patches up to 224 px, bicubic
    vit_b32 = Clip.__new__(Clip)
    vit_b32.processor = type("Processor", (), {"image_processor": CLIPImageProcessor()})()
    big = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    batched = vit_b32.patch_pixel_values(big)
    assert batched.shape == (3, 3, 224, 224)
    assert torch.equal(batched, torch.cat([vit_b32.pixel_values(p.permute(1, 2, 0).numpy()) for p in big]))


def test_plateaus_of_the_map_are_one_value_so_ties_at_tau_stay_ties():
    # Pocket CLIP's scores of one pair, batched and one crop at a time: equal up to a
    # float32 step. The 30th percentile falls on a plateau of the upsampled map; in
    # float64 its pixels differed in the last bits and the two masks by a pixel.
    batched = torch.tensor([[[0.5263554, 0.51337326, 0.51152056], [0.38345626, 0.49993297, 0.50020474], [0.48845556, 0.52452224, 0.4823327]]])
    by_crop = torch.tensor([[[0.5263554, 0.5133733, 0.5115205], [0.3834563, 0.49993297, 0.50020474], [0.48845562, 0.52452224, 0.4823327]]])
    similarity = similarity_map(batched, (16, 16))
    assert similarity.dtype == torch.float32
    assert torch.allclose(similarity, similarity_map(by_crop, (16, 16)), atol=1e-5)
    assert torch.equal(shb_mask(batched, (16, 16)), shb_mask(by_crop, (16, 16)))
