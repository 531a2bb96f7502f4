"""The mix stage over a generated set (no diffusion model needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genaug.config import FractalBankConfig, MixConfig
from genaug.generation.seeds import item_seed, seed_rng
from genaug.manifest import MANIFEST, SampleRecord, SetWriter, read_manifest
from genaug.mixing.concat import feathered_halves, mask_coverage, random_orientation, random_rect_mask, rect_mix
from genaug.mixing.fractals import fractal_bank, fractal_blend, resize_images
from genaug.mixing.fractals import make_fractal_folder
from genaug.mixing.stage import mix

from generation_helpers import check_set_integrity, pocket_dataset, set_pixels

GENERATED_SIZE = 32  # generated at another size than the 16x16 originals: mix resizes first


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))


def write_generated_set(set_dir, dataset, extra_records=()):
    rng = np.random.default_rng(0)
    with SetWriter(set_dir) as writer:
        for row, source_id in enumerate(dataset.ids):
            label = int(dataset.labels[row])
            item_id = f"{source_id.replace('/', '_')}-instruct-p0"
            record = SampleRecord(
                id=item_id, path=writer.image_path(item_id, dataset.class_names[label]), label=label,
                class_name=dataset.class_names[label], method="instruct", source_ids=[source_id], prompt="snowy",
                model={"path": "fake"},
            )
            writer.add(record, rng.integers(0, 256, (GENERATED_SIZE, GENERATED_SIZE, 3), dtype=np.uint8))
        for record, image in extra_records:
            writer.add(record, image)


def mix_config(tmp_path, **kw):
    defaults = dict(generated=tmp_path / "gen", output=tmp_path / "mixed", methods=["concat", "rect", "fractal"],
                    band=4, fractals={"count": 5, "size": 16, "seed": 3}, progress=False)
    return MixConfig(**{**defaults, **kw})


def originals_and_generated(tmp_path, dataset, record):
    real_id, generated_id = record.source_ids
    original = torch.from_numpy(dataset.images[dataset.ids.index(real_id)]).permute(2, 0, 1)[None]
    gen = read_manifest(tmp_path / "gen")
    gen_record = next(r for r in gen if r.id == generated_id)
    edited = torch.from_numpy(np.asarray(Image.open(tmp_path / "gen" / gen_record.path))).permute(2, 0, 1)[None]
    return original, resize_images(edited, (16, 16))


def test_mixed_sets_point_to_their_sources_and_can_be_recomputed(tmp_path):
    dataset = pocket_dataset(6)
    write_generated_set(tmp_path / "gen", dataset)
    config = mix_config(tmp_path)
    reports = mix(config, dataset=dataset)
    assert {m: r.made for m, r in reports.items()} == {"concat": 6, "rect": 6, "fractal": 6}
    bank = fractal_bank(5, 16, 3)
    for method in ("concat", "rect", "fractal"):
        pixels = set_pixels(tmp_path / "mixed" / method)
        check_set_integrity(tmp_path / "mixed" / method)
        for record in read_manifest(tmp_path / "mixed" / method):
            assert record.method == method and record.source_ids[0] in dataset.ids
            assert record.id == f"{record.source_ids[1]}-{method}" and record.prompt == "snowy"
            original, edited = originals_and_generated(tmp_path, dataset, record)
            rng = seed_rng(item_seed(config.seed, record.id))
            if method == "concat":
                orientation = random_orientation(rng)
                assert record.params == {"orientation": orientation, "band": 4, "input_key": record.params["input_key"]}
                expected = feathered_halves(original, edited, orientation, band=4)
                # the original's half is untouched: 6 rows/columns for 16 px with a 4 px ramp
                kept = expected[..., :6, :] if orientation == "vertical" else expected[..., :6]
                assert torch.equal(kept, original[..., :6, :] if orientation == "vertical" else original[..., :6])
            elif method == "rect":
                mask = random_rect_mask(16, 16, 0.5, rng)
                assert record.params == {"ratio": 0.5, "coverage": round(mask_coverage(mask), 6), "input_key": record.params["input_key"]}
                assert 0 < record.params["coverage"] < 1  # about r; side rounding can push it past r
                expected = rect_mix(original, edited, mask[None])
            else:
                concat = feathered_halves(original, edited, random_orientation(rng), band=4)
                index = int(rng.integers(5))
                assert record.params["fractal_index"] == index and record.params["alpha"] == 0.2
                expected = fractal_blend(concat, bank[[index]], alpha=0.2)
            assert np.array_equal(pixels[record.id], expected[0].permute(1, 2, 0).numpy())


def test_mixing_is_resumable_and_independent_of_batch_size(tmp_path):
    dataset = pocket_dataset(7)
    write_generated_set(tmp_path / "gen", dataset)
    mix(mix_config(tmp_path, batch_size=64), dataset=dataset)
    reference = {m: set_pixels(tmp_path / "mixed" / m) for m in ("concat", "rect", "fractal")}

    manifest = tmp_path / "mixed" / "rect" / MANIFEST
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:2]))
    reports = mix(mix_config(tmp_path, batch_size=3), dataset=dataset)
    assert reports["rect"].made == 5 and reports["concat"].made == 0
    resumed = set_pixels(tmp_path / "mixed" / "rect")
    assert all(np.array_equal(resumed[k], reference["rect"][k]) for k in reference["rect"])

    mix(mix_config(tmp_path, output=tmp_path / "small", batch_size=2), dataset=dataset)
    for method, pixels in reference.items():
        small = set_pixels(tmp_path / "small" / method)
        assert all(np.array_equal(small[k], pixels[k]) for k in pixels)


def test_records_without_a_real_source_are_skipped_and_unknown_sources_are_errors(tmp_path):
    dataset = pocket_dataset(3)
    image = np.zeros((16, 16, 3), np.uint8)
    txt2img = SampleRecord(id="zero-txt2img-00000-p0", path="images/zero/t.png", label=0, class_name="zero", method="txt2img")
    write_generated_set(tmp_path / "gen", dataset, [(txt2img, image)])
    reports = mix(mix_config(tmp_path, methods=["concat"]), dataset=dataset)
    assert reports["concat"].made == 3 and reports["concat"].skipped_without_source == ["zero-txt2img-00000-p0"]

    with pytest.raises(ValueError, match="pocket/0002"):
        mix(mix_config(tmp_path, methods=["concat"]), dataset=pocket_dataset(2))
    other = pocket_dataset(3)
    other.class_names = [f"digit{i}" for i in range(10)]
    with pytest.raises(ValueError, match="lacks"):
        mix(mix_config(tmp_path, methods=["concat"]), dataset=other)


def test_make_fractal_folder_writes_a_reusable_bank(tmp_path):
    paths = make_fractal_folder(FractalBankConfig(count=3, size=16, seed=1), tmp_path / "fractals")
    assert [p.name for p in paths] == ["fractal_00000.png", "fractal_00001.png", "fractal_00002.png"]
    folder_bank = fractal_bank(None, 16, folder=tmp_path / "fractals")
    assert torch.equal(folder_bank, fractal_bank(3, 16, 1))


def test_shb_set_records_resolve_and_resume(tmp_path):
    from genaug.clip import Clip
    from genaug.mixing import semantic_hybrid_blend
    from genaug.pocket.tiny import make_tiny_pocket

    clip_dir = make_tiny_pocket(tmp_path / "tiny")["clip"]
    dataset = pocket_dataset(7)
    write_generated_set(tmp_path / "gen", dataset)
    config = mix_config(tmp_path, methods=["shb"], batch_size=4, shb={"clip": str(clip_dir), "heatmaps": True, "device": "cpu"})
    reports = mix(config, dataset=dataset)
    set_dir = tmp_path / "mixed" / "shb"
    assert reports["shb"].made == 7
    check_set_integrity(set_dir)
    clip = Clip.from_pretrained(clip_dir)
    pixels = set_pixels(set_dir)
    for record in read_manifest(set_dir):
        assert record.method == "shb" and record.id == f"{record.source_ids[1]}-shb"
        assert record.source_ids[0] in dataset.ids
        params = record.params
        assert {k: params[k] for k in ("patch", "stride", "percentile", "mode")} == {"patch": 8, "stride": 4, "percentile": 30.0, "mode": "binary"}
        assert params["prompt"] == f"a photo of a {record.class_name}" and params["clip"]["path"] == str(clip_dir.resolve())
        assert 0.15 < params["replaced_fraction"] < 0.45
        with Image.open(set_dir / params["heatmap"]) as heatmap:
            assert heatmap.mode == "L" and heatmap.size == (16, 16)
            heat = np.asarray(heatmap)
        original, edited = originals_and_generated(tmp_path, dataset, record)
        expected = semantic_hybrid_blend(original, edited, [record.class_name], clip, return_heatmaps=True)
        assert np.array_equal(pixels[record.id], expected.images[0].permute(1, 2, 0).numpy())
        assert params["replaced_fraction"] == round(float(expected.replaced_fraction[0]), 6)
        # grey levels of the map; float rounding of a batch of 4 vs 1 may move a level by one
        assert np.abs(heat.astype(int) - (expected.heatmaps[0] * 255).round().numpy()).max() <= 1

    manifest = set_dir / MANIFEST
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:3]))
    again = mix(config.model_copy(update={"batch_size": 64}), dataset=dataset)
    assert again["shb"].already_done == 3 and again["shb"].made == 4
    check_set_integrity(set_dir)
    assert all(np.array_equal(v, pixels[k]) for k, v in set_pixels(set_dir).items())


def test_shb_at_the_generation_resolution(tmp_path):
    """``shb.size``: originals upsampled, edits resized from their files, output at that size."""
    from genaug.clip import Clip
    from genaug.mixing import semantic_hybrid_blend
    from genaug.pocket.tiny import make_tiny_pocket

    clip_dir = make_tiny_pocket(tmp_path / "tiny")["clip"]
    dataset = pocket_dataset(3)
    write_generated_set(tmp_path / "gen", dataset)
    config = mix_config(tmp_path, methods=["shb"], shb={"clip": str(clip_dir), "device": "cpu", "size": 48})
    assert mix(config, dataset=dataset)["shb"].made == 3
    set_dir = tmp_path / "mixed" / "shb"
    check_set_integrity(set_dir)
    clip = Clip.from_pretrained(clip_dir)
    for record in read_manifest(set_dir):
        assert record.params["size"] == 48 and (record.params["patch"], record.params["stride"]) == (24, 12)
        original, _ = originals_and_generated(tmp_path, dataset, record)
        generated = {r.id: r for r in read_manifest(tmp_path / "gen")}[record.source_ids[1]]
        with Image.open(tmp_path / "gen" / generated.path) as image:  # GENERATED_SIZE, resized from the file
            edit = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)[None]
        expected = semantic_hybrid_blend(resize_images(original, (48, 48)), resize_images(edit, (48, 48)), [record.class_name], clip)
        with Image.open(set_dir / record.path) as image:
            assert image.size == (48, 48)
            assert np.array_equal(np.asarray(image), expected.images[0].permute(1, 2, 0).numpy())


def test_shb_parameters_are_validated(tmp_path):
    config = mix_config(tmp_path, methods=["shb"], shb={"patch": 16, "mode": "soft"})
    assert (config.shb.patch, config.shb.stride, config.shb.mode, config.shb.clip) == (16, None, "soft", "pocket")
    for bad in ({"percentile": 130}, {"patch": 0}, {"mode": "blurry"}, {"prompt": "a photo"}, {"clip_batch_size": 0}):
        with pytest.raises(ValueError):
            mix_config(tmp_path, methods=["shb"], shb=bad)
