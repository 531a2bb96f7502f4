"""The synthetic-set metrics of an experiment's arms (:func:`genaug.metrics.set_metrics`).

Every arm that trains on synthetic data gets the metrics of the set it
trained on (its parity subsample for a ``budget: parity`` arm, the union of its sets for an
arm with several): FD in CLIP image space overall and per class, precision / recall /
density / coverage, zero-shot class fidelity by CLIP, class fidelity by a classifier
trained on real images only, and intra-class diversity.

```yaml
metrics: {clip: null, k: 5, classifier: true}   # the defaults
```

- ``clip``: the CLIP whose image space the metrics live in. ``null``: the one the
  experiment's stages name (the first stage that sets ``clip``: a ``filter`` or ``sdi`` stage),
  else ``pocket``. One CLIP for every arm, so that their numbers compare.
- ``classifier``: the judge is the experiment's baseline arm trained on real images only
  (no synthetic data, no online mixer; else the first arm that is), its run of the first
  seed. Experiments keep a finished run's selected weights (``best.safetensors``) even
  without ``keep_checkpoint``, so the judge costs nothing to train; it is loaded with
  :func:`genaug.training.classifier.load_classifier`. No such run: no classifier fidelity.
- ``enabled: false`` skips the metrics.

Each result is cached in ``<artifacts>/metrics-<key>/metrics.json``, keyed by the keys of
the sets measured, the CLIP's identity (its weights' hash), the judge's weights' hash, ``k``
and the identity of the real training split: a rerun reads it back instead of computing it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from genaug.config import StrictModel
from genaug.diffusion.models import clip_reference, resolve_model
from genaug.experiment.budget import BUDGET_FILE, arm_sets, budget_dir
from genaug.files import display_path, write_json_atomic
from genaug.metrics import real_reference, set_metrics

if TYPE_CHECKING:  # pragma: no cover
    from genaug.experiment.config import ExperimentConfig
    from genaug.experiment.graph import StageNode

__all__ = ["METRICS_FILE", "MetricsConfig", "add_set_metrics", "judge_arm", "judge_run", "measure_sets", "metrics_clip"]

METRICS_FILE = "metrics.json"
#: Bumped when what the metrics compute changes, so that cached results are not reused.
METRICS_VERSION = 2  # 2: soft-labelled images count as their dominant class


class MetricsConfig(StrictModel):
    """Which synthetic-set metrics the experiment computes, in which CLIP space (module doc)."""

    enabled: bool = True
    clip: str | None = None
    k: int = Field(default=5, ge=1)
    classifier: bool = True
    batch_size: int = Field(default=256, ge=1)


def metrics_clip(experiment: "ExperimentConfig") -> str:
    """The CLIP of the metrics: ``metrics.clip``, else the first stage's that sets ``clip``, else pocket."""
    if experiment.metrics.clip:
        return experiment.metrics.clip
    for spec in experiment.stages.values():
        if spec.params.get("clip"):
            return str(spec.params["clip"])
    return "pocket"


def judge_arm(experiment: "ExperimentConfig") -> str | None:
    """The arm whose run judges class fidelity (module doc), or None."""
    real_only = [arm for arm in experiment.arms if not arm.data_refs and arm.mixer == "none"]
    if not experiment.metrics.classifier or not real_only:
        return None
    return next((a for a in real_only if a.name == experiment.baseline), real_only[0]).name


def judge_run(experiment: "ExperimentConfig", jobs) -> Path | None:
    """The run folder of the judge (module doc), or None when there is no finished one."""
    arm = judge_arm(experiment)
    runs = sorted((job for job in jobs if job.arm == arm and job.done), key=lambda job: experiment.seeds.index(job.seed)
                  if job.seed in experiment.seeds else len(experiment.seeds))
    return runs[0].run_dir if runs else None


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def add_set_metrics(
    results: dict[str, Any],
    experiment: "ExperimentConfig",
    nodes: dict[str, "StageNode"],
    jobs,
    real_train,
    train_digest: str | None,
    out_dir: Path,
    echo=print,
) -> dict[str, Any]:
    """Put ``set_metrics`` (and ``budget`` for a parity arm) into every arm of ``results``
    that trains on synthetic data; computes what is not cached (module doc)."""
    for entry in results["arms"]:
        arm = experiment.arm(entry["name"])
        folder = budget_dir(experiment, arm, nodes, train_digest)
        if folder is not None and (folder / BUDGET_FILE).is_file():
            record = json.loads((folder / BUDGET_FILE).read_text(encoding="utf-8"))
            entry["budget"] = {key: record[key] for key in ("synthetic_per_real", "seed", "images", "per_class")}
            entry["budget"]["dir"] = display_path(folder, out_dir)
    measured = measure_sets(experiment, [entry["name"] for entry in results["arms"]], nodes, jobs, real_train, train_digest, out_dir, echo)
    for entry in results["arms"]:
        if entry["name"] in measured:
            entry["set_metrics"] = measured[entry["name"]]
    return results


def measure_sets(
    experiment: "ExperimentConfig",
    arms: list[str],
    nodes: dict[str, "StageNode"],
    jobs,
    real_train,
    train_digest: str | None,
    out_dir: Path,
    echo=print,
) -> dict[str, dict[str, Any]]:
    """The metrics of the set each of ``arms`` trains on (arms on real images only are left
    out), read from their cache or computed and cached; the judge is :func:`judge_run` of ``jobs``."""
    config = experiment.metrics
    measured = [name for name in arms if experiment.arm(name).data_refs]
    if not config.enabled or not measured:
        return {}
    from genaug.checkpoint import BEST_FILE

    clip_name = metrics_clip(experiment)
    clip_identity = resolve_model(clip_reference(clip_name), field="metrics.clip").identity
    judge = judge_run(experiment, jobs)
    judge_digest = file_digest(judge / BEST_FILE) if judge is not None and (judge / BEST_FILE).is_file() else None
    if judge_digest is None:
        judge = None
    loaded: dict[str, Any] = {}

    def models() -> dict[str, Any]:
        if not loaded:
            from genaug.clip import Clip

            loaded["clip"] = Clip.from_reference(clip_name, stage="metrics", field="metrics.clip")
            loaded["reference"] = real_reference(real_train, loaded["clip"], config.batch_size)
            if judge is not None:
                from genaug.training.classifier import load_classifier

                loaded["classifier"] = load_classifier(judge)
        return loaded

    out: dict[str, dict[str, Any]] = {}
    for name in measured:
        arm = experiment.arm(name)
        sets = arm_sets(experiment, arm, nodes, train_digest)
        content = {
            "sets": [key for key, _ in sets], "clip": {k: v for k, v in clip_identity.items() if k != "path"}, "classifier": judge_digest, "k": config.k,
            "train": train_digest, "version": METRICS_VERSION,
        }  # fmt: skip
        key = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:12]
        artifacts = nodes[arm.data_refs[0].partition("/")[0]].dir.parent
        path = artifacts / f"metrics-{key}" / METRICS_FILE
        metrics = _read(path, key)
        if metrics is None:
            have = models()
            try:
                metrics = set_metrics(
                    [folder for _, folder in sets], real_train, have["clip"], have.get("classifier"), k=config.k,
                    batch_size=config.batch_size, reference=have["reference"],
                )  # fmt: skip
            except ValueError as error:  # e.g. a set with no kept image: the run's results still count
                echo(f"warning: no metrics for {arm.name}'s set: {error}")
                continue
            metrics = {
                "key": key, "sets": [display_path(folder, out_dir) for _, folder in sets], "clip": clip_identity,
                "classifier": display_path(judge, out_dir) if judge is not None else None, **metrics,
            }  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, metrics)
            echo(f"metrics of {arm.name}'s set: {metrics['images']} images in {metrics['seconds']:.1f} s")
        out[name] = {**metrics, "file": display_path(path, out_dir)}
    return out


def _read(path: Path, key: str) -> dict[str, Any] | None:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if metrics.get("key") == key else None

