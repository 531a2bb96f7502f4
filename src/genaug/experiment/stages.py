"""Running one stage node: the library function of its kind, then its ``stage.json`` record.

Each stage function resumes by itself (the engine skips recorded items, the projector
resumes from its checkpoint, the mixer skips made records), so a killed experiment simply
calls it again. ``stage.json`` is written last and only on success: it is what marks a
node as cached, and it keeps the stage's cost (seconds, images, images per second) for
the results table of every later run that reuses it.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import time
from pathlib import Path
from typing import Any

from genaug.experiment.graph import StageNode, set_dir
from genaug.files import write_json_atomic
from genaug.manifest import MANIFEST, read_manifest

__all__ = ["run_stage"]


def run_stage(node: StageNode, nodes: dict[str, StageNode]) -> dict[str, Any]:
    """Run ``node`` (its input already done) and return its record."""
    node.dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    made, extra = RUNNERS[node.kind](node, nodes)
    seconds = time.perf_counter() - started
    sets = output_sets(node)
    record = {
        "name": node.name,
        "kind": node.kind,
        "key": node.key,
        "input": node.input,
        "data": node.data,
        "config": node.config.model_dump(mode="json"),
        "sets": {method: str(path.relative_to(node.dir)) for method, path in sets.items()},
        "images": {method: len(read_manifest(path)) for method, path in sets.items()},
        "made": made,
        "seconds": seconds,
        "images_per_second": made / seconds if seconds > 0 and made else None,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    write_json_atomic(node.record_path, record)
    return record


def output_sets(node: StageNode) -> dict[str, Path]:
    if node.kind == "mix":
        return {method: set_dir(node, method) for method in node.config.methods}
    return {node.kind: set_dir(node)}


def _run_generate(node: StageNode, nodes: dict[str, StageNode]) -> tuple[int, dict]:
    from genaug.generation import generate

    report = generate(node.config)
    return report.made, {"regenerated": report.regenerated, "degenerate": report.degenerate}


def _run_mix(node: StageNode, nodes: dict[str, StageNode]) -> tuple[int, dict]:
    from genaug.mixing.stage import mix

    reports = mix(node.config)
    skipped = sorted({item for report in reports.values() for item in report.skipped_without_source})
    return sum(report.made for report in reports.values()), {"skipped_without_source": skipped}


def _run_sdi(node: StageNode, nodes: dict[str, StageNode]) -> tuple[int, dict]:
    from genaug.sdi import build_bank, embed_training_images, generate_from_samples, sample_features, train_projector

    config = node.config
    embed_training_images(config)
    run = train_projector(config)
    build_bank(config)
    sample_features(config)
    report = generate_from_samples(config)
    return report.made, {"projector_steps": run.steps, "projector_loss": run.final_loss, "degenerate": report.degenerate}


def _run_filter(node: StageNode, nodes: dict[str, StageNode]) -> tuple[int, dict]:
    """Filter a copy of the input set: its manifest is copied, its images linked, never touched.

    Two arms may read one set unfiltered and filtered (or filtered two ways): scores and
    verdicts go into this node's own manifest only.
    """
    from genaug.filtering import filter_set

    base, _, method = node.input.partition("/")
    source = set_dir(nodes[base], method or None)
    link_set(source, node.dir)
    report = filter_set(node.config)
    return 0, {"total": report.total, "kept": report.kept, "filter_seconds": report.seconds}


def link_set(source: Path, target: Path) -> None:
    """``target`` shows ``source``'s images (relative symlinks) with its own copy of the manifest."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name.startswith(".") or entry.name.startswith("manifest"):
            continue
        if entry.name in ("filter.json", "stage.json"):
            continue
        link = target / entry.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(Path(_relative(entry, target)))
    if not (target / MANIFEST).is_file():
        tmp = target / f".{MANIFEST}.tmp"
        shutil.copyfile(source / MANIFEST, tmp)
        tmp.replace(target / MANIFEST)


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


RUNNERS = {"generate": _run_generate, "mix": _run_mix, "sdi": _run_sdi, "filter": _run_filter}
