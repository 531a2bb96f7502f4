"""The quality gates of the weights shipped inside the package (issue: pocket world).

Every gate is asserted on its own. A gate the shipped build misses is marked
``xfail(strict=True)`` with the measured value and what limits it, so the suite stays
honest (the failure is visible in every run) and turns red the moment a rebuild meets it,
prompting removal of the mark. Gates are never lowered.
"""

import json

import pytest

from genaug.pocket import quality as pq
from genaug.pocket.build import load_spec, measure_quality, spec_hash
from genaug.pocket.store import SHIPPED_DIR, is_complete

pytestmark = pytest.mark.skipif(not is_complete(SHIPPED_DIR), reason=f"no shipped pocket weights in {SHIPPED_DIR} yet (run `genaug pocket build --out {SHIPPED_DIR}`)")

#: Gates the shipped build misses: gate -> measured value and what limits it (none at present).
MISSED: dict[str, str] = {}
BUILD_BUDGET_S = 40 * 60


def _recorded() -> dict:
    return json.loads((SHIPPED_DIR / "quality.json").read_text())


def _gate_params():
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=MISSED[name])) if name in MISSED else name
        for name in pq.GATES
    ]


def test_shipped_weights_come_from_the_committed_spec():
    build = json.loads((SHIPPED_DIR / "build.json").read_text())
    assert build["spec_hash"] == spec_hash(load_spec()) and not build["quick"]
    for name in ("clip", "sd", "ip2p"):
        size = sum(f.stat().st_size for f in (SHIPPED_DIR / name).rglob("*.safetensors"))
        assert 0 < size < 20e6, (name, size)


def test_recorded_quality_covers_every_gate():
    quality = _recorded()
    assert set(quality["gates"]) == set(pq.GATES)
    assert quality["all_gates_passed"] == all(g["passed"] for g in quality["gates"].values())


def test_recorded_quality_meets_the_gates_it_is_known_to_meet():
    gates = _recorded()["gates"]
    met = {name: gates[name]["value"] for name in pq.GATES if name not in MISSED}
    assert met and all(gates[name]["passed"] for name in met), met


@pytest.mark.parametrize("gate", _gate_params())
def test_recorded_quality_meets_gate(gate):
    recorded = _recorded()["gates"][gate]
    assert recorded["threshold"] == pq.GATES[gate]
    assert recorded["passed"], f"{gate} = {recorded['value']:.3f} < {recorded['threshold']}"


def test_build_fits_the_time_budget():
    """Training + export + quality of the shipped build, summed over resumed segments (2 cores)."""
    assert _recorded()["build_seconds"]["total"] <= BUILD_BUDGET_S


@pytest.mark.slow
def test_gates_remeasured_on_shipped_weights():
    """Measure every gate again, from scratch, on the shipped folders: same verdicts as recorded."""
    result = measure_quality(SHIPPED_DIR, load_spec(), save_samples=False)
    recorded = _recorded()["gates"]
    for name, gate in result["gates"].items():
        assert gate["passed"] == recorded[name]["passed"], (name, gate["value"], recorded[name]["value"])
        assert gate["value"] == pytest.approx(recorded[name]["value"], abs=0.03), name
