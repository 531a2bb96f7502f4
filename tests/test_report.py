"""The HTML report of an experiment run: contents, escaping, offline images, and the page in a browser."""

from __future__ import annotations

import json
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape
from PIL import Image

from genaug.data import load_splits
from genaug.report import write_report

from report_helpers import ARMS, DATASET, MARKUP_DESCRIPTION, SCRIPT_CLASS, build_run_folder

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ALL_SECTIONS = {"results", "accuracy", "samples", "schedules", "sdi", "filters", "cost"}


class PageParts(HTMLParser):
    """What the tests look at: section ids, images, links, arm names, and the sample grid."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.tags: set[str] = set()
        self.arms: list[str] = []
        self.grid_columns: list[str] = []
        self.grid_rows: list[dict] = []
        self._in_grid = False
        self._capture: tuple[str, list[str]] | None = None  # (closing tag, list whose last item grows)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        elif tag == "a":
            self.links.append(attrs.get("href", ""))
        elif tag == "table":
            self._in_grid = "grid" in classes
        elif tag == "img":
            self.images.append(attrs)
            if self._in_grid:
                self.grid_rows[-1]["images"].append(attrs)
        elif "arm-name" in classes:
            self._start_capture(tag, self.arms)
        elif self._in_grid and tag == "th" and "class" in classes:
            self.grid_rows.append({"class": "", "images": []})
            self._capture = (tag, None)
        elif self._in_grid and tag == "th":
            self._start_capture(tag, self.grid_columns)

    def _start_capture(self, tag, into):
        into.append("")
        self._capture = (tag, into)

    def handle_endtag(self, tag):
        if self._capture and tag == self._capture[0]:
            self._capture = None

    def handle_data(self, data):
        if self._capture is None:
            return
        into = self._capture[1]
        if into is None:
            self.grid_rows[-1]["class"] += data
        else:
            into[-1] += data.strip()


def parse(html: str) -> PageParts:
    parts = PageParts()
    parts.feed(html)
    return parts


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    run_dir = build_run_folder(tmp_path_factory.mktemp("report") / "run")
    return write_report(run_dir)


@pytest.fixture(scope="module")
def page(report) -> PageParts:
    return parse(report.read_text(encoding="utf-8"))


def test_report_has_every_section_and_every_image_is_a_file_beside_it(report, page):
    assert report.name == "index.html" and report.parent.name == "report"
    assert set(page.sections) == ALL_SECTIONS
    assert page.images
    for image in page.images:
        src = image["src"]
        assert not src.startswith(("/", "http:", "https:", "file:", "data:")) and "//" not in src, src
        assert (report.parent / src).is_file(), f"missing {src}"
    assert all(link.startswith("#") for link in page.links), "the page links nothing outside itself"
    assert not page.tags & {"script", "link", "iframe"}, "no scripts or external resources"


def test_results_table_lists_the_arms_in_order_with_the_baseline_marked(report, page):
    assert page.arms == ARMS
    html = report.read_text(encoding="utf-8")
    baseline_row = html[html.index('<tr class="baseline">') :].split("</tr>")[0]
    assert '<span class="badge">baseline</span>' in baseline_row
    assert '<span class="delta up">+4.00</span>' in html
    assert "64.50" in html and "± 0.71" in html


def test_strings_from_the_data_are_escaped(report, page):
    html = report.read_text(encoding="utf-8")
    assert SCRIPT_CLASS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert MARKUP_DESCRIPTION not in html and str(escape(MARKUP_DESCRIPTION)) in html
    assert "<b>red</b>" not in html and "&lt;b&gt;red&lt;/b&gt;" in html
    assert SCRIPT_CLASS in [row["class"] for row in page.grid_rows]


def test_sample_grid_follows_one_real_image_of_each_class_through_the_sets(report, page):
    assert page.grid_columns == ["", "Original", "Edited", "Concatenated", "Blended (fractal)", "SHB", "SHB heatmap", "SDI"]
    assert len(page.grid_rows) == 10
    real = load_splits(DATASET)["train"]
    for row in page.grid_rows:
        original, *synthetic = row["images"]
        real_id = original["title"]
        # edited, concatenated, blended and SHB images were all made from the row's real image
        for image in synthetic[:4]:
            assert image["title"].startswith(real_id.replace("/", "_")), (real_id, image["title"])
        assert synthetic[5]["title"].startswith("sdi-")
    # 16x16 digits are shown at 96x96, each pixel a 6x6 block (nearest-neighbour)
    first = page.grid_rows[0]["images"][0]
    shown = np.asarray(Image.open(report.parent / first["src"]))
    expected = real.images[real.ids.index(first["title"])].repeat(6, axis=0).repeat(6, axis=1)
    np.testing.assert_array_equal(shown, expected)


def test_sections_without_data_are_left_out(tmp_path):
    results = {"experiment": "only a baseline", "seeds": [0], "baseline": "base", "epochs": 3,
               "dataset": {"name": "pocket_digits", "num_classes": 10, "class_names": [], "train": 100, "val": 179, "test": 451},
               "arms": [{"name": "base", "description": "real only", "policy": {"name": "real_only", "kwargs": {}},
                         "stages": [], "runs": [], "top1_mean": 50.0, "top1_std": 0.0, "delta_top1": 0.0}]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    index = write_report(tmp_path)
    parts = parse(index.read_text(encoding="utf-8"))
    assert parts.sections == ["results"] and parts.arms == ["base"] and not parts.images
    assert not list((tmp_path / "report").rglob("*.png"))


def test_rerunning_replaces_the_previous_figures(report):
    stale = report.parent / "figures" / "stale.png"
    stale.write_bytes(b"")
    write_report(report.parent.parent)
    assert not stale.exists()
    assert (report.parent / "figures" / "accuracy.png").is_file()


def test_stage_folders_outside_the_run_folder_are_shown_by_their_absolute_path(tmp_path):
    """``genaug run --artifacts SHARED``: results.json names the stage folders absolutely."""
    run_dir = build_run_folder(tmp_path / "run")
    shared = tmp_path / "shared"
    (run_dir / "artifacts").rename(shared)
    results_path = run_dir / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8"))
    for arm in results["arms"]:
        for stage in arm["stages"]:
            stage["dir"] = str(shared / Path(stage["dir"]).relative_to("artifacts"))
    results_path.write_text(json.dumps(results), encoding="utf-8")

    html = write_report(run_dir).read_text(encoding="utf-8")
    parts = parse(html)
    assert {"sdi", "filters", "samples"} <= set(parts.sections)
    assert f"{shared}/sdi-7a8b" in html and f"{shared}/sdi-7a8b/set" in html


# ---------------------------------------------------------------------------- in a browser


def headless_chromium(user_data_dir: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     f"--user-data-dir={user_data_dir}", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium chromium-driver)")
def test_page_loads_every_image_and_shows_every_arm_in_headless_chromium(report, tmp_path):
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory(prefix="genaug-chromium-") as profile:
        driver = headless_chromium(profile)
        try:
            driver.get(report.resolve().as_uri())
            images = driver.execute_script(
                "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
            )
            assert len(images) > 50
            not_loaded = [src for src, complete, width in images if not complete or width == 0]
            assert not not_loaded, f"images that did not load: {not_loaded}"
            arms = [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "table.results .arm-name")]
            assert arms == ARMS
            classes = [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "table.grid th.class")]
            assert SCRIPT_CLASS in classes, "a class name that looks like markup shows as text"
            errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            assert not errors, errors
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1280, height)
            screenshot = tmp_path / "report.png"
            assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
        finally:
            driver.quit()
