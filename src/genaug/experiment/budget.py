"""Budget parity: every arm that asks for it trains on the same number of synthetic images per
real image, subsampled from its own sets with a fixed seed.

```yaml
budget: {synthetic_per_real: 1, seed: 0}      # the parity budget of the experiment
arms:
  - {name: dm_all, data: mix_all/fractal}                    # its natural count (3 per real image)
  - {name: dm_all@parity, data: mix_all/fractal, budget: parity}
```

An arm with ``budget: parity`` trains on ``round(synthetic_per_real * n_c)`` synthetic
images of each class ``c`` (``n_c``: the real training images of ``c``; halves round up),
drawn without replacement from the kept records of its sets, class by class, with
``numpy.random.default_rng([seed, c])``: the same seed gives the same subsample, and one
class's draw does not depend on the others'. A class whose sets keep fewer images than its
share is an error naming the arm, the class and both counts.

The subsample is a folder ``<artifacts>/budget-<key>/`` keyed by the keys of the sets it
draws from, the budget and the identity of the real training split, so arms with the same
data share it and a rerun reuses it. It holds one synthetic set per source set
(``set-<i>/``: the chosen records' manifest, the images linked, never copied) and
``budget.json``: the budget, the sources, per class the real, available and chosen counts,
and the chosen ids. ``budget.json`` is written last and marks the folder finished.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from genaug.config import StrictModel
from genaug.files import write_json_atomic
from genaug.stage_dirs import resolve_ref

if TYPE_CHECKING:  # pragma: no cover
    from genaug.experiment.config import ArmConfig, ExperimentConfig
    from genaug.experiment.graph import StageNode

__all__ = ["BUDGET_FILE", "BudgetConfig", "BudgetError", "arm_sets", "make_budget_sets", "class_quota"]

BUDGET_FILE = "budget.json"


class BudgetError(ValueError):
    """An arm's sets cannot meet the parity budget."""


class BudgetConfig(StrictModel):
    """The parity budget: ``synthetic_per_real`` synthetic images per real training image of
    each class, drawn with ``seed`` (module doc)."""

    synthetic_per_real: float = Field(gt=0)
    seed: int = 0


def class_quota(synthetic_per_real: float, real_count: int) -> int:
    """Synthetic images a class of ``real_count`` real images gets: the product rounded, halves up."""
    return int(math.floor(synthetic_per_real * real_count + 0.5 + 1e-9))


def natural_sets(arm: "ArmConfig", nodes: dict[str, "StageNode"]) -> list[tuple[str, Path]]:
    """``(key, folder)`` of every set the arm names, as the stages wrote them."""
    sets = []
    for ref in arm.data_refs:
        node, folder = resolve_ref(nodes, ref)
        sets.append((f"{node.key}:{ref.partition('/')[2]}", folder))
    return sets


def budget_key(source_keys: list[str], budget: BudgetConfig, train_digest: str | None) -> str:
    content = {"sets": source_keys, "budget": budget.model_dump(mode="json"), "train": train_digest}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()[:12]


def budget_dir(experiment: "ExperimentConfig", arm: "ArmConfig", nodes: dict[str, "StageNode"], train_digest: str | None) -> Path | None:
    """The subsample folder of a parity arm (None for an arm at its natural count)."""
    if arm.budget != "parity" or experiment.budget is None or not arm.data_refs:
        return None
    sources = natural_sets(arm, nodes)
    artifacts = nodes[arm.data_refs[0].partition("/")[0]].dir.parent
    return artifacts / f"budget-{budget_key([key for key, _ in sources], experiment.budget, train_digest)}"


def arm_sets(
    experiment: "ExperimentConfig", arm: "ArmConfig", nodes: dict[str, "StageNode"], train_digest: str | None
) -> list[tuple[str, Path]]:
    """``(key, folder)`` of every set the arm trains on: its stages' sets, or for a parity arm
    the subsample of each (``train_digest``: the content digest of the real training split)."""
    folder = budget_dir(experiment, arm, nodes, train_digest)
    sources = natural_sets(arm, nodes)
    if folder is None:
        return sources
    return [(f"budget:{folder.name.removeprefix('budget-')}:{index}", folder / f"set-{index}") for index in range(len(sources))]


def is_done(folder: Path) -> bool:
    try:
        return json.loads((folder / BUDGET_FILE).read_text(encoding="utf-8")).get("key") == folder.name.removeprefix("budget-")
    except (OSError, ValueError):
        return False


def make_budget_sets(
    experiment: "ExperimentConfig",
    arms: list["ArmConfig"],
    nodes: dict[str, "StageNode"],
    real_train,
    train_digest: str | None,
    echo=print,
) -> dict[str, dict[str, Any]]:
    """Write the subsample of every parity arm among ``arms`` that is not there yet (its stages
    done); returns ``{arm name: budget.json content}`` for the parity arms."""
    made: dict[Path, dict[str, Any]] = {}
    out = {}
    for arm in arms:
        folder = budget_dir(experiment, arm, nodes, train_digest)
        if folder is None:
            continue
        if folder not in made:
            if not is_done(folder):
                subsample(arm.name, natural_sets(arm, nodes), folder, experiment.budget, real_train)
                echo(f"budget parity: {arm.name} subsampled into {folder}")
            made[folder] = json.loads((folder / BUDGET_FILE).read_text(encoding="utf-8"))
        out[arm.name] = made[folder]
    return out


def subsample(arm: str, sources: list[tuple[str, Path]], folder: Path, budget: BudgetConfig, real_train) -> dict[str, Any]:
    """Draw the parity subsample of ``sources`` into ``folder`` (module doc); returns budget.json."""
    from genaug.manifest import link_set
    from genaug.manifest import read_manifest, write_manifest

    names = list(real_train.class_names)
    real_counts = np.bincount(np.asarray(real_train.labels), minlength=len(names))
    pool: dict[str, list[tuple[int, Any]]] = {name: [] for name in names}
    for index, (_, source) in enumerate(sources):
        for record in sorted(read_manifest(source), key=lambda r: r.id):
            if not record.kept:
                continue
            if record.class_name not in pool:
                raise BudgetError(f"arm '{arm}': {source} holds class '{record.class_name}', not a class of the real training split")
            pool[record.class_name].append((index, record))
    chosen: list[list[Any]] = [[] for _ in sources]
    per_class = {}
    for label, name in enumerate(names):
        quota = class_quota(budget.synthetic_per_real, int(real_counts[label]))
        available = pool[name]
        if len(available) < quota:
            raise BudgetError(
                f"arm '{arm}': budget.synthetic_per_real {budget.synthetic_per_real:g} needs {quota} synthetic images of "
                f"class '{name}' ({real_counts[label]} real), its sets keep {len(available)}; lower the budget or "
                "train this arm at its natural count"
            )
        picks = np.sort(np.random.default_rng([budget.seed, label]).choice(len(available), size=quota, replace=False))
        for pick in picks:
            index, record = available[pick]
            chosen[index].append(record)
        per_class[name] = {"real": int(real_counts[label]), "available": len(available), "chosen": quota}
    for index, (_, source) in enumerate(sources):
        target = folder / f"set-{index}"
        target.mkdir(parents=True, exist_ok=True)
        write_manifest(target, chosen[index])  # before linking: link_set copies a manifest only when there is none
        link_set(source, target)
    record = {
        "key": folder.name.removeprefix("budget-"),
        "synthetic_per_real": budget.synthetic_per_real,
        "seed": budget.seed,
        "sources": [{"key": key, "dir": str(source)} for key, source in sources],
        "per_class": per_class,
        "images": sum(len(records) for records in chosen),
        "ids": {f"set-{index}": [r.id for r in records] for index, records in enumerate(chosen)},
    }
    write_json_atomic(folder / BUDGET_FILE, record)
    return record
