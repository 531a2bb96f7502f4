"""The package's import structure, read statically from its source (``tests/import_graph.py``).

- no import circles anywhere in ``genaug`` (module-level and function-local imports alike);
- the floors: the core (top-level modules) < data, models, diffusion, pocket < the siblings generation,
  mixing, sdi, filtering, training < experiment, rehearsal, report < cli; no import runs
  back up, and no sibling imports another's internals, but for the few listed with a reason
  (and the sibling imports still to be taken apart, which may only shrink);
- function-local imports only for heavy or optional modules (torch, diffusers, ...), or for
  genaug modules that import one when loaded; everything else at the top of its module.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from import_graph import Import, cycles, edges, floor_of, graph_of, module_files, statements, upward

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: Floor of each package (a module's floor: that of the longest prefix of its name listed here).
FLOORS = {
    "genaug": 0,  # the core: config, registry, files, seeds, progress, warn, manifest, lazy, ...
    "genaug.data": 1,
    "genaug.models": 1,
    "genaug.diffusion": 1,  # diffusion-model references, architecture checks, frozen parts, caches, loss
    "genaug.pocket": 1,  # the pocket models and renderer the pocket dataset and pocket:// references use
    "genaug.clip": 1,  # CLIP models (hub or pocket), what filters, mixers and metrics embed with
    "genaug.metrics": 1,  # distribution metrics over real and synthetic sets
    "genaug.generation": 2,
    "genaug.generation.frontier": 3,  # ``genaug bench sampling``: measures editors and SDI, draws a report figure
    "genaug.mixing": 2,
    "genaug.sdi": 2,
    "genaug.filtering": 2,
    "genaug.training": 2,
    "genaug.experiment": 3,
    "genaug.rehearsal": 3,
    "genaug.report": 3,
    "genaug.checks": 3,  # pre-run checks of stage and train configs together (the experiment's and the CLI's)
    "genaug.cli": 4,
    "genaug.__main__": 4,
}
#: Floors whose packages are siblings: none imports another's modules.
SIBLINGS = {2}

#: Imports allowed to run back up (or across siblings): ``(importer, imported) -> reason``.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("genaug.filtering.stage", "genaug.training.classifier"): (
        "the classifier-confidence filter scores with a classifier genaug trained: it loads the run with "
        "training's own loader, inside the function that needs it"
    ),
    ("genaug.filtering.filters", "genaug.training.classifier"): (
        "the same filter's score cache is keyed by that run's weights: training's own reader of a run's "
        "files names them, inside the function that needs it"
    ),
}

#: Sibling imports still to be taken apart (what it would take, in the reason); the list may
#: only shrink: a new import across siblings fails, and so does an entry no longer imported.
NOT_YET_LAYERED: dict[tuple[str, str], str] = {
    **dict.fromkeys(
        [
            ("genaug.sdi.config", "genaug.generation.config"),
            ("genaug.sdi.config", "genaug.generation.presets"),
            ("genaug.sdi.generate", "genaug.generation.editors.base"),
            ("genaug.sdi.generate", "genaug.generation.engine"),
            ("genaug.sdi.generate", "genaug.generation.items"),
            ("genaug.sdi.generate", "genaug.generation.presets"),
        ],
        "SDI renders through the generation engine (work items, Editor, sampling presets, EngineConfig): "
        "the engine would move below the siblings",
    ),
    **dict.fromkeys(
        [
            ("genaug.training.config", "genaug.mixing.registry"),
            ("genaug.training.trainer", "genaug.mixing.config"),
            ("genaug.training.trainer", "genaug.mixing.registry"),
            ("genaug.training.trainer", "genaug.mixing.fractals"),
        ],
        "the trainer runs the online mixers (mixup, cutmix, fractal, ...) of mixing: they would move to training",
    ),
}

#: Modules a function may import where it needs them: heavy to import, or optional / platform-specific.
HEAVY = {
    "torch", "torchvision", "diffusers", "transformers", "tokenizers", "accelerate", "peft", "safetensors",
    "huggingface_hub", "PIL", "matplotlib", "scipy", "statsmodels", "sklearn", "open_clip", "gco",
    "tensorboard", "wandb", "jinja2", "selenium",
    "rich",  # terminal rendering (~0.2 s): imported when something is printed
    "psutil", "threadpoolctl", "resource", "ctypes",  # optional or platform-specific
}  # fmt: skip


@pytest.fixture(scope="module")
def genaug_edges() -> list[Import]:
    return edges(SRC, "genaug")


def _where(edge: Import) -> str:
    return f"{edge.source} -> {edge.target} ({module_files(SRC, 'genaug')[edge.source].relative_to(ROOT)}:{edge.line}{', in a function' if edge.local else ''})"


def test_genaug_has_no_import_circle(genaug_edges):
    found = cycles(graph_of(genaug_edges))
    assert not found, "import circles:\n" + "\n".join(" -> ".join(circle) for circle in found)


def test_the_config_base_imports_only_the_lazy_export_helper(genaug_edges):
    """Reading a config imports the base alone; each config class is re-exported from beside its code."""
    imported = {edge.target for edge in genaug_edges if edge.source in ("genaug.config", "genaug.lazy")}
    assert imported <= {"genaug.lazy"}, imported


def test_every_module_has_a_floor():
    assert all(floor_of(name, FLOORS) is not None for name in module_files(SRC, "genaug"))


def test_no_import_runs_back_up_the_floors(genaug_edges):
    assert len(ALLOWED_UPWARD) <= 3 and all(reason for reason in ALLOWED_UPWARD.values())
    listed = {**ALLOWED_UPWARD, **NOT_YET_LAYERED}
    bad = [edge for edge in upward(genaug_edges, FLOORS, SIBLINGS) if (edge.source, edge.target) not in listed]
    assert not bad, "imports that run back up the floors or across siblings:\n" + "\n".join(map(_where, bad))
    used = {(edge.source, edge.target) for edge in upward(genaug_edges, FLOORS, SIBLINGS)}
    assert set(listed) <= used, f"listed but no longer imported (remove them): {sorted(set(listed) - used)}"


def heavy_modules(src: Path, package: str, found: list[Import]) -> set[str]:
    """The package's modules that load a HEAVY module when imported (themselves, through one
    of their packages, or through another of the package's modules imported at module level)."""
    heavy = {s.source for s in statements(src, package) if not s.local and s.module.split(".")[0] in HEAVY}
    loads: dict[str, set[str]] = {}
    for edge in found:
        if not edge.local:
            loads.setdefault(edge.source, set()).add(edge.target)
    for name in module_files(src, package):  # a module's packages load first
        parts = name.split(".")
        loads.setdefault(name, set()).update(".".join(parts[:end]) for end in range(1, len(parts)))
    changed = True
    while changed:
        changed = False
        for module, targets in loads.items():
            if module not in heavy and targets & heavy:
                heavy.add(module)
                changed = True
    return heavy


def light_local_imports(src: Path, package: str) -> list[str]:
    """``path:line: module`` of every function-local import of a module that is not heavy."""
    found = edges(src, package)
    heavy = heavy_modules(src, package, found)
    local_targets = {(edge.source, edge.line): edge.target for edge in found if edge.local}
    files = module_files(src, package)
    light = []
    for stmt in statements(src, package):
        if not stmt.local or stmt.module.split(".")[0] in HEAVY:
            continue
        if stmt.module.split(".")[0] == package:
            target = local_targets.get((stmt.source, stmt.line))
            if target is None or target in heavy:  # an import of itself, or a module that loads torch & co.
                continue
        light.append(f"{files[stmt.source].relative_to(src)}:{stmt.line}: {stmt.module}")
    return light


def test_function_local_imports_are_for_heavy_or_optional_modules_only():
    light = light_local_imports(SRC, "genaug")
    assert not light, "function-local imports of light modules (move them to the top):\n" + "\n".join(light)


# ---------------------------------------------------------------------------- the checker itself


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_checker_finds_a_circle_through_a_function_local_import(tmp_path):
    src = _package(
        tmp_path,
        {
            "toy/__init__.py": "",
            "toy/a.py": "from toy.b import f\n",
            "toy/b.py": "def f():\n    from toy import c\n    return c\n",
            "toy/c.py": "import toy.a\n",
            "toy/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.a import f\n",
        },
    )
    found = edges(src, "toy")
    assert cycles(graph_of(found)) == [["toy.a", "toy.b", "toy.c", "toy.a"]]
    assert [edge.local for edge in found if edge.source == "toy.b"] == [True]
    assert not [edge for edge in found if edge.source == "toy.d"]  # TYPE_CHECKING imports never run


def test_the_checker_follows_lazy_reexports_and_finds_upward_imports(tmp_path):
    src = _package(
        tmp_path,
        {
            "toy/__init__.py": "",
            "toy/lazy.py": "",
            "toy/config.py": "from toy.lazy import lazy_exports\n__getattr__, __dir__ = lazy_exports(__name__, {'toy.low.cfg': ('Cfg',)})\n",
            "toy/low/__init__.py": "",
            "toy/low/cfg.py": "from toy.high.run import go\nclass Cfg: ...\n",
            "toy/high/__init__.py": "",
            "toy/high/run.py": "from toy.config import Cfg\ndef go(): ...\n",
            "toy/side/__init__.py": "",
            "toy/side/x.py": "from ..low import cfg\n",
        },
    )
    found = edges(src, "toy")
    assert ("toy.high.run", "toy.low.cfg") in {(e.source, e.target) for e in found}  # through the re-export
    assert cycles(graph_of(found)) == [["toy.high.run", "toy.low.cfg", "toy.high.run"]]
    floors = {"toy": 0, "toy.low": 1, "toy.side": 1, "toy.high": 2}
    assert [(e.source, e.target) for e in upward(found, floors)] == [("toy.low.cfg", "toy.high.run")]
    assert [(e.source, e.target) for e in upward(found, floors, {1})] == [("toy.low.cfg", "toy.high.run"), ("toy.side.x", "toy.low.cfg")]


def test_the_local_import_check_catches_light_imports_in_functions(tmp_path):
    src = _package(
        tmp_path,
        {
            "toy/__init__.py": "",
            "toy/light.py": "import json\n",
            "toy/heavy.py": "import torch\n",
            "toy/user.py": (
                "def f():\n    import json\n    import torch\n"
                "def g():\n    from toy.light import json\n    from toy.heavy import torch\n"
            ),
        },
    )
    assert heavy_modules(src, "toy", edges(src, "toy")) == {"toy.heavy"}
    assert light_local_imports(src, "toy") == ["toy/user.py:2: json", "toy/user.py:5: toy.light"]


# ---------------------------------------------------------------------------- torch stays out


def test_the_modules_found_light_import_no_heavy_module(genaug_edges):
    """The static reading agrees with Python: importing every module it finds light loads none of HEAVY
    (but the standard library's, which other standard modules load too)."""
    heavy = heavy_modules(SRC, "genaug", genaug_edges)
    light = sorted(name for name in module_files(SRC, "genaug") if name not in heavy and not name.endswith("__main__"))
    code = (
        "import importlib, sys\n"
        f"for name in {light!r}:\n    importlib.import_module(name)\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY - set(sys.stdlib_module_names))!r})))\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert len(light) > 30 and result.stdout.strip() == ""


def test_loading_the_package_and_its_configs_imports_no_torch():
    code = (
        "import sys\n"
        "import genaug.config, genaug.registry, genaug.data\n"
        "from genaug.registry import STAGES\n"
        "STAGES.names()\n"  # imports every subsystem's config module
        "heavy = sorted(m for m in ('torch', 'torchvision', 'diffusers', 'transformers') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == ""
