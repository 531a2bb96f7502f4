"""The report's synthetic-set metrics: the table, the parity notes and the gain-against-metrics figure."""

from __future__ import annotations

import json

from PIL import Image

from genaug.report import write_report
from genaug.report.figures import GAIN_PANELS, GainPoint, draw_gain


def metrics(fd, coverage, clip, classifier, diversity):
    return {"key": "k", "clip": {"id": "pocket:clip"}, "classifier": "arms/base/seed-0-abc", "k": 5, "images": 100,
            "fd": fd, "precision": 0.9, "recall": 0.8, "density": 1.1, "coverage": coverage, "fidelity_clip": clip,
            "fidelity_classifier": classifier, "diversity": diversity, "fidelity_clip_real": 0.94,
            "diversity_real": 0.47}


def arm(name, delta, set_metrics=None, budget=None, synthetic=100):
    entry = {"name": name, "description": "", "policy": {"name": "concat", "kwargs": {}}, "stages": [], "runs": [],
             "top1_mean": 50.0 + delta, "top1_std": 1.0, "delta_top1": delta, "real_samples": 100,
             "synthetic_samples": synthetic, "synthetic_set": "artifacts/x" if set_metrics else None}
    if set_metrics:
        entry["set_metrics"] = set_metrics
    if budget:
        entry["budget"] = budget
    return entry


def test_set_metrics_section_table_notes_and_figure(tmp_path):
    budget = {"synthetic_per_real": 1.0, "seed": 0, "images": 100, "per_class": {}, "dir": "artifacts/budget-123"}
    arms = [
        arm("base", 0.0),
        arm("dm_single", 10.0, metrics(0.31, 0.80, 0.55, 0.40, 0.52)),
        arm("dm_all", 14.0, metrics(0.25, 0.90, 0.60, 0.45, 0.50), synthetic=300),
        arm("dm_all@parity", 12.0, metrics(0.27, 0.85, 0.61, 0.44, 0.49), budget=budget),
        arm("mixup", -2.0),
    ]
    results = {"experiment": "t", "seeds": [0, 1], "baseline": "base", "epochs": 3,
               "dataset": {"name": "pocket_digits", "num_classes": 10, "class_names": [], "train": 100}, "arms": arms}
    (tmp_path / "results.json").write_text(json.dumps(results))
    index = write_report(tmp_path)
    html = index.read_text(encoding="utf-8")
    assert '<section id="set-metrics">' in html and 'href="#set-metrics"' in html
    section = html[html.index('<section id="set-metrics">'):].split("</section>")[0]
    assert [name for name in ("dm_single", "dm_all", "dm_all@parity", "base", "mixup") if f'<td class="arm">{name}</td>' in section] == [
        "dm_single", "dm_all", "dm_all@parity"]
    assert "natural 3×" in section and "natural 1×" in section and "parity 1× (seed 0)" in section
    assert "0.310" in section and "0.94" in section  # FD to three digits; the real images' own CLIP fidelity
    assert "artifacts/budget-123/budget.json" in section
    figure = tmp_path / "report" / "figures" / "gain-vs-metrics.png"
    assert figure.is_file() and 'src="figures/gain-vs-metrics.png"' in section
    width, height = Image.open(figure).size
    assert width > 2.5 * height  # one row of panels


def test_gain_figure_has_one_labelled_panel_per_metric():
    points = [GainPoint("a", 1.0, 0.5, False, {"fd": 0.3, "coverage": 0.8, "fidelity": 0.5, "diversity": 0.4}),
              GainPoint("b", 3.0, 0.5, True, {"fd": 0.2, "coverage": 0.9, "fidelity": 0.6, "diversity": None}),
              GainPoint("c", 2.0, 0.5, False, {"fd": 0.25, "coverage": 0.7, "fidelity": 0.7, "diversity": 0.5})]
    figure = draw_gain(points, "CLIP zero-shot")
    axes = figure.axes
    assert [ax.get_title(loc="left") for ax in axes] == [title for _, title, _ in GAIN_PANELS]
    assert [len(ax.texts) for ax in axes] == [4, 4, 4, 2]  # arm labels, plus r where three arms have the metric
    assert axes[0].texts[-1].get_text() == "r = -1.00 (n = 3)"  # gain falls linearly with FD here
    assert axes[2].get_xlabel() == "judge: CLIP zero-shot"
