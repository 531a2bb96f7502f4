"""Class names in figures: a CJK font behind the default when installed, never two names alike,
and class folders that keep their names."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from genaug.fonts import figure_font_families, figure_labels
from genaug.manifest import safe_folder_name


def test_labels_stay_distinct_when_cut_or_undrawable():
    nowhere = "\U0010fffd"  # a private-use code point no font draws
    labels = figure_labels(["葡萄", "红 苹果", "a" * 30, "a" * 29 + "b", f"{nowhere}x", f"{nowhere}{nowhere}x"[1:], "$5"], limit=12)
    assert len(set(labels)) == len(labels)
    assert labels[2] == "aaaaaaaaaaa… #2" and labels[3] == "aaaaaaaaaaa… #3"
    assert labels[4] == "?x #4" and labels[5] == "?x #5"  # undrawable characters: '?', then told apart
    assert labels[6] == "$5"


def test_class_folders_keep_their_names_except_what_a_file_system_refuses():
    assert safe_folder_name("葡萄") == "葡萄" and safe_folder_name("红 苹果") == "红 苹果"
    assert safe_folder_name("001.Black_footed_Albatross") == "001.Black_footed_Albatross"
    assert safe_folder_name("a/b:c") == "a_b_c" and safe_folder_name("..") == "class" and safe_folder_name(" x. ") == "x"
    assert safe_folder_name("葡萄") != safe_folder_name("红 苹果")


@pytest.mark.skipif(len(figure_font_families()) < 2, reason="no CJK font installed (Debian: fonts-noto-cjk)")
def test_a_figure_of_chinese_class_names_draws_every_glyph(tmp_path):
    from genaug.report.figures import feature_space_figure

    rng = np.random.default_rng(0)
    real, sampled = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    labels = np.arange(40) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        path = feature_space_figure(real, labels, sampled, labels, ["葡萄", "红 苹果"], tmp_path / "f.png")
    assert path.is_file()
