"""genaug.data.images: every odd input becomes 8-bit RGB with the right values, or a named reason."""

import io

import numpy as np
import pytest
from PIL import Image

from genaug.data.images import ImageLoadError, check_image, load_rgb, to_rgb


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_sixteen_bit_png_is_scaled_to_8_bit_by_round_v_over_257(tmp_path):
    values = np.array([[0, 25700, 65535, 1000, 128, 129, 32896]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode == "I;16"
    rgb = np.asarray(load_rgb(path))
    # 25700 = 100 * 257; 1000 / 257 = 3.89; 128 / 257 = 0.498; 129 / 257 = 0.502; 32896 = 128 * 257
    assert rgb[0, :, 0].tolist() == [0, 100, 255, 4, 0, 1, 128]
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_32_bit_integer_mode_is_read_as_16_bit_values():
    image = Image.fromarray(np.array([[0, 257, 65535, 70000, -5]], dtype=np.int32))
    assert image.mode == "I"
    assert np.asarray(to_rgb(image))[0, :, 1].tolist() == [0, 1, 255, 255, 0]


def test_float_images_in_unit_range_are_scaled_by_255():
    assert np.asarray(to_rgb(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))))[0, :, 0].tolist() == [0, 128, 255]
    assert np.asarray(to_rgb(Image.fromarray(np.array([[0.0, 7.0, 300.0]], np.float32))))[0, :, 0].tolist() == [0, 7, 255]


def test_grayscale_is_copied_to_three_channels(tmp_path):
    path = _save(Image.fromarray(np.array([[0, 77, 255]], np.uint8), "L"), tmp_path / "gray.png")
    assert np.asarray(load_rgb(path)).tolist() == [[[0, 0, 0], [77, 77, 77], [255, 255, 255]]]


def test_one_bit_becomes_black_and_white(tmp_path):
    path = _save(Image.fromarray(np.array([[False, True]])), tmp_path / "bits.png")
    assert Image.open(path).mode == "1"
    assert np.asarray(load_rgb(path)).tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_palette_with_a_transparent_index_is_composited_on_white(tmp_path):
    image = Image.fromarray(np.array([[0, 1, 2]], np.uint8), "P")
    image.putpalette([255, 0, 0, 0, 0, 255, 0, 200, 0] + [0] * (256 * 3 - 9))
    path = _save(image, tmp_path / "palette.png", transparency=0)
    assert Image.open(path).mode == "P"
    assert np.asarray(load_rgb(path)).tolist() == [[[255, 255, 255], [0, 0, 255], [0, 200, 0]]]


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.array([[[200, 0, 0, 128], [10, 20, 30, 255], [10, 20, 30, 0]]], np.uint8)
    path = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png")
    # (200 * 128 + 255 * 127) / 255 = 227.4; (0 + 255 * 127) / 255 = 127
    assert np.asarray(load_rgb(path)).tolist() == [[[227, 127, 127], [10, 20, 30], [255, 255, 255]]]


def test_gray_with_alpha_is_composited_on_white(tmp_path):
    path = _save(Image.fromarray(np.array([[[0, 255], [0, 0], [100, 51]]], np.uint8), "LA"), tmp_path / "la.png")
    # 100 * 51 / 255 + 255 * 204 / 255 = 20 + 204
    assert np.asarray(load_rgb(path))[0, :, 0].tolist() == [0, 255, 224]


def test_cmyk_jpeg_comes_back_as_the_rgb_it_was_made_from(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8] = (200, 30, 30)
    rgb[8:] = (20, 60, 180)
    path = _save(Image.fromarray(rgb).convert("CMYK"), tmp_path / "print.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    loaded = np.asarray(load_rgb(path)).astype(int)
    assert np.abs(loaded[2, 2] - [200, 30, 30]).max() <= 6
    assert np.abs(loaded[13, 13] - [20, 60, 180]).max() <= 6


def test_truncated_png_raises_naming_the_file(tmp_path):
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(data, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(ImageLoadError) as caught:
        load_rgb(path)
    assert caught.value.path == str(path) and "truncated" in caught.value.reason.lower()
    with pytest.raises(ImageLoadError, match="cut.png"):
        check_image(path)


def test_truncated_jpeg_is_found_at_scan_time_but_trailing_bytes_are_not_an_error(tmp_path):
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(data, "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        check_image(cut)
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(data.getvalue() + b"vendor trailer after the end-of-image marker")
    assert check_image(padded) == (64, 64)


def test_a_file_that_is_not_an_image_has_a_reason(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not pixels")
    with pytest.raises(ImageLoadError, match="not an image format"):
        load_rgb(path)
    with pytest.raises(ImageLoadError, match="file not found"):
        load_rgb(tmp_path / "absent.png")


def test_huge_jpeg_is_decoded_reduced_and_huge_png_refused(tmp_path):
    picture = np.zeros((200, 240, 3), np.uint8)
    picture[:, :120] = (250, 0, 0)
    jpeg = _save(Image.fromarray(picture), tmp_path / "big.jpg", quality=95)
    png = _save(Image.fromarray(picture), tmp_path / "big.png")
    reduced = load_rgb(jpeg, max_pixels=100 * 120)
    assert reduced.size == (120, 100)  # 1/2 scale: the smallest reduction under the limit
    assert np.abs(np.asarray(reduced)[50, 20].astype(int) - [250, 0, 0]).max() <= 8
    with pytest.raises(ImageLoadError, match="above the limit"):
        load_rgb(png, max_pixels=100 * 120)
    with pytest.raises(ImageLoadError, match="above the limit"):
        check_image(png, max_pixels=100 * 120)
    assert check_image(jpeg, max_pixels=100 * 120) == (240, 200)
    with pytest.raises(ImageLoadError, match="even at 1/8 scale"):
        check_image(jpeg, max_pixels=10)


def test_draft_size_keeps_both_sides_at_least_that_long(tmp_path):
    jpeg = _save(Image.fromarray(np.full((160, 320, 3), 90, np.uint8)), tmp_path / "wide.jpg")
    assert load_rgb(jpeg, draft_size=40).size == (80, 40)  # 1/4 scale; 1/8 would give 20 rows
    assert load_rgb(jpeg, draft_size=100).size == (320, 160)  # 1/2 would give 80 < 100 rows
