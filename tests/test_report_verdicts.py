"""The report's verdicts: headline, forest plot per compute view, sentences; seen in headless Chromium."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from markupsafe import escape
from PIL import Image

from genaug.experiment.verdicts import comparisons, headline, noise_summary
from genaug.report import write_report

from test_report import CHROMIUM, headless_chromium, parse

BASE = [50.0, 52.0, 49.0, 51.0, 50.0]
GAINS = {"big": [9.0, 10.0, 11.0, 10.0, 9.5], "small": [1.0, -1.0, 2.0, 0.0, -2.0], "worse": [-6.0, -5.0, -7.0, -6.5, -5.5]}


def _arm(name: str, natural: list[float], matched: list[float]) -> dict:
    def runs(values, view):
        return [{"seed": s, "view": view, "top1": v, "balanced_accuracy": v, "test_se": 2.3, "dir": f"arms/{name}/seed-{s}"}
                for s, v in enumerate(values)]  # fmt: skip

    mean = sum(natural) / len(natural)
    return {"name": name, "description": f"{name} arm", "stages": [], "runs": runs(natural, "natural"), "seeds": list(range(5)),
            "top1_mean": mean, "top1_std": 1.0, "delta_top1": mean - sum(BASE) / 5, "optimizer_steps": 420, "images_seen": 6000,
            "test_se": 2.3, "real_samples": 100, "synthetic_samples": 100,
            "views": {"natural": {"runs": runs(natural, "natural"), "optimizer_steps": 420},
                      "matched": {"runs": runs(matched, "matched"), "optimizer_steps": 780}}}  # fmt: skip


def write_results(folder: Path) -> dict:
    arms = [_arm("baseline", BASE, [b + 4 for b in BASE])]
    for name, gains in GAINS.items():
        natural = [b + g for b, g in zip(BASE, gains)]
        arms.append(_arm(name, natural, natural))  # at matched steps these arms equal the longer baseline + (gain - 4)
    results = {"experiment": "verdict-report", "seeds": list(range(5)), "baseline": "baseline", "views": ["natural", "matched"],
               "compare": [["big", "small"]], "stats": {"test": "t", "level": 0.95, "alpha": 0.05},
               "dataset": {"name": "pocket_digits", "num_classes": 10, "train": 100, "val": 179, "test": 620}, "epochs": 60,
               "arms": arms}  # fmt: skip
    results["comparisons"] = [c.to_json() for c in comparisons(results)]
    results["noise"] = noise_summary(results)
    results["headline"] = headline(results)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return results


def test_report_leads_with_the_resolved_headline_and_draws_a_forest_per_view(tmp_path):
    results = write_results(tmp_path)
    assert results["headline"].startswith("Best at matched optimizer steps: big, +5.9 [")
    index = write_report(tmp_path)
    html = index.read_text(encoding="utf-8")
    parts = parse(html)
    assert parts.sections[:2] == ["verdicts", "results"]
    assert str(escape(results["headline"])) in html
    named = next(c for c in results["comparisons"] if c["named"] and c["view"] == "natural")
    assert named["sentence"].startswith("big vs small: +9.9 [") and str(escape(named["sentence"])) in html
    forest = index.parent / "figures" / "forest.png"
    width, height = Image.open(forest).size
    assert width > 2 * height > 0  # two panels side by side
    assert "worse" in html and "better" in html


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium chromium-driver)")
def test_verdicts_section_shows_in_headless_chromium(tmp_path):
    from selenium.webdriver.common.by import By

    results = write_results(tmp_path)
    index = write_report(tmp_path)
    with tempfile.TemporaryDirectory(prefix="genaug-chromium-") as profile:
        driver = headless_chromium(profile)
        try:
            driver.get(index.resolve().as_uri())
            finding = driver.find_element(By.CSS_SELECTOR, "header .finding").text
            assert finding == results["headline"]
            section = driver.find_element(By.ID, "verdicts")
            image = section.find_element(By.TAG_NAME, "img")
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 500
            sentences = [item.text for item in section.find_elements(By.CSS_SELECTOR, "ul.sentences li")]
            assert any(text.endswith(named["sentence"]) for text in sentences for named in results["comparisons"] if named["named"])
            assert len(sentences) == len(results["comparisons"])
            screenshot = tmp_path / "verdicts.png"
            driver.set_window_size(1280, 1400)
            assert section.screenshot(str(screenshot)) and Image.open(screenshot).size[1] > 400
        finally:
            driver.quit()


def test_warnings_are_grouped_by_the_arms_they_concern_and_their_rows_marked(tmp_path):
    results = write_results(tmp_path)
    pocket = "stages.edits.editor.model is pocket:ip2p, a pocket model trained on 16 px digits, but the dataset is 'folder'"
    results["run_warnings"] = [{"text": pocket, "arms": ["big", "small"]}, {"text": "dataset.labels_per_class is 10 but ...", "arms": []}]
    results["arms"][1]["warnings"] = ["(seed 1): validation top-1 was still rising at the end of training"]
    (tmp_path / "results.json").write_text(json.dumps(results), encoding="utf-8")
    html = write_report(tmp_path).read_text(encoding="utf-8")
    section = html[html.index('<section id="warnings">') :].split("</section>")[0]
    titles = [part.split("</h3>")[0] for part in section.split("<h3>")[1:]]
    assert titles == ["The whole run", "big", "small"]
    big = section.split("<h3>big</h3>")[1].split("</ul>")[0]
    assert str(escape(pocket)) in big and "big (seed 1): validation top-1 was still rising" in big
    rows = {row.split('<span class="arm-name">')[1].split("</span>")[0]: row for row in html.split("<tr")[1:] if 'arm-name' in row}
    assert "⚠ 2" in rows["big"] and "⚠ 1" in rows["small"] and "⚠" not in rows["worse"]


def test_a_stage_warning_concerns_the_arms_that_train_on_what_the_stage_made(tmp_path):
    from genaug.experiment import load_experiment
    from genaug.experiment.graph import build_graph
    from genaug.experiment.runner import attribute_warnings

    from test_experiment import STAGES, write_experiment

    arms = [{"name": "baseline"}, {"name": "dm", "data": "mixed/fractal"}, {"name": "raw", "data": "edits"}]
    experiment = load_experiment(write_experiment(tmp_path, stages=STAGES, arms=arms))
    nodes = build_graph(experiment, tmp_path / "art")
    found = attribute_warnings(["stages.edits.editor.model is pocket:ip2p ...", "stages.mixed.fractal ...", "other"], experiment, nodes)
    assert [w["arms"] for w in found] == [["dm", "raw"], ["dm"], []]
