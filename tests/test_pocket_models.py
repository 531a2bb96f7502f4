"""Tiny random pocket models: the standard classes save, load and generate 16x16 images."""

import numpy as np
import pytest
import torch
from diffusers import (
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInstructPix2PixPipeline,
    StableDiffusionPipeline,
)
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from genaug.pocket import models as pm
from genaug.pocket.captions import caption_truth, sample_captions, sample_edits
from genaug.pocket.quality import estimate_colors
from genaug.pocket.render import COLOR_NAMES, render, sample_styles, styled_digits
from genaug.pocket.tiny import TINY_UNET, make_tiny_pocket


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_pocket(tmp_path_factory.mktemp("tiny"))


def test_clip_loads_with_clipmodel_and_clipprocessor(tiny):
    model = CLIPModel.from_pretrained(tiny["clip"])
    processor = CLIPProcessor.from_pretrained(tiny["clip"])
    assert model.dtype == torch.float32  # fp16 on disk, fp32 declared as the load dtype
    images, _, _, _ = styled_digits(np.arange(3))
    inputs = processor(text=["a photo of the digit one", "a red digit"], images=list(images), return_tensors="pt", padding=True)
    assert inputs["pixel_values"].shape == (3, 3, 16, 16)
    out = model(**inputs)
    assert out.logits_per_image.shape == (3, 2)


def test_image_processor_matches_training_preprocessing(tiny):
    processor = CLIPProcessor.from_pretrained(tiny["clip"])
    images, _, _, _ = styled_digits(np.arange(5))
    a = processor(images=list(images), return_tensors="pt")["pixel_values"]
    b = pm.clip_pixel_values(torch.from_numpy(images))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_weights_are_fp16_safetensors(tiny):
    from safetensors import safe_open

    for path in [tiny["clip"] / "model.safetensors", tiny["sd"] / "unet" / "diffusion_pytorch_model.safetensors"]:
        with safe_open(path, "pt") as f:
            key = next(iter(f.keys()))
            assert f.get_tensor(key).dtype == torch.float16


def test_sd_txt2img_and_img2img_generate_16px(tiny):
    pipe = StableDiffusionPipeline.from_pretrained(tiny["sd"])
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 16
    assert pipe.scheduler.config.steps_offset == 1 and pipe.safety_checker is None
    assert pipe.text_encoder.dtype == pipe.unet.dtype == torch.float32
    out = pipe(["a photo of the digit four, yellow on black"] * 2, num_inference_steps=2, output_type="np")
    assert out.images.shape == (2, 16, 16, 3)
    img2img = StableDiffusionImg2ImgPipeline.from_pretrained(tiny["sd"])
    img2img.set_progress_bar_config(disable=True)
    image = Image.fromarray(styled_digits(np.arange(1))[0][0])
    out = img2img("snowy", image=image, strength=0.5, num_inference_steps=4, output_type="np")
    assert out.images.shape == (1, 16, 16, 3)


def test_ip2p_pipeline_edits_16px(tiny):
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(tiny["ip2p"])
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.in_channels == 8
    image = Image.fromarray(styled_digits(np.arange(1))[0][0])
    out = pipe("make it red on blue", image=image, num_inference_steps=2, output_type="np")
    assert out.images.shape == (1, 16, 16, 3)


def test_ip2p_unet_init_copies_sd_and_zero_inits_extra_channels():
    torch.manual_seed(0)
    sd = pm.make_unet(TINY_UNET, cross_attention_dim=32)
    ip = pm.ip2p_unet_from_sd(sd)
    sd_state, ip_state = sd.state_dict(), ip.state_dict()
    assert sd_state.keys() == ip_state.keys()
    for key in sd_state:
        if key == "conv_in.weight":
            assert torch.equal(ip_state[key][:, :4], sd_state[key])
            assert torch.count_nonzero(ip_state[key][:, 4:]) == 0
        else:
            assert torch.equal(ip_state[key], sd_state[key]), key
    # so it computes exactly SD's prediction whatever the image latents are
    x, cond = torch.randn(2, 4, 8, 8), torch.randn(2, 24, 32)
    with torch.no_grad():
        a = sd(x, 10, encoder_hidden_states=cond).sample
        b = ip(torch.cat([x, torch.randn(2, 4, 8, 8)], 1), 10, encoder_hidden_states=cond).sample
    torch.testing.assert_close(a, b)


def test_caption_truth_counts_every_true_caption():
    image_attrs = np.array([[7, 0, 1], [7, 2, 1], [3, 0, 1]])
    caption_attrs = np.array([[7, -1, -1], [-1, 0, 1], [7, 2, 1], [-1, -1, 1]])
    expected = np.array([[1, 1, 0, 1], [1, 0, 1, 1], [0, 1, 0, 1]], dtype=bool)
    assert np.array_equal(caption_truth(image_attrs, caption_attrs), expected)
    rng = np.random.default_rng(0)
    texts, attrs = sample_captions(np.array([7, 3]), np.array([0, 1]), np.array([1, 2]), [1, 0, 0, 0, 0, 0], rng)
    assert texts == ["a photo of the digit seven, black on white", "a photo of the digit three, white on red"]
    assert np.array_equal(attrs, [[7, 0, 1], [3, 1, 2]])


def test_edits_change_what_they_say_and_keep_colours_distinct():
    rng = np.random.default_rng(0)
    fg, bg = sample_styles(500, rng)
    texts, nf, nb = sample_edits(fg, bg, rng)
    assert np.all(nf != nb)
    for t, f, b, f2, b2 in zip(texts, fg, bg, nf, nb):
        if t.startswith("make the background"):
            assert f2 == f and b2 != b and t.endswith(COLOR_NAMES[b2])
        elif t.startswith("make the digit"):
            assert b2 == b and f2 != f and t.endswith(COLOR_NAMES[f2])
        else:
            assert t == f"make it {COLOR_NAMES[f2]} on {COLOR_NAMES[b2]}" and (f2, b2) != (f, b)


def test_estimate_colors_is_exact_on_rendered_digits():
    images, _, fg, bg = styled_digits(np.arange(300))
    efg, ebg = estimate_colors(images)
    assert (efg == fg).mean() > 0.99 and (ebg == bg).mean() > 0.99
    noisy = np.clip(images.astype(int) + np.random.default_rng(0).integers(-25, 26, images.shape), 0, 255).astype(np.uint8)
    efg, ebg = estimate_colors(noisy)
    assert (efg == fg).mean() > 0.95 and (ebg == bg).mean() > 0.95
