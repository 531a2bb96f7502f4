"""The quality gates of the weights shipped inside the package (issue: pocket world)."""

import json

import pytest

from genaug.pocket import quality as pq
from genaug.pocket.build import load_spec, measure_quality, spec_hash
from genaug.pocket.store import SHIPPED_DIR, is_complete

pytestmark = pytest.mark.skipif(not is_complete(SHIPPED_DIR), reason=f"no shipped pocket weights in {SHIPPED_DIR} yet (run `genaug pocket build --out {SHIPPED_DIR}`)")


def test_shipped_weights_come_from_the_committed_spec():
    build = json.loads((SHIPPED_DIR / "build.json").read_text())
    assert build["spec_hash"] == spec_hash(load_spec()) and not build["quick"]
    for name in ("clip", "sd", "ip2p"):
        size = sum(f.stat().st_size for f in (SHIPPED_DIR / name).rglob("*.safetensors"))
        assert 0 < size < 20e6, (name, size)


def test_recorded_quality_meets_every_gate():
    quality = json.loads((SHIPPED_DIR / "quality.json").read_text())
    assert set(quality["gates"]) == set(pq.GATES)
    failed = {k: v["value"] for k, v in quality["gates"].items() if not v["passed"]}
    assert not failed, f"gates missed by the shipped weights: {failed}"
    assert quality["build_seconds"]["total"] <= 40 * 60


@pytest.mark.slow
def test_gates_remeasured_on_shipped_weights(tmp_path):
    """Measure every gate again, from scratch, on the shipped folders."""
    result = measure_quality(SHIPPED_DIR, load_spec())
    failed = {k: v["value"] for k, v in result["gates"].items() if not v["passed"]}
    assert not failed, f"gates missed: {failed}"
