"""Real-Guidance, Diff-Mix and DA-Fusion on the generation engine (tiny random pocket SD).

The official defaults of each method (the tables of docs/methods/), records, per-item
strengths, soft labels, resume, shards and bad input; the quality of textual inversion and
of Diff-Mix's fine-tuning is tested on the trained pocket SD in test_textual_inversion.py
and test_diffmix_finetune.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from genaug.config import ConfigError, GenerateConfig
from genaug.generation import inversion
from genaug.generation.stage import generate
from genaug.generation.editors.diffmix import soft_label
from genaug.manifest import MANIFEST, read_manifest

from generation_helpers import check_set_integrity, pocket_dataset, set_pixels

pytestmark = pytest.mark.usefixtures("single_process_home")  # tests/conftest.py

STEPS = 4
FAST_INVERSION = {"steps": 3, "batch_size": 4}
FAST_FINETUNE = {"steps": 3, "batch_size": 2, "checkpoint_every": 2}


def config(tmp_path, model, name, output="gen", engine=None, **editor) -> GenerateConfig:
    if name == "dafusion":
        editor.setdefault("options", {}).setdefault("inversion", FAST_INVERSION)
    if name == "diffmix":
        editor.setdefault("options", {}).setdefault("finetune", FAST_FINETUNE)
    return GenerateConfig(
        output=tmp_path / output,
        editor={"name": name, "model": model, "steps": STEPS, **editor},
        engine={"progress": False, "batch_size": 5, **(engine or {})},
    )


def by_id(set_dir):
    return {record.id: record for record in read_manifest(set_dir)}


def test_real_guidance_strength_follows_each_classs_shot_count_and_fills_per_class(tmp_path, tiny_sd):
    dataset = pocket_dataset(23)  # digits 0-2 three times (3 shots), 3-9 twice (2 shots)
    cfg = config(tmp_path, tiny_sd, "real_guidance", steps=20, options={"per_class": 5})
    report = generate(cfg, dataset=dataset)
    records = read_manifest(tmp_path / "gen")
    assert report.made == len(records) == 50  # 5 per class, 10 classes
    per_class: dict[int, int] = {}
    per_source: dict[str, int] = {}
    for record in records:
        per_class[record.label] = per_class.get(record.label, 0) + 1
        per_source[record.source_ids[0]] = per_source.get(record.source_ids[0], 0) + 1
        # 3 shots and 2 shots both fall to the 2-shot row of the official table: 40 of 100 steps
        assert record.params["strength"] == 0.40 and record.params["steps"] == 20
        assert record.prompt == f"a photo of a {dataset.class_names[record.label]}"
    assert per_class == {label: 5 for label in range(10)}
    # a class of 3 images: 2, 2, 1 outputs; of 2 images: 3, 2
    assert sorted(per_source[f"pocket/{i:04d}"] for i in (0, 10, 20)) == [1, 2, 2]
    assert sorted(per_source[f"pocket/{i:04d}"] for i in (3, 13)) == [2, 3]
    check_set_integrity(tmp_path / "gen")


def test_real_guidance_official_defaults():
    """The table of docs/methods/real-guidance.md: strength 15/20/35/40/50 of 100 steps for
    16/8/4/2/1 shots, the step rule between and beyond them, 800 images per class."""
    from genaug.generation.editors.real_guidance import (
        OFFICIAL_PER_CLASS, OFFICIAL_STEPS, RealGuidanceOptions, outputs_per_image, strength_for_shots,
    )

    assert [strength_for_shots(n) for n in (16, 8, 4, 2, 1)] == [0.15, 0.20, 0.35, 0.40, 0.50]
    assert [strength_for_shots(n) for n in (3, 5, 7, 10, 15, 17, 500)] == [0.40, 0.35, 0.35, 0.20, 0.20, 0.15, 0.15]
    assert strength_for_shots(1, {4: 0.3}) == 0.3  # below the smallest listed count: its value
    assert RealGuidanceOptions().per_class == OFFICIAL_PER_CLASS == 800 and OFFICIAL_STEPS == 100
    assert RealGuidanceOptions().per_image is None
    assert outputs_per_image(16, 800) == [50] * 16 and outputs_per_image(1, 800) == [800]
    assert outputs_per_image(3, 800) == [267, 267, 266]


def test_real_guidance_per_image_and_a_given_strength_replace_the_official_rule(tmp_path, tiny_sd):
    dataset = pocket_dataset(6)
    generate(config(tmp_path, tiny_sd, "real_guidance", steps=20, strength=0.25, options={"per_image": 2}), dataset=dataset)
    records = read_manifest(tmp_path / "gen")
    assert sorted(r.id for r in records) == sorted(f"pocket_{i:04d}-real_guidance-{m}" for i in range(6) for m in range(2))
    assert {r.params["strength"] for r in records} == {0.25}


def test_diffmix_official_defaults():
    """The table of docs/methods/diff-mix.md: fixed strength 0.5 (uniform: 0.3/0.5/0.7/0.9),
    gamma 0.5, a pool 5x the real set, DPM-Solver++ at 25 steps, LoRA rank 10 + textual
    inversion at lr 5e-5, batch 2, 35000 steps, weight decay 1e-2, flips; p 0.1."""
    from genaug.config import EditorConfig
    from genaug.generation.editors.diffmix import DiffMixEditor, DiffMixOptions, OFFICIAL_STEPS
    from genaug.training.registry import POLICIES

    options = DiffMixOptions()
    assert options.strength_strategy == "fixed" and DiffMixEditor.default_strength == 0.5
    assert options.strengths == [0.3, 0.5, 0.7, 0.9] and options.gamma == 0.5 and options.multiplier == 5
    assert DiffMixEditor.default_scheduler == "dpmsolver" and OFFICIAL_STEPS == 25
    tune = options.finetune
    assert (tune.enabled, tune.rank, tune.lr, tune.ti_lr, tune.batch_size, tune.steps, tune.weight_decay, tune.flip_p,
            tune.max_grad_norm) == (True, 10, 5e-5, 5e-5, 2, 35000, 1e-2, 0.5, 1.0)
    assert POLICIES.spec("synthetic_replacement").params().p == 0.1
    config = EditorConfig(name="diffmix")
    assert DiffMixEditor.items_per_image(config) == 5.0 and DiffMixEditor.step_strengths(config) == [0.5]
    assert DiffMixEditor.configured_steps(config) == 25 and DiffMixEditor.steps_run(config) == 12.5
    # the soft label (1 - s^gamma, s^gamma)
    assert soft_label(0, 1, 0.5, 0.5) == pytest.approx((1 - math.sqrt(0.5), math.sqrt(0.5)))
    assert soft_label(0, 1, 0.81, 0.5) == pytest.approx((0.1, 0.9))
    assert soft_label(0, 1, 0.25, 1.0) == (0.75, 0.25)


def test_diffmix_draws_source_and_target_classes_uniformly_as_the_official_code():
    """Source class and target class each uniform over the classes, the same class allowed."""
    from genaug.generation.editors.diffmix import draw_translation

    rows_of = {0: [0, 1, 2, 3, 4, 5, 6, 7], 1: [8], 2: [9]}  # unbalanced: classes, not images, are uniform
    draws = [draw_translation(0, k, rows_of, 3, None) for k in range(6000)]
    sources = np.bincount([d[0] for d in draws], minlength=3) / len(draws)
    targets = np.bincount([d[2] for d in draws], minlength=3) / len(draws)
    assert np.allclose(sources, 1 / 3, atol=0.03) and np.allclose(targets, 1 / 3, atol=0.03)
    same = np.mean([d[0] == d[2] for d in draws])
    assert same == pytest.approx(1 / 3, abs=0.03)
    assert all(d[1] in rows_of[d[0]] for d in draws) and all(d[3] is None for d in draws)
    strengths = [draw_translation(0, k, rows_of, 3, [0.3, 0.5, 0.7, 0.9])[3] for k in range(4000)]
    assert np.allclose(np.unique(strengths, return_counts=True)[1] / 4000, 0.25, atol=0.03)
    assert draw_translation(5, 7, rows_of, 3, None) == draw_translation(5, 7, rows_of, 3, None)


def test_diffmix_records_exact_soft_labels_at_the_fixed_strength(tmp_path, tiny_sd):
    dataset = pocket_dataset(10)
    cfg = config(tmp_path, tiny_sd, "diffmix", strength=0.5, options={"multiplier": 3, "finetune": {"enabled": False}})
    generate(cfg, dataset=dataset)
    records = read_manifest(tmp_path / "gen")
    assert len(records) == 30
    pairs = set()
    for record in records:
        source, target = record.label, record.params["target_label"]
        assert record.params["target_class"] == dataset.class_names[target]
        assert record.prompt == f"a photo of a {dataset.class_names[target]}"
        assert record.source_ids == [f"pocket/{source:04d}"]  # one image per class: the row is the class's
        soft = record.params["soft_label"]
        assert soft["labels"] == [source, target]
        assert soft["weights"] == [1 - math.sqrt(0.5), math.sqrt(0.5)]  # s = 0.5, gamma = 0.5
        assert record.params["strength"] == 0.5 and record.params["gamma"] == 0.5
        assert record.params["scheduler"] == "DPMSolverMultistepScheduler"
        pairs.add((source, target))
    assert len(pairs) > 10  # drawn per item


def test_diffmix_uniform_strategy_draws_from_its_list(tmp_path, tiny_sd):
    dataset = pocket_dataset(12)
    cfg = config(tmp_path, tiny_sd, "diffmix", options={"strength_strategy": "uniform", "strengths": [0.5, 1.0],
                                                        "gamma": 2.0, "multiplier": 2, "finetune": {"enabled": False}})
    generate(cfg, dataset=dataset)
    records = read_manifest(tmp_path / "gen")
    assert len(records) == 24
    assert {record.params["strength"] for record in records} == {0.5, 1.0}
    for record in records:
        s = record.params["strength"]
        assert record.params["soft_label"]["weights"] == [1 - s**2, s**2]


def test_dafusion_official_defaults():
    """The table of docs/methods/dafusion.md: M = 10, t0 uniform over 0.25/0.5/0.75/1.0 per
    edit (from the item seed), inversion per class: 1000 AdamW steps of 4 at 5e-4 x 4,
    weight decay 1e-2, 27 templates, flips at 0.5, from "the"."""
    from collections import Counter

    from genaug.generation.editors.dafusion import DAFusionOptions, draw_strength
    from genaug.generation.inversion import TEMPLATES_SMALL, effective_lr

    options = DAFusionOptions()
    assert options.per_image == 10 and options.strengths == [0.25, 0.5, 0.75, 1.0]
    inv = options.inversion
    assert (inv.steps, inv.batch_size, inv.lr, inv.scale_lr, inv.weight_decay, inv.flip_p, inv.templates, inv.init_word) == (
        1000, 4, 5e-4, True, 1e-2, 0.5, "small", "the")
    assert effective_lr(inv) == pytest.approx(2e-3)
    assert len(TEMPLATES_SMALL) == 27 and TEMPLATES_SMALL[0] == "a photo of a class"
    counts = Counter(draw_strength(0, f"pocket_{i:04d}-dafusion-{m}", options.strengths) for i in range(400) for m in range(10))
    assert set(counts) == {0.25, 0.5, 0.75, 1.0}
    assert all(abs(c / 4000 - 0.25) < 0.03 for c in counts.values())
    assert draw_strength(3, "x", options.strengths) == draw_strength(3, "x", options.strengths)


def test_dafusion_learns_words_once_and_records_strengths_tokens_and_model(tmp_path, tiny_sd):
    dataset = pocket_dataset(20)  # two images of each digit
    report = generate(config(tmp_path, tiny_sd, "dafusion", options={"per_image": 4}), dataset=dataset)
    assert report.made == 80
    out = tmp_path / "gen"
    tokens = out / "textual_inversion" / "tokens.safetensors"
    words = inversion.load_words(tokens)
    assert words is not None and words.shape[0] == 10
    records = read_manifest(out)
    strengths = []
    for record in records:
        strengths.append(record.params["strength"])
        assert record.method == "dafusion"
        assert record.prompt == f"a photo of a <{record.class_name}>"
        assert record.params["tokens"] == "textual_inversion/tokens.safetensors"
        assert record.params["tokens_sha256"] == inversion.file_sha256(tokens)
        assert record.params["slot_prompt"] == "a photo of a class"
        assert record.model["path"] == tiny_sd and record.model["hash"].startswith("sha256:")
    assert set(strengths) == {0.25, 0.5, 0.75, 1.0}  # drawn per edit, not cycled
    check_set_integrity(out)


def test_dafusion_resume_reuses_the_words_and_makes_only_what_is_missing(tmp_path, tiny_sd, monkeypatch):
    dataset = pocket_dataset(20)
    cfg = config(tmp_path, tiny_sd, "dafusion", options={"strengths": [0.5, 1.0], "per_image": 2})
    generate(cfg, dataset=dataset)
    before = set_pixels(tmp_path / "gen")
    manifest = tmp_path / "gen" / MANIFEST
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:25]))  # 15 records lost

    def no_training(*args, **kwargs):
        raise AssertionError("the words were learnt again")

    monkeypatch.setattr(inversion, "learn_class_words", no_training)
    report = generate(cfg, dataset=dataset)
    assert report.made == 15 and report.already_done == 25
    after = set_pixels(tmp_path / "gen")
    assert after.keys() == before.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    check_set_integrity(tmp_path / "gen")


@pytest.mark.parametrize("name", ["dafusion", "diffmix"])
def test_shards_make_the_unsharded_set(tmp_path, tiny_sd, name):
    dataset = pocket_dataset(20)
    options = {"per_image": 4} if name == "dafusion" else {"multiplier": 1, "finetune": FAST_FINETUNE}
    generate(config(tmp_path, tiny_sd, name, output="single", options=options), dataset=dataset)
    for shard in ("0/2", "1/2"):
        generate(config(tmp_path, tiny_sd, name, output="sharded", engine={"shard": shard}, options=options), dataset=dataset)
    single, sharded = set_pixels(tmp_path / "single"), set_pixels(tmp_path / "sharded")
    assert single.keys() == sharded.keys() and len(single) == (80 if name == "dafusion" else 20)
    assert all(np.array_equal(single[k], sharded[k]) for k in single)
    params = {r.id: r.params.get("soft_label") for r in read_manifest(tmp_path / "single")}
    assert params == {r.id: r.params.get("soft_label") for r in read_manifest(tmp_path / "sharded")}


def test_dafusion_runs_one_shot(tmp_path, tiny_sd):
    """The paper runs 1-shot: a class with a single real image learns its word from that image."""
    dataset = pocket_dataset(11)  # digit 0 twice, every other digit once
    report = generate(config(tmp_path, tiny_sd, "dafusion", options={"per_image": 1}), dataset=dataset)
    assert report.made == 11
    words = inversion.load_words(tmp_path / "gen" / "textual_inversion" / "tokens.safetensors")
    assert words is not None and words.shape[0] == 10 and len({tuple(w.tolist()) for w in words}) == 10


@pytest.mark.parametrize(
    "editor, message",
    [
        ({"name": "dafusion", "options": {"strengths": [0.25, 1.5]}}, r"editor\.options: strength must be in \(0, 1\], got 1\.5"),
        ({"name": "dafusion", "options": {"strengths": [0.0]}}, r"strength must be in \(0, 1\], got 0\.0"),
        ({"name": "diffmix", "strength": 1.2}, r"editor\.strength: strength must be in \(0, 1\], got 1\.2"),
        ({"name": "real_guidance", "strength": 0}, r"strength must be in \(0, 1\], got 0"),
        ({"name": "diffmix", "options": {"gamma": 0}}, r"gamma must be > 0"),
        ({"name": "real_guidance", "options": {"noise_by_shots": {4: 1.5}}}, r"noise_by_shots: 4 -> 1\.5"),
        ({"name": "dafusion", "options": {"inversion": {"flip_p": 2}}}, r"flip_p must be in \[0, 1\], got 2"),
        ({"name": "diffmix", "options": {"finetune": {"rank": 0}}}, r"rank must be >= 1, got 0"),
        ({"name": "diffmix", "options": {"gama": 1}}, r"options\.gama: Extra inputs are not permitted; options of 'diffmix'"),
        ({"name": "img2img", "options": {"per_image": 2}}, r"editor 'img2img' takes no options"),
    ],
)
def test_bad_strengths_and_options_fail_at_load_in_one_line(tmp_path, editor, message):
    from genaug.config import parse_config

    with pytest.raises(ConfigError, match=message) as error:
        parse_config(GenerateConfig, {"output": str(tmp_path / "gen"), "editor": editor}, source=None)
    assert "\n" not in str(error.value)


def test_a_strength_that_leaves_no_denoising_step_is_refused(tmp_path, tiny_sd):
    cfg = config(tmp_path, tiny_sd, "real_guidance", steps=5, strength=0.15)  # int(5 * 0.15) = 0
    with pytest.raises(ConfigError, match=r"strength 0\.15 with 5 steps runs no denoising step"):
        generate(cfg, dataset=pocket_dataset(4))


@pytest.mark.parametrize(
    "editor, work",
    [
        ({"name": "dafusion"}, (10.0, 0.625)),  # M = 10 edits, t0 uniform over 0.25, 0.5, 0.75, 1
        ({"name": "dafusion", "options": {"per_image": 6}}, (6.0, 0.625)),
        ({"name": "dafusion", "strength": 0.4}, (10.0, 0.4)),
        ({"name": "diffmix"}, (5.0, 0.5)),
        ({"name": "diffmix", "options": {"strength_strategy": "uniform", "strengths": [0.5, 1.0], "multiplier": 3}}, (3.0, 0.75)),
        ({"name": "real_guidance"}, (50.0, 0.15)),  # 800 per class, estimated at 16 shots
        ({"name": "real_guidance", "options": {"per_image": 2}, "strength": 0.3}, (2.0, 0.3)),
        ({"name": "img2img"}, None),
    ],
)
def test_cost_estimates_see_each_methods_items_and_strengths(editor, work):
    from genaug.config import EditorConfig
    from genaug.generation.editors import EDITORS
    from genaug.rehearsal.run import editor_steps

    config = EditorConfig(steps=20, **editor)
    cls = EDITORS[config.name]
    strengths = cls.step_strengths(config)
    assert cls.items_per_image(config) == (pytest.approx(work[0]) if work else None)
    assert sum(strengths) / len(strengths) == pytest.approx(work[1] if work else 0.5)
    assert editor_steps(config) == cls.steps_run(config) == pytest.approx(20 * (work[1] if work else 0.5))
