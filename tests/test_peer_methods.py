"""Real-Guidance, Diff-Mix and DA-Fusion on the generation engine (tiny random pocket SD).

Records, per-item strengths, soft labels, resume, shards and bad input; the quality of
textual inversion is tested on the trained pocket SD in test_textual_inversion.py.
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
from genaug.pocket.tiny import make_tiny_pocket

from generation_helpers import check_set_integrity, pocket_dataset, set_pixels

STEPS = 4
FAST_INVERSION = {"steps": 3, "batch_size": 4}


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return str(make_tiny_pocket(tmp_path_factory.mktemp("tiny"), models=["sd"])["sd"])


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def config(tmp_path, model, name, output="gen", engine=None, **editor) -> GenerateConfig:
    if name == "dafusion":
        editor.setdefault("options", {}).setdefault("inversion", FAST_INVERSION)
    return GenerateConfig(
        output=tmp_path / output,
        editor={"name": name, "model": model, "steps": STEPS, **editor},
        engine={"progress": False, "batch_size": 5, **(engine or {})},
    )


def by_id(set_dir):
    return {record.id: record for record in read_manifest(set_dir)}


def test_real_guidance_records_the_class_prompt_at_strength_0_15(tmp_path, tiny_sd):
    dataset = pocket_dataset(6)
    report = generate(config(tmp_path, tiny_sd, "real_guidance", steps=20), dataset=dataset)
    assert report.made == 6
    records = by_id(tmp_path / "gen")
    assert sorted(records) == [f"pocket_{i:04d}-real_guidance-0" for i in range(6)]
    for i in range(6):
        record = records[f"pocket_{i:04d}-real_guidance-0"]
        assert record.method == "real_guidance" and record.source_ids == [f"pocket/{i:04d}"]
        assert record.params["strength"] == 0.15 and record.params["steps"] == 20
        assert record.prompt == f"a photo of a {dataset.class_names[int(dataset.labels[i])]}"
    check_set_integrity(tmp_path / "gen")


def test_diffmix_soft_labels_are_exact_and_target_another_class(tmp_path, tiny_sd):
    dataset = pocket_dataset(10)
    generate(config(tmp_path, tiny_sd, "diffmix", strength=0.5), dataset=dataset)
    records = read_manifest(tmp_path / "gen")
    assert len(records) == 10
    targets = set()
    for record in records:
        source, target = record.label, record.params["target_label"]
        assert target != source and record.params["target_class"] == dataset.class_names[target]
        assert record.prompt == f"a photo of a {dataset.class_names[target]}"
        soft = record.params["soft_label"]
        assert soft["labels"] == [source, target]
        assert soft["classes"] == [dataset.class_names[source], dataset.class_names[target]]
        assert soft["weights"] == [1 - math.sqrt(0.5), math.sqrt(0.5)]  # s = 0.5, gamma = 0.5
        assert record.params["strength"] == 0.5 and record.params["gamma"] == 0.5
        targets.add(target)
    assert len(targets) > 3  # drawn per item, not one fixed class
    assert soft_label(0, 1, 0.81, 0.5) == pytest.approx((0.1, 0.9))
    assert soft_label(0, 1, 0.25, 1.0) == (0.75, 0.25)


def test_diffmix_draws_strengths_from_its_list_by_item_seed(tmp_path, tiny_sd):
    dataset = pocket_dataset(12)
    cfg = config(tmp_path, tiny_sd, "diffmix", options={"strengths": [0.5, 1.0], "gamma": 2.0, "per_image": 2})
    generate(cfg, dataset=dataset)
    records = read_manifest(tmp_path / "gen")
    assert len(records) == 24
    strengths = [record.params["strength"] for record in records]
    assert set(strengths) == {0.5, 1.0}
    for record in records:
        s = record.params["strength"]
        assert record.params["soft_label"]["weights"] == [1 - s**2, s**2]


def test_dafusion_learns_words_once_and_records_strengths_tokens_and_model(tmp_path, tiny_sd):
    dataset = pocket_dataset(20)  # two images of each digit
    report = generate(config(tmp_path, tiny_sd, "dafusion"), dataset=dataset)
    assert report.made == 80
    out = tmp_path / "gen"
    tokens = out / "textual_inversion" / "tokens.safetensors"
    words = inversion.load_words(tokens)
    assert words is not None and words.shape[0] == 10
    records = read_manifest(out)
    per_source: dict[str, list[float]] = {}
    for record in records:
        per_source.setdefault(record.source_ids[0], []).append(record.params["strength"])
        assert record.method == "dafusion"
        assert record.prompt == f"a photo of a <{record.class_name}>"
        assert record.params["tokens"] == "textual_inversion/tokens.safetensors"
        assert record.params["tokens_sha256"] == inversion.file_sha256(tokens)
        assert record.params["slot_prompt"] == "a photo of a class"
        assert record.model["path"] == tiny_sd and record.model["hash"].startswith("sha256:")
    assert len(per_source) == 20 and all(sorted(s) == [0.25, 0.5, 0.75, 1.0] for s in per_source.values())
    check_set_integrity(out)


def test_dafusion_resume_reuses_the_words_and_makes_only_what_is_missing(tmp_path, tiny_sd, monkeypatch):
    dataset = pocket_dataset(20)
    cfg = config(tmp_path, tiny_sd, "dafusion", options={"strengths": [0.5, 1.0]})
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
    generate(config(tmp_path, tiny_sd, name, output="single"), dataset=dataset)
    for shard in ("0/2", "1/2"):
        generate(config(tmp_path, tiny_sd, name, output="sharded", engine={"shard": shard}), dataset=dataset)
    single, sharded = set_pixels(tmp_path / "single"), set_pixels(tmp_path / "sharded")
    assert single.keys() == sharded.keys() and len(single) == (80 if name == "dafusion" else 20)
    assert all(np.array_equal(single[k], sharded[k]) for k in single)
    params = {r.id: r.params.get("soft_label") for r in read_manifest(tmp_path / "single")}
    assert params == {r.id: r.params.get("soft_label") for r in read_manifest(tmp_path / "sharded")}


def test_dafusion_refuses_a_class_with_one_image_before_writing(tmp_path, tiny_sd):
    dataset = pocket_dataset(11)  # digit 0 twice, every other digit once
    with pytest.raises(ConfigError, match=r"^editor dafusion: class 'one' has 1 real training image; .*at least 2"):
        generate(config(tmp_path, tiny_sd, "dafusion"), dataset=dataset)
    assert not (tmp_path / "gen").exists()


@pytest.mark.parametrize(
    "editor, message",
    [
        ({"name": "dafusion", "options": {"strengths": [0.25, 1.5]}}, r"editor\.options: strength must be in \(0, 1\], got 1\.5"),
        ({"name": "dafusion", "options": {"strengths": [0.0]}}, r"strength must be in \(0, 1\], got 0\.0"),
        ({"name": "diffmix", "strength": 1.2}, r"editor\.strength: strength must be in \(0, 1\], got 1\.2"),
        ({"name": "real_guidance", "strength": 0}, r"strength must be in \(0, 1\], got 0"),
        ({"name": "diffmix", "options": {"gamma": 0}}, r"gamma must be > 0"),
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
    cfg = config(tmp_path, tiny_sd, "real_guidance", steps=5)  # int(5 * 0.15) = 0
    with pytest.raises(ConfigError, match=r"strength 0\.15 with 5 steps runs no denoising step"):
        generate(cfg, dataset=pocket_dataset(4))


@pytest.mark.parametrize(
    "editor, work",
    [
        ({"name": "dafusion"}, (4.0, 0.625)),  # one edit at each of 0.25, 0.5, 0.75, 1
        ({"name": "dafusion", "options": {"per_image": 6}}, (6.0, (0.25 + 0.5 + 0.75 + 1 + 0.25 + 0.5) / 6)),
        ({"name": "dafusion", "strength": 0.4}, (1.0, 0.4)),
        ({"name": "diffmix", "options": {"strengths": [0.5, 1.0], "per_image": 3}}, (3.0, 0.75)),
        ({"name": "real_guidance"}, (1.0, 0.15)),
        ({"name": "img2img"}, None),
    ],
)
def test_cost_estimates_see_each_methods_items_and_strengths(editor, work):
    from genaug.config import EditorConfig
    from genaug.generation.editors import EDITORS
    from genaug.rehearsal.run import editor_steps

    config = EditorConfig(steps=20, **editor)
    assert EDITORS[config.name].planned_work(config) == (pytest.approx(work) if work else None)
    assert editor_steps(config) == pytest.approx(20 * (work[1] if work else 0.5))
