"""rho(t) schedules of the curriculum policy (docs/methods/progressive-scheduling.md)."""

import math

import pytest

from genaug.training import schedules
from genaug.training.schedules import BLEND_SCHEDULES, blend_ratio


def test_registry_lists_every_schedule():
    assert {"constant", "cosine", "linear", "step", "warmup"} <= set(BLEND_SCHEDULES.names())


def test_linear():
    assert blend_ratio("linear", 0, 300) == 0.0
    assert blend_ratio("linear", 75, 300) == 0.25
    assert blend_ratio("linear", 300, 300) == 1.0


def test_step_at_the_reference_milestones():
    assert [blend_ratio("step", t, 300) for t in (0, 99, 100, 199, 200, 299)] == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]


def test_step_with_other_milestones_and_values():
    kw = {"milestones": (2, 4, 6), "values": (0.1, 0.2, 0.3, 0.4)}
    assert [blend_ratio("step", t, 10, **kw) for t in (1, 2, 5, 6)] == [0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ValueError, match="one more value"):
        blend_ratio("step", 1, 10, milestones=(2,), values=(0.0,))
    with pytest.raises(ValueError, match="increase"):
        blend_ratio("step", 1, 10, milestones=(5, 5), values=(0, 0.5, 1))


def test_warmup():
    assert blend_ratio("warmup", 49, 300) == 0.0
    assert blend_ratio("warmup", 50, 300) == 0.0
    assert blend_ratio("warmup", 175, 300) == 0.5
    assert blend_ratio("warmup", 300, 300) == 1.0
    assert blend_ratio("warmup", 6, 12, warmup_epochs=2) == 0.4
    # no room for a ramp: 0 before the warm-up, 1 from it on
    assert blend_ratio("warmup", 3, 4, warmup_epochs=5) == 0.0
    assert blend_ratio("warmup", 4, 4, warmup_epochs=4) == 1.0


def test_cosine():
    assert blend_ratio("cosine", 0, 300) == 0.0
    # (1 - cos(pi / 2)) / 2 in floats: cos(pi / 2) is 6e-17, not 0
    assert blend_ratio("cosine", 150, 300) == pytest.approx(0.5, abs=1e-15)
    assert blend_ratio("cosine", 300, 300) == 1.0
    assert blend_ratio("cosine", 100, 300) == pytest.approx((1 - math.cos(math.pi / 3)) / 2)


def test_constant():
    assert blend_ratio("constant", 0, 10, p=0.25) == 0.25
    assert blend_ratio("constant", 10, 10, p=0.25) == 0.25
    with pytest.raises(ValueError, match="p must be in"):
        blend_ratio("constant", 0, 10, p=1.5)
    with pytest.raises(ValueError, match=r"takes parameters \['p'\]"):
        blend_ratio("constant", 0, 10)


def test_invalid_inputs_are_errors():
    with pytest.raises(ValueError, match=r"unknown rho schedule 'exponential' \(allowed: constant, cosine, linear, step, warmup\)"):
        blend_ratio("exponential", 0, 10)
    for epoch in (-1, 11, float("nan")):
        with pytest.raises(ValueError, match="epoch"):
            blend_ratio("linear", epoch, 10)
    with pytest.raises(ValueError, match="total_epochs"):
        blend_ratio("linear", 0, 0)
    with pytest.raises(ValueError, match="takes parameters none"):
        blend_ratio("linear", 0, 10, p=0.5)


def test_a_registered_schedule_is_usable_by_name(monkeypatch):
    monkeypatch.setattr(schedules.BLEND_SCHEDULES, "_entries", dict(schedules.BLEND_SCHEDULES._entries))  # keep it clean

    @BLEND_SCHEDULES.register("test_half")
    def half(epoch, total_epochs):
        return 0.5

    assert "test_half" in BLEND_SCHEDULES.names()
    assert blend_ratio("test_half", 3, 10) == 0.5
    with pytest.raises(ValueError, match="already registered"):
        BLEND_SCHEDULES.register("test_half")(half)
