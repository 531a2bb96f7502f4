"""The projector and the slot conditioning (docs/methods/sdi.md)."""

from __future__ import annotations

import json

import pytest
import torch

from genaug.pocket.tiny import SD_MAX_LENGTH, tiny_tokenizer
from genaug.sdi.conditioning import (
    NEGATIVE_PROMPT,
    SDI_PROMPT,
    class_token_position,
    encode_text,
    prompt_token_ids,
    slot_context,
)
from genaug.sdi.projector import Projector, load_projector, projector_param_count, save_projector

from test_sdi_helpers import tiny_models


def test_projector_has_the_reference_parameter_count():
    projector = Projector(768, 1024, 768)
    assert sum(p.numel() for p in projector.parameters()) == 1_574_656 == projector_param_count(768, 1024, 768)
    layers = list(projector.net)
    assert [type(layer).__name__ for layer in layers] == ["Linear", "ReLU", "Linear"]
    assert projector(torch.zeros(3, 768)).shape == (3, 768)


def test_projector_saves_and_loads_with_its_sizes(tmp_path):
    projector = Projector(8, 16, 4)
    path = save_projector(tmp_path / "p.safetensors", projector, {"note": "x"})
    loaded = load_projector(path)
    assert loaded.dims == {"in_dim": 8, "hidden": 16, "out_dim": 4}
    x = torch.randn(5, 8)
    torch.testing.assert_close(loaded(x), projector(x))
    with pytest.raises(FileNotFoundError, match="sdi train"):
        load_projector(tmp_path / "missing.safetensors")


def test_slot_is_the_token_class_for_a_clip_tokenizer_built_from_files(tmp_path):
    """OpenAI-format vocab.json + merges.txt: every prompt word is one token, as in real CLIP."""
    tokenizer = tiny_tokenizer(tmp_path / "tok", [SDI_PROMPT, NEGATIVE_PROMPT], SD_MAX_LENGTH)
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["merges.txt", "vocab.json"]
    position = class_token_position(tokenizer)
    ids = prompt_token_ids(tokenizer, SDI_PROMPT)
    assert tokenizer.convert_ids_to_tokens(ids[position]) == "class</w>"
    assert ids[0] == tokenizer.bos_token_id
    assert position == 7  # <start> a high quality photo of a class
    assert len(ids) == tokenizer.model_max_length == 77


def test_slot_is_the_token_class_for_pocket_clips_tokenizer():
    from genaug.pocket.tokenizer import cached_tokenizer

    tokenizer = cached_tokenizer()
    position = class_token_position(tokenizer)
    assert tokenizer.convert_ids_to_tokens(prompt_token_ids(tokenizer, SDI_PROMPT)[position]) == "class</w>"


def test_slot_in_the_shipped_pocket_sd_tokenizer():
    from transformers import CLIPTokenizer

    try:
        from genaug.pocket import pocket_model_dir

        folder = pocket_model_dir("sd")
    except (FileNotFoundError, ImportError, ValueError):
        pytest.skip("pocket SD weights are not built yet")
    if not (folder / "model_index.json").is_file():
        pytest.skip("pocket SD weights are not complete yet")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer")
    position = class_token_position(tokenizer)
    assert tokenizer.convert_ids_to_tokens(prompt_token_ids(tokenizer, SDI_PROMPT)[position]) == "class</w>"


def test_slot_word_must_be_one_token_that_occurs_once(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path / "tok", ["a photo of a class.", "a class class"])
    with pytest.raises(ValueError, match="occurs 2 times"):
        class_token_position(tokenizer, "a class class")
    with pytest.raises(ValueError, match="does not occur"):
        class_token_position(tokenizer, "a photo of a")
    with pytest.raises(ValueError, match="tokens"):
        class_token_position(tokenizer, "a photo of a xyzzy.", word="xyzzy")


def test_slot_context_replaces_one_row_and_passes_gradients_to_the_token_only():
    context = torch.randn(1, 6, 4, requires_grad=True)
    tokens = torch.randn(3, 4, requires_grad=True)
    out = slot_context(context, tokens, 2)
    assert out.shape == (3, 6, 4)
    torch.testing.assert_close(out[:, 2], tokens)
    torch.testing.assert_close(out[:, [0, 1, 3, 4, 5]], context.expand(3, -1, -1)[:, [0, 1, 3, 4, 5]])
    out.sum().backward()
    torch.testing.assert_close(tokens.grad, torch.ones(3, 4))
    with pytest.raises(ValueError, match="cross_attention_dim"):
        slot_context(context, torch.zeros(3, 5), 2)
    with pytest.raises(ValueError, match="outside"):
        slot_context(context, tokens, 6)


def test_encode_text_equals_the_pipelines_own_prompt_encoding():
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(str(tiny_models()["sd"]), safety_checker=None)
    ours = encode_text(pipeline.tokenizer, pipeline.text_encoder, [SDI_PROMPT, NEGATIVE_PROMPT])
    theirs, _ = pipeline.encode_prompt([SDI_PROMPT, NEGATIVE_PROMPT], "cpu", 1, False)
    torch.testing.assert_close(ours, theirs)
    assert ours.shape == (2, 77, json.loads((tiny_models()["sd"] / "unet" / "config.json").read_text())["cross_attention_dim"])
