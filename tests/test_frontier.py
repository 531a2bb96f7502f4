"""The sampling frontier, its presets and the metrics it reports."""

import json

import numpy as np
import pytest

from genaug.config import ConfigError, EditorConfig, parse_config
from genaug.generation import frontier
from genaug.generation.presets import PRESETS_FILE, load_presets, sampling_preset, store_presets
from genaug.metrics import frechet_distance
from genaug.pocket.store import SHIPPED_DIR, is_complete

pocket = pytest.mark.skipif(not is_complete(SHIPPED_DIR), reason="no shipped pocket weights")


# ----------------------------------------------------------------------------- FD


def exact_gaussian_sample(mean: np.ndarray, std: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n points whose sample mean is ``mean`` and sample covariance exactly ``diag(std**2)``."""
    z = np.random.default_rng(seed).normal(size=(n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)).T)  # whitened: covariance I
    return mean + z * std


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    # Diagonal covariances commute: FD = |mu_r - mu_s|^2 + sum (sigma_r - sigma_s)^2.
    mu_r, mu_s = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.5])
    sd_r, sd_s = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 1.0, 0.5, 1.0])
    real = exact_gaussian_sample(mu_r, sd_r, 500, 0)
    synthetic = exact_gaussian_sample(mu_s, sd_s, 300, 1)
    expected = ((mu_r - mu_s) ** 2).sum() + ((sd_r - sd_s) ** 2).sum()  # 5 + 1 + 1 + 0 + 4 = 11
    assert expected == pytest.approx(11.0)
    assert frechet_distance(real, synthetic) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(synthetic, real) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_shapes_are_checked():
    x = np.random.default_rng(0).normal(size=(50, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="feature widths differ"):
        frechet_distance(x, x[:, :4])
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(x[:1], x)


# ----------------------------------------------------------------------------- frontier and choice


def test_pareto_front_keeps_exactly_the_undominated_points():
    speed = [1.0, 2.0, 3.0, 3.0, 0.5]
    quality = [0.99, 0.98, 0.90, 0.85, 0.99]
    assert frontier.pareto_front(speed, quality) == [True, True, True, False, False]


def _row(ips, fidelity, colour, reference=False):
    return {"images_per_second": ips, "digit_fidelity": fidelity, "colour_realised": colour, "reference": reference}


def test_fast_is_the_fastest_point_within_one_point_of_fidelity_and_two_of_colour():
    rows = [
        _row(1.0, 0.990, 0.99, reference=True),
        _row(9.0, 0.970, 0.99),  # fidelity 2 points lower: out
        _row(8.0, 0.990, 0.96),  # colour 3 points lower: out
        _row(5.0, 0.980, 0.97),  # 1 and 2 points lower: in
        _row(4.0, 1.000, 1.00),
    ]
    assert frontier.choose_fast(rows) is rows[3]
    assert frontier.choose_fast(rows[:1]) is rows[0]  # the reference qualifies when nothing else does


def test_sweep_points_are_checked_and_parsed():
    assert frontier.parse_point("dpmsolver:8:bf16") == frontier.SweepPoint("dpmsolver", 8, "bf16", 50)
    assert frontier.parse_point("unipc:6:fp32:16", 50).batch_size == 16
    with pytest.raises(ValueError, match="point 'dpm:8:fp32': scheduler: unknown scheduler 'dpm'; did you mean 'ddpm'"):
        frontier.parse_point("dpm:8:fp32")
    with pytest.raises(ValueError, match="precision must be one of"):
        frontier.SweepPoint("ddim", 8, "fp8")
    grid = frontier.sweep_grid(["ddim", "unipc"], [8, 4], ["fp32", "bf16"], [50])
    assert len(grid) == 8 and grid[0] == frontier.SweepPoint("ddim", 4, "fp32", 50)


def test_judged_sweeps_need_a_pocket_model():
    with pytest.raises(ValueError, match="speed-only"):
        frontier.check_sweep("/some/folder", "txt2img", quality=True)
    assert frontier.check_sweep("/some/folder", "txt2img", quality=False) == "txt2img"
    assert frontier.check_sweep("pocket:ip2p", None, quality=True) == "instruct"


# ----------------------------------------------------------------------------- presets


def test_sampling_preset_reads_its_file_and_names_the_allowed_values(tmp_path):
    path = tmp_path / "presets.json"
    settings = {"scheduler": "DPMSolverMultistepScheduler", "num_inference_steps": 8, "precision": "bf16"}
    store_presets("txt2img/pocket:sd", {"reference": {"scheduler": "DDIMScheduler", "num_inference_steps": 50}, "fast": settings},
                  {"machine": "test"}, path)
    assert sampling_preset("txt2img/pocket:sd", "fast", path) == settings
    with pytest.raises(ValueError, match=r"allowed: \['fast', 'reference'\]"):
        sampling_preset("txt2img/pocket:sd", "fastest", path)
    with pytest.raises(ValueError, match=r"models with presets: \['txt2img/pocket:sd'\]"):
        sampling_preset("txt2img/other", "fast", path)


def test_shipped_presets_hold_reference_and_fast_with_their_figures():
    presets = load_presets()
    assert {"txt2img/pocket:sd", "instruct/pocket:ip2p", "sdi/pocket:sd"} <= set(presets), PRESETS_FILE
    for key, entry in presets.items():
        reference, fast = entry["presets"]["reference"], entry["presets"]["fast"]
        coloured = not key.startswith("sdi/")  # SDI prompts no colour
        for preset in (reference, fast):
            assert preset["scheduler"].endswith("Scheduler") and preset["num_inference_steps"] >= 1
            assert {"images_per_second", "digit_fidelity", "fd_clip", "machine", "date"} <= set(preset["figures"])
            assert ("colour_realised" in preset["figures"]) == coloured
            assert preset["figures"]["images"] >= 200
        assert fast["figures"]["digit_fidelity"] >= reference["figures"]["digit_fidelity"] - 0.01
        if coloured:
            assert fast["figures"]["colour_realised"] >= reference["figures"]["colour_realised"] - 0.02
    assert presets["instruct/pocket:ip2p"]["presets"]["reference"]["scheduler"] == "EulerAncestralDiscreteScheduler"
    assert presets["instruct/pocket:ip2p"]["presets"]["reference"]["num_inference_steps"] == 100
    assert presets["sdi/pocket:sd"]["presets"]["reference"]["scheduler"] == "DDIMScheduler"
    assert presets["sdi/pocket:sd"]["presets"]["reference"]["num_inference_steps"] == 50


def test_an_unknown_preset_is_a_config_error_naming_the_allowed_values():
    with pytest.raises(ConfigError, match="allowed"):
        parse_config(EditorConfig, {"name": "instruct", "preset": "warp"}, "editor")


@pocket
def test_an_editor_takes_scheduler_steps_and_autocast_from_its_preset():
    from genaug.generation.editors import create_editor

    fast = sampling_preset("txt2img/pocket:sd", "fast")
    editor = create_editor(EditorConfig(name="txt2img", preset="fast"), device="cpu")
    assert editor.steps == fast["num_inference_steps"]
    assert type(editor.pipeline.scheduler).__name__ == fast["scheduler"]
    assert editor.autocast == (None if fast["precision"] == "fp32" else fast["precision"])
    params = editor.params()
    assert params["preset"] == "fast" and params["steps"] == fast["num_inference_steps"]
    explicit = create_editor(EditorConfig(name="txt2img", preset="fast", steps=3, scheduler="ddim"), device="cpu")
    assert explicit.steps == 3 and explicit.scheduler_name == "ddim"  # given fields win over the preset


# ----------------------------------------------------------------------------- judging


@pocket
def test_the_judges_score_ideal_images_high_and_mislabelled_ones_low():
    workload = frontier.pocket_workload("txt2img", "pocket:sd", 60)
    judges = frontier.Judges.for_workload(workload)
    ideal = judges.measure(workload.ideal, workload)
    assert ideal["digit_fidelity"] >= 0.95 and ideal["colour_realised"] == 1.0
    assert ideal["fd_clip"] == pytest.approx(0.0, abs=1e-6)
    shifted = np.roll(workload.ideal, 1, axis=0)  # item i shows item i-1's digit (another class) and colours
    wrong = judges.measure(shifted, workload)
    assert wrong["digit_fidelity"] <= 0.2 and wrong["colour_realised"] <= 0.2


@pocket
@pytest.mark.slow
def test_a_small_sweep_measures_speed_and_judged_quality(tmp_path):
    points = [frontier.SweepPoint("dpmsolver", 4, "bf16", 20)]
    result = frontier.sweep_sampling("pocket:sd", points, images=40, reference_batch_size=20, device="cpu")
    assert [row["reference"] for row in result.rows] == [True, False]
    reference = result.reference
    assert reference["scheduler"] == "DDIMScheduler" and reference["num_inference_steps"] == 50  # the folder's, the pipeline's
    assert result.rows[1]["scheduler"] == "DPMSolverMultistepScheduler" and result.rows[1]["precision"] == "bf16"
    from genaug.pocket.quality import GATES

    assert reference["digit_fidelity"] >= GATES["sd_digit_fidelity"] and reference["colour_realised"] >= GATES["sd_color_realised"]
    for row in result.rows:
        assert row["images"] == 40 and row["images_per_second"] > 0 and 0 < row["unet_share"] <= 1
        assert np.isfinite(row["fd_clip"]) and row["fd_clip"] >= 0
    assert result.fast in result.rows
    assert any(row["frontier"] for row in result.rows)
    paths = frontier.write_sweep(result, tmp_path)
    saved = json.loads(paths["json"].read_text())
    assert len(saved["rows"]) == 2 and saved["meta"]["images"] == 40 and "load_average_before" in saved["meta"]
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| scheduler | steps |" in paths["table"].read_text()
    entries = frontier.preset_entries(result)
    assert entries["reference"]["num_inference_steps"] == 50 and "images_per_second" in entries["fast"]["figures"]


@pytest.mark.parametrize("name", ["sd", "ip2p"])
def test_a_speed_only_sweep_runs_on_any_pipeline_folder(tmp_path, name):
    """Any diffusers folder (here tiny random pipelines; the real-architecture stand-ins alike):
    images/s per setting, the generator read from model_index.json, no judging."""
    from genaug.pocket.tiny import make_tiny_pocket

    folder = str(make_tiny_pocket(tmp_path / "models", models=[name])[name])
    points = [frontier.SweepPoint("dpmsolver", 2, "fp32", 4), frontier.SweepPoint("unipc", 2, "bf16", 4)]
    result = frontier.sweep_sampling(folder, points, images=4, quality=False, reference_batch_size=4, device="cpu")
    assert result.meta["generator"] == {"sd": "txt2img", "ip2p": "instruct"}[name] and result.fast is None
    assert [row["scheduler"] for row in result.rows[1:]] == ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler"]
    assert all(row["images"] == 4 and row["images_per_second"] > 0 and "digit_fidelity" not in row for row in result.rows)
    paths = frontier.write_sweep(result, tmp_path / "out")
    assert "figure" not in paths and "images/s" in paths["table"].read_text()


def test_a_speed_only_sdi_sweep_renders_the_sampled_vectors(tmp_path):
    """SDI's reference is DDIM at the config's steps; every point renders the same sampled vectors."""
    from test_sdi_generate import random_samples
    from test_sdi_helpers import sdi_config

    from genaug.sdi.sample import samples_path

    config = sdi_config(tmp_path / "work", generate={"steps": 3})
    random_samples(samples_path(config.work_dir, config.sample.sampler))
    with pytest.raises(ValueError, match="needs the SDI config"):
        frontier.check_sweep(config.model, "sdi", quality=False)
    points = [frontier.SweepPoint("dpmsolver", 2, "fp32", 3)]
    result = frontier.sweep_sampling(config.model, points, generator="sdi", images=6, quality=False,
                                     reference_batch_size=3, device="cpu", sdi=config)
    assert [(row["scheduler"], row["num_inference_steps"]) for row in result.rows] == [("DDIMScheduler", 3), ("DPMSolverMultistepScheduler", 2)]
    assert all(row["images"] == 6 for row in result.rows) and frontier.preset_key(result) == f"sdi/{config.model}"


def test_sdi_generation_takes_scheduler_steps_and_autocast_from_its_preset(tmp_path, monkeypatch):
    from test_sdi_generate import random_samples
    from test_sdi_helpers import sdi_config

    import genaug.generation.presets as presets
    from genaug.sdi.generate import build_renderer

    monkeypatch.setattr(presets, "PRESETS_FILE", tmp_path / "presets.json")
    table = random_samples(tmp_path / "samples.safetensors")
    model = sdi_config(tmp_path / "work").model
    fast = {"scheduler": "UniPCMultistepScheduler", "num_inference_steps": 4, "precision": "bf16"}
    store_presets(f"sdi/{model}", {"fast": fast}, {})
    config = sdi_config(tmp_path / "work")
    config.generate = type(config.generate)(preset="fast")  # no steps given: the preset's
    renderer = build_renderer(config, table)
    assert renderer.steps == 4 and type(renderer.pipeline.scheduler).__name__ == "UniPCMultistepScheduler"
    assert renderer.autocast == "bf16" and renderer.params()["preset"] == "fast"
    assert build_renderer(sdi_config(tmp_path / "work", generate={"preset": "fast", "steps": 7}), table).steps == 7  # given steps win
    with pytest.raises(ConfigError, match="allowed"):
        parse_config(type(sdi_config(tmp_path / "work")), {"work_dir": str(tmp_path), "model": model, "generate": {"preset": "slow"}})
