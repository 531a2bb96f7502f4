"""Generation from sampled features (docs/methods/sdi.md) and the whole SDI arm on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genaug.config import FilterConfig, SdiConfig
from genaug.filtering import filter_set
from genaug.generation.seeds import item_seed, seed_generator
from genaug.manifest import read_manifest
from genaug.sdi import build_bank, generate_from_samples, sample_features, train_projector
from genaug.sdi.conditioning import NEGATIVE_PROMPT, SDI_PROMPT, encode_text, slot_context
from genaug.sdi.embed import embed_training_images
from genaug.sdi.generate import RenderSettings, SdiRenderer, plan_items
from genaug.sdi.sample import samples_path
from genaug.sdi.tables import FeatureTable, load_table, save_table

from test_sdi_helpers import digits, sdi_config, tiny_models


def random_samples(path, n_per_class: int = 3, dim: int = 32) -> FeatureTable:
    labels = np.repeat(np.arange(2), n_per_class)
    ids = [f"sdi-gaussian-{label:04d}-{k:06d}" for label in range(2) for k in range(n_per_class)]
    table = FeatureTable(torch.randn(len(ids), dim, generator=torch.Generator().manual_seed(0)), labels, ids,
                         ["001.Black_footed_Albatross", "two"], {"sampler": "gaussian"})
    save_table(path, table)
    return table


def renderer(table: FeatureTable, **kw) -> SdiRenderer:
    settings = RenderSettings(model=str(tiny_models()["sd"]), revision=None, steps=3, guidance_scale=2.0, size=None,
                              negative_prompt=NEGATIVE_PROMPT)
    return SdiRenderer(settings, table.features, device="cpu", **kw)


def test_positive_context_is_the_slot_replaced_prompt_and_negative_the_negative_prompt(tmp_path):
    table = random_samples(tmp_path / "s.safetensors")
    r = renderer(table)
    items = plan_items(table, tmp_path / "s.safetensors", 0, NEGATIVE_PROMPT)[1:3]
    positive, negative = r.conditioning(items)
    pipe = r.pipeline
    base = encode_text(pipe.tokenizer, pipe.text_encoder, [SDI_PROMPT])
    torch.testing.assert_close(positive, slot_context(base, table.features[1:3], 7))
    torch.testing.assert_close(negative, encode_text(pipe.tokenizer, pipe.text_encoder, [NEGATIVE_PROMPT] * 2))
    assert r.slot_position == 7


def test_render_is_a_ddim_pipeline_call_with_guidance_two_and_eta_zero(tmp_path):
    from diffusers import DDIMScheduler

    table = random_samples(tmp_path / "s.safetensors")
    r = renderer(table)
    items = plan_items(table, tmp_path / "s.safetensors", 0, NEGATIVE_PROMPT)[:2]
    images = r.render(items, [11, 12])
    scheduler = r.pipeline.scheduler
    assert isinstance(scheduler, DDIMScheduler)
    assert (scheduler.config.clip_sample, scheduler.config.set_alpha_to_one, scheduler.config.steps_offset) == (False, False, 1)
    positive, negative = r.conditioning(items)
    direct = r.pipeline(prompt_embeds=positive, negative_prompt_embeds=negative, num_inference_steps=3, guidance_scale=2.0,
                        eta=0.0, generator=[seed_generator(11), seed_generator(12)], output_type="np").images
    np.testing.assert_array_equal(images, (np.clip(direct, 0, 1) * 255).round().astype(np.uint8))
    assert images.shape == (2, 16, 16, 3)


def test_generate_from_samples_writes_traceable_records_and_resumes(tmp_path):
    path = tmp_path / "samples.safetensors"
    table = random_samples(path)
    config = sdi_config(tmp_path / "work", generate={"output": str(tmp_path / "set"), "seed": 5})
    report = generate_from_samples(config, samples=path)
    assert report.made == 6
    records = sorted(read_manifest(tmp_path / "set"), key=lambda r: r.id)
    assert [r.id for r in records] == table.ids
    for row, record in enumerate(records):
        assert record.method == "sdi" and record.source_ids == []
        assert record.prompt == SDI_PROMPT and record.negative_prompt == NEGATIVE_PROMPT
        assert "albatross" not in record.prompt.lower() and "two" not in record.prompt
        assert record.seed == item_seed(5, record.id)
        assert record.embedding == {"file": str(path.resolve()), "tensor": "features", "row": row, "sampler": "gaussian"}
        assert record.params["guidance"] == 2.0 and record.params["eta"] == 0.0 and record.params["slot_position"] == 7
        assert record.class_name == table.class_names[record.label]
        vector = load_table(record.embedding["file"]).features[record.embedding["row"]]
        torch.testing.assert_close(vector, table.features[row])
    assert generate_from_samples(config, samples=path).made == 0  # resumed: nothing left to make


def test_defaults_are_the_reference_sampling_settings(tmp_path):
    config = SdiConfig(work_dir=tmp_path)
    assert (config.generate.steps, config.generate.guidance_scale, config.generate.eta) == (50, 2.0, 0.0)
    assert config.generate.negative_prompt is None  # = SDI's negative prompt


def test_a_vae_override_changes_the_decoder_and_is_recorded(tmp_path):
    from diffusers import AutoencoderKL

    vae_dir = tmp_path / "vae"
    torch.manual_seed(1)
    other = AutoencoderKL.from_pretrained(str(tiny_models()["sd"]), subfolder="vae")
    with torch.no_grad():
        for p in other.decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    other.save_pretrained(vae_dir)
    table = random_samples(tmp_path / "s.safetensors")
    items = plan_items(table, tmp_path / "s.safetensors", 0, NEGATIVE_PROMPT)[:1]
    plain, swapped = renderer(table), renderer(table, vae=str(vae_dir))
    assert not np.array_equal(plain.render(items, [3]), swapped.render(items, [3]))
    assert swapped.params()["vae"]["path"] == str(vae_dir.resolve())


def test_vectors_of_the_wrong_width_are_refused(tmp_path):
    path = tmp_path / "s.safetensors"
    random_samples(path, dim=16)
    with pytest.raises(ValueError, match="are 16-d; the UNet at .* cross-attends to 32-d tokens"):
        generate_from_samples(sdi_config(tmp_path / "work", generate={"output": str(tmp_path / "set")}), samples=path)


@pytest.mark.slow
def test_the_whole_sdi_arm_on_tiny_models(tmp_path):
    """embed -> train -> bank -> sample -> generate -> filter, every stage through its files."""
    data = {"train": digits(2, classes=3)}
    config = sdi_config(tmp_path, train={"epochs": 2}, sample={"sampler": "gaussian", "multiplier": 2},
                        dataset={"name": "pocket_digits"})
    embed_training_images(config, datasets=data)
    train_projector(config, datasets=data)
    bank = load_table(build_bank(config))
    assert bank.ids == data["train"].ids and bank.dim == 32
    samples = load_table(sample_features(config))
    assert len(samples) == 2 * len(bank) and samples_path(tmp_path, "gaussian").is_file()
    report = generate_from_samples(config)
    assert report.made == len(samples)
    set_dir = tmp_path / "generated" / "gaussian"
    result = filter_set(FilterConfig(set_dir=set_dir, clip=config.clip, progress=False,
                                     filters=[{"name": "frames"}, {"name": "clip_rank", "keep_ratio": 0.5}]))
    records = read_manifest(set_dir)
    assert result.kept == sum(r.kept for r in records) <= len(records) // 2 + 3
    assert all("clip_score" in r.scores for r in records)
