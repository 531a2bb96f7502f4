"""The example experiments in the repository's ``configs/``: one per method, each loads (with and
without its ``quick:`` form); the package ships the demo's file and no example."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from genaug.experiment import load_experiment
from genaug.home import packaged_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
EXAMPLES = sorted(path.name for path in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_config_loads(name):
    for quick in (False, True):
        experiment = load_experiment(CONFIGS / name, quick=quick)
        assert experiment.arms and experiment.arms[0].name == "baseline"


def test_every_method_has_an_example_of_its_own():
    """DiffuseMix (instruct edits + mix), SDI, and the peer methods Real-Guidance, DA-Fusion and
    Diff-Mix each have a real-scale example file (the demo runs them all on the pocket world)."""
    texts = {name: (CONFIGS / name).read_text(encoding="utf-8") for name in EXAMPLES if name != "demo.yaml"}
    wanted = {
        "DiffuseMix": ("name: instruct", "kind: mix"),
        "SDI": ("kind: sdi",),
        "Real-Guidance": ("name: real_guidance",),
        "DA-Fusion": ("name: dafusion",),
        "Diff-Mix": ("name: diffmix",),
    }
    for method, needles in wanted.items():
        holders = [name for name, text in texts.items() if all(needle in text for needle in needles)]
        assert holders, f"no example config in configs/ for {method}"


def test_the_package_ships_the_demo_config_and_no_example():
    """configs/demo.yaml is the packaged file (one source); the examples live only at the top level."""
    demo = packaged_config("demo.yaml")
    assert (CONFIGS / "demo.yaml").resolve() == demo.resolve()
    shipped = sorted(path.name for path in demo.parent.glob("*.yaml"))
    assert shipped == ["demo.yaml"]
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    assert "configs/demo.yaml" in package_data["genaug"] and not any("configs/*" in p for p in package_data["genaug"])
    for name in EXAMPLES:
        if name != "demo.yaml":
            assert not (CONFIGS / name).is_symlink(), f"configs/{name} is a link, not the file itself"
            assert not (demo.parent / name).exists(), f"{name} is shipped in the package"
