"""Verdict statistics against values computed by hand (genaug.experiment.stats)."""

import math

import pytest

from genaug.experiment import stats


def test_paired_t_interval_and_p_match_the_closed_form_for_two_degrees_of_freedom():
    # d = [1, 2, 6]: mean 3, sd sqrt(7), se sqrt(7/3). With 2 degrees of freedom the t CDF is
    # F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so t_0.975 solves t / sqrt(2 + t^2) = 0.95 and the
    # two-sided p of t = 3 / se is 1 - t / sqrt(2 + t^2).
    x = {0: 11.0, 1: 12.0, 2: 16.0, 7: 99.0}  # seed 7 has no partner: left out
    y = {0: 10.0, 1: 10.0, 2: 10.0}
    comparison = stats.compare("a", "b", x, y)
    se = math.sqrt(7 / 3)
    t_crit = math.sqrt(2 * 0.9025 / (1 - 0.9025))
    t = 3 / se
    assert comparison.seeds == [0, 1, 2]
    assert comparison.differences == [1.0, 2.0, 6.0]
    assert comparison.mean == pytest.approx(3.0)
    assert comparison.low == pytest.approx(3 - t_crit * se, abs=1e-9)
    assert comparison.high == pytest.approx(3 + t_crit * se, abs=1e-9)
    assert comparison.low == pytest.approx(-3.5725, abs=1e-4)
    assert comparison.p == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-9)
    assert comparison.p == pytest.approx(0.1885, abs=1e-4)


def test_exact_permutation_p_counts_sign_patterns():
    # Three positive differences: of the 2^3 sign patterns only all-plus and all-minus reach
    # |mean| >= 2, so p = 2 / 8.
    comparison = stats.compare("a", "b", {0: 2.0, 1: 3.0, 2: 4.0}, {0: 1.0, 1: 1.0, 2: 1.0}, test="permutation")
    assert comparison.p == pytest.approx(0.25)


def test_holm_adjusts_by_rank_and_keeps_monotone():
    # Sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, 1 x 0.04 = 0.03, 0.06, 0.04 -> running max.
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = stats.holm([0.2, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_probability_of_improvement_counts_ties_as_half():
    # Pairs (x, y): 1 beats 0 only; 2 ties 2 twice and beats 0; 3 beats all: (1 + 2 + 3) / 9.
    assert stats.probability_of_improvement([1, 2, 3], [2, 2, 0]) == pytest.approx(6 / 9)


def test_verdicts_follow_the_holm_adjusted_p():
    better = stats.compare("up", "base", {s: 60.0 + s % 2 for s in range(8)}, {s: 50.0 for s in range(8)})
    worse = stats.compare("down", "base", {s: 40.0 + s % 2 for s in range(8)}, {s: 50.0 for s in range(8)})
    noise = stats.compare("noise", "base", {0: 51.0, 1: 49.0, 2: 52.0, 3: 48.0}, {s: 50.0 for s in range(4)})
    single = stats.compare("one", "base", {0: 70.0}, {0: 50.0})
    stats.with_holm([better, worse, noise, single])
    assert (better.verdict, worse.verdict, noise.verdict, single.verdict) == (
        "better", "worse", "not resolved", "too few seeds"
    )
    assert noise.p_holm == pytest.approx(1.0)
    assert single.seeds_to_resolve is None and math.isnan(single.low)
    assert "too few seeds" in single.sentence()


def test_sentence_reads_like_the_report():
    comparison = stats.compare("dm_all@parity", "dm_single", {0: 61.0, 1: 58.0, 2: 64.0}, {0: 60.0, 1: 60.0, 2: 60.0})
    stats.with_holm([comparison])
    sentence = comparison.sentence()
    assert sentence.startswith("dm_all@parity vs dm_single: +1.0 [")
    assert "3 seeds: not resolved" in sentence
    assert comparison.to_json()["sentence"] == sentence


def test_seeds_for_halfwidth_is_the_smallest_n_with_a_narrow_enough_interval():
    # sd = sqrt(2): n = 10 gives t_9 * sqrt(2) / sqrt(10) = 1.0116 > 1; n = 11 gives 0.950.
    assert stats.seeds_for_halfwidth([0.0, 2.0], 1.0) == 11
    # A mean of 1 with that spread is resolved once the half-width drops below 1: also 11.
    assert stats.seeds_to_resolve([0.0, 2.0]) == 11
    assert stats.seeds_to_resolve([-1.0, 1.0]) is None  # nothing to resolve


def test_a_constant_shift_is_tested_by_sign_flips_and_two_seeds_give_no_verdict():
    # Three equal differences: no t statistic; all signs alike: p = 2 / 2^3.
    three = stats.compare("a", "b", {0: 61.0, 1: 62.0, 2: 63.0}, {0: 60.0, 1: 61.0, 2: 62.0})
    assert three.p == pytest.approx(0.25) and (three.low, three.high) == (1.0, 1.0)
    two = stats.compare("a", "b", {0: 70.0, 1: 71.0}, {0: 50.0, 1: 48.0})
    stats.with_holm([two])
    assert two.verdict == "too few seeds"


def test_identical_values_give_a_point_interval_and_no_difference():
    comparison = stats.compare("same", "base", {0: 50.0, 1: 60.0, 2: 55.0}, {0: 50.0, 1: 60.0, 2: 55.0})
    stats.with_holm([comparison])
    assert (comparison.low, comparison.high, comparison.p) == (0.0, 0.0, 1.0)
    assert comparison.verdict == "not resolved"


def test_measurement_noise_of_the_test_split():
    assert stats.test_standard_error(55.0, 451) == pytest.approx(100 * math.sqrt(0.55 * 0.45 / 451))
    assert stats.test_standard_error(55.0, 451) == pytest.approx(2.343, abs=1e-3)
    assert stats.one_image_points(15) == pytest.approx(6.667, abs=1e-3)


def test_seeds_to_resolve_in_a_table_counts_at_the_level_holm_needs():
    # Two comparisons: a difference resolves for sure once its 1 - 0.05/2 interval excludes zero.
    first = stats.compare("a", "base", {0: 50.0, 1: 52.0}, {0: 50.0, 1: 50.0})
    second = stats.compare("b", "base", {0: 50.0, 1: 50.0}, {0: 50.0, 1: 50.0})
    stats.with_holm([first, second])
    assert first.seeds_to_resolve == stats.seeds_for_halfwidth([0.0, 2.0], 1.0 - 1e-9, level=1 - 0.05 / 2)
    assert first.seeds_to_resolve > stats.seeds_to_resolve([0.0, 2.0]) == 11
    assert second.seeds_to_resolve is None
