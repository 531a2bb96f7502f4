"""The ``genaug`` command line: one subcommand per stage, argument parsing only.

Every command parses its arguments, builds the stage's typed config and calls the library
function that does the work; errors the user can fix are printed without a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from genaug import __version__
from genaug.config import COMMAND_LINE, ConfigError, apply_overrides, load_config, parse_config, read_yaml_mapping
from genaug.experiment.verdicts import verdict_table
from genaug.generation.presets import store_presets
from genaug.home import packaged_config
from genaug.pocket import pocket_info
from genaug.pocket.store import format_pocket_info
from genaug.warn import WARNINGS_LOG, record_warnings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Generative dataset augmentation.")
data_app = typer.Typer(no_args_is_help=True, help="Real datasets: inspect and prepare.")
app.add_typer(data_app, name="data")
pocket_app = typer.Typer(no_args_is_help=True, help="The pocket world: tiny CLIP / SD / InstructPix2Pix on styled digits.")
app.add_typer(pocket_app, name="pocket")
sdi_app = typer.Typer(no_args_is_help=True, help="SDI: embed, train the projector, build the bank, sample, generate.")
app.add_typer(sdi_app, name="sdi")
fractals_app = typer.Typer(no_args_is_help=True, help="Fractal banks for blending and online mixing.")
app.add_typer(fractals_app, name="fractals")

Overrides = Annotated[Optional[list[str]], typer.Argument(help="key.sub=value overrides")]
ConfigFile = Annotated[Optional[Path], typer.Argument(help="YAML config of the stage (fields can also come as overrides)")]
Shard = Annotated[
    Optional[str],
    typer.Option("--shard", help="make only shard i of n ('i/n', e.g. a Slurm array task); then `genaug merge`"),
]


#: The errors shown as one line with exit status 2: (module, class) pairs.
USER_ERRORS = (
    ("genaug.config", "ConfigError"), ("genaug.data.base", "DatasetError"), ("genaug.manifest", "ManifestError"),
    ("genaug.manifest", "StorageError"), ("genaug.memory", "DoesNotFitError"), ("genaug.checkpoint", "UntrustedFileError"),
    ("genaug.experiment.budget", "BudgetError"), ("genaug.experiment.slurm", "SlurmError"),
)  # fmt: skip


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is one of :data:`USER_ERRORS` or a missing file. The classes are looked up
    among the modules already imported (an error of a module not imported cannot have been
    raised), so that ``genaug --help`` or a config error does not import torch."""
    kinds = tuple(getattr(sys.modules[module], name) for module, name in USER_ERRORS if module in sys.modules)
    return isinstance(error, (*kinds, FileNotFoundError))


def main() -> None:
    try:
        app()
    except Exception as error:
        if not is_user_error(error):
            raise
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
    except SystemExit as exit_:
        if exit_.code == 130:  # typer's exit status for Ctrl-C (KeyboardInterrupt)
            typer.secho("interrupted; rerun the same command to resume", fg=typer.colors.YELLOW, err=True)
        raise


@app.command()
def version() -> None:
    """Print genaug's version."""
    typer.echo(__version__)


# ------------------------------------------------------------------------------ data


@data_app.command("info")
def data_info(
    name: Annotated[str, typer.Argument(help="dataset name, a YAML file holding a dataset config, or an experiment file")],
    overrides: Overrides = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON (UTF-8)")] = False,
) -> None:
    """Classes with their counts per split, image and packed sizes, skipped and ignored files of a
    dataset; flags classes with fewer than 2 validation images. Given an experiment file, also checks
    what its stages and training runs need of the data, one line per problem (exit 2).

    Example: ``genaug data info folder root=/data/flowers image_size=64``.
    """
    from genaug.data import dataset_info, load_splits
    from genaug.data.config import DatasetConfig

    experiment = None
    if name.endswith((".yaml", ".yml")):
        if "arms" in read_yaml_mapping(name):
            from genaug.experiment import load_experiment

            experiment = load_experiment(name, overrides)
            config = experiment.dataset
        else:
            config = load_config(DatasetConfig, name, overrides)
    else:
        config = parse_config(DatasetConfig, apply_overrides({"name": name}, overrides), COMMAND_LINE)
    splits = load_splits(config)
    info = dataset_info(splits, packed_size=config.image_size)
    info["problems"] = _data_problems(config, splits, experiment)
    if as_json:
        typer.echo(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        _print_dataset_info(info)
    if info["problems"]:
        raise ConfigError(info["problems"][0] if len(info["problems"]) == 1 else "\n  ".join([f"{len(info['problems'])} problems:", *info["problems"]]))


def _data_problems(config, splits, experiment) -> list[str]:
    """Empty classes (unless allowed) and, for an experiment, every need of its stages and runs."""
    from genaug.data.needs import empty_class_problems

    if experiment is None:
        return empty_class_problems(splits["train"], config.allow_empty_classes)
    from genaug.experiment.checks import data_problems
    from genaug.experiment.graph import build_graph, upstream
    from genaug.experiment.runner import plan_jobs

    nodes = build_graph(experiment, Path("/nonexistent/genaug-data-info"), identity={})  # configs only
    needed = upstream(nodes, [ref for arm in experiment.arms for ref in arm.data_refs])
    jobs = plan_jobs(experiment, nodes, Path("/nonexistent/genaug-data-info"), [arm.name for arm in experiment.arms], experiment.seeds[:1], identity={})
    return data_problems(experiment, splits["train"], needed, jobs)


def _print_dataset_info(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    packed = info.get("packed_size")
    table = Table(title=f"{info['name']}: {info['num_classes']} classes")
    table.add_column("class")
    splits = list(info["splits"])
    for split in splits:
        table.add_column(split, justify="right")
    for name in info["class_names"]:
        table.add_row(name, *(str(info["splits"][split]["per_class"].get(name, 0)) for split in splits))
    table.add_row("[bold]all[/bold]", *(f"[bold]{info['splits'][split]['count']}[/bold]" for split in splits))
    console.print(table)
    for split, entry in info["splits"].items():
        sizes = entry.get("image_sizes")
        if sizes and sizes.get("probed"):
            console.print(
                f"{split}: original sizes {sizes['min'][0]}x{sizes['min'][1]} to {sizes['max'][0]}x{sizes['max'][1]} px "
                f"(height x width, most common {sizes['most_common'][0]}x{sizes['most_common'][1]})",
                markup=False, highlight=False,
            )
        elif entry.get("image_size"):
            console.print(f"{split}: images {entry['image_size'][0]}x{entry['image_size'][1]} px", markup=False, highlight=False)
    if packed is not None:
        console.print(f"packed at {packed} x {packed} px", markup=False, highlight=False)
    elif any("image_sizes" in entry for entry in info["splits"].values()):
        console.print("packed size: not set (set image_size=<px> to train on these files)", markup=False, highlight=False)
    for title, key in (("skipped (unusable images)", "skipped"), ("ignored (not images)", "ignored")):
        if info.get(key):
            console.print(f"[yellow]{len(info[key])} file(s) {title}:[/yellow]")
            for item in info[key]:
                console.print(f"  {item['path']}: {item['reason']}", markup=False, highlight=False, soft_wrap=True)
    for flag in info.get("flags", []):
        console.print(f"[yellow]flag:[/yellow] {flag}", highlight=False, soft_wrap=True)


@data_app.command("prepare")
def data_prepare(
    name: Annotated[str, typer.Argument(help="cifar10 or cifar100")],
    root: Annotated[Path, typer.Option(help="folder to download and extract into")],
) -> None:
    """Download and extract a dataset where a network exists."""
    from genaug.data import prepare_dataset

    path = prepare_dataset(name, root)
    typer.echo(f"{name} ready at {path}")


# ---------------------------------------------------------------------------- pocket


@pocket_app.command("build")
def pocket_build(
    quick: Annotated[bool, typer.Option("--quick", help="same code, a few minutes of training (for tests)")] = False,
    spec: Annotated[Optional[Path], typer.Option(help="build spec YAML (default: the committed spec)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output folder (default: GENAUG_HOME/pocket)")] = None,
    keep_checkpoints: Annotated[bool, typer.Option(help="keep per-model training checkpoints")] = False,
    threads: Annotated[Optional[int], typer.Option(help="torch intra-op threads")] = None,
) -> None:
    """Train pocket CLIP, SD and InstructPix2Pix from the build spec (resumes a killed build)."""
    from genaug.pocket import build_pocket

    info = build_pocket(spec_path=spec, out_dir=out, quick=quick, keep_checkpoints=keep_checkpoints, num_threads=threads)
    typer.echo(format_pocket_info(info))


@pocket_app.command("info")
def pocket_info_command(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Where the pocket models in use are, their spec hash and measured quality."""
    info = pocket_info()
    typer.echo(json.dumps(info, indent=2, default=str) if as_json else format_pocket_info(info))


def _stage_config(model, config: Path | None, overrides: list[str] | None, check: bool = False):
    """A stage's typed config from an optional YAML file and ``key=value`` overrides.

    ``check``: resolve its models and warn about mismatches now, before anything is written.
    """
    config, overrides = _file_and_overrides(config, overrides)
    stage = load_config(model, config, overrides)
    if check:
        from genaug.checks import preflight_stage

        preflight_stage(stage, config, overrides)
    return stage


def _file_and_overrides(config: Path | None, overrides: list[str] | None) -> tuple[Path | None, list[str] | None]:
    """The config file argument may be the first ``key=value`` override instead."""
    text = str(config) if config is not None else ""
    if "=" in text and "/" not in text.split("=", 1)[0] and not config.is_file():
        return None, [text, *(overrides or [])]  # no file, only key=value overrides
    return config, overrides


def _preflight_train(run, config: Path | None, overrides: list[str] | None) -> list[str]:
    from genaug.checks import preflight_train

    return preflight_train(run, *_file_and_overrides(config, overrides))


def _quiet_model_loading() -> None:
    """No per-file "Loading pipeline components" / "Loading weights" bars: they would bury the
    stage and training progress (the libraries read the variable only when first imported)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import diffusers
    import huggingface_hub
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


class _TrainCommand(typer.core.TyperCommand):
    """``genaug train --help`` ends with the recipes and the fields (built when asked for)."""

    def format_help(self, ctx, formatter) -> None:
        from genaug.training.config import train_help

        self.epilog = train_help()
        super().format_help(ctx, formatter)


# ------------------------------------------------------------------------- the stages


@app.command(cls=_TrainCommand)
def train(config: ConfigFile = None, overrides: Overrides = None) -> None:
    """Train one classifier (``dataset``, ``train`` recipe fields, optional ``synthetic`` sets, ``output``).

    Example: ``genaug train output=runs/baseline train.recipe=pocket``.
    """
    from genaug.data import load_splits
    from genaug.training import train as run_training
    from genaug.training.config import TrainRunConfig

    run = _stage_config(TrainRunConfig, config, overrides)
    warnings = _preflight_train(run, config, overrides)
    splits = load_splits(run.dataset)
    from genaug.checks import check_train_data

    check_train_data(run, splits["train"], *_file_and_overrides(config, overrides))  # before any work, as `genaug run`
    synthetic = None
    if run.synthetic:
        from genaug.data.synthetic import load_synthetic_set

        synthetic = load_synthetic_set(run.synthetic, splits["train"].class_names)
    from genaug.experiment.runner import checkpoint_epochs

    if not (run.output / "metrics.json").is_file() and checkpoint_epochs(run.output) is not None:
        typer.echo(f"resuming from {run.output} (after {checkpoint_epochs(run.output)} epochs)")
    result = run_training(run.train, splits, run.output, synthetic)
    record_warnings(run.output / WARNINGS_LOG, warnings)
    typer.echo(
        f"test top-1 {result.test['top1']:.2f} %, balanced accuracy {result.test['balanced_accuracy']:.2f} % "
        f"({result.selection} weights, epoch {result.best_epoch}); {run.output / 'metrics.json'}"
    )


@app.command()
def generate(config: ConfigFile = None, overrides: Overrides = None, shard: Shard = None) -> None:
    """Edit or synthesise images of a real dataset into a synthetic set (DiffuseMix ``generate``)."""
    from genaug.generation import generate as run_generate
    from genaug.generation.config import GenerateConfig

    from genaug.checks import check_stage_data
    from genaug.data import load_dataset

    overrides = _with_shard(overrides, shard, "engine.shard")
    stage = _stage_config(GenerateConfig, config, overrides, check=True)
    dataset = load_dataset(stage.dataset)
    check_stage_data(stage, dataset, *_file_and_overrides(config, overrides))  # before any work, as `genaug run`
    _quiet_model_loading()
    report = run_generate(stage, dataset=dataset)
    _echo_job(report)


def _with_shard(overrides: list[str] | None, shard: str | None, key: str) -> list[str] | None:
    """``--shard i/n`` is the ``key=i/n`` override (the engine checks it)."""
    return overrides if shard is None else [*(overrides or []), f"{key}={shard}"]


def _echo_job(report) -> None:
    if report.estimated_seconds is not None:
        typer.echo(
            f"dry run: {report.shard_items - report.already_done} of {report.total_items} items to make, "
            f"about {report.estimated_seconds:.0f} s ({report.estimate_source})"
        )
        return
    typer.echo(
        f"{report.made} images made, {report.already_done} already there, {report.regenerated} regenerated, "
        f"{report.degenerate} still degenerate; {report.images_per_second:.2f} images/s "
        f"at batch {report.batch_size} -> {report.set_dir}"
    )


@app.command()
def mix(config: ConfigFile = None, overrides: Overrides = None) -> None:
    """Combine generated images with their real sources (concat, rect, fractal, shb), one set per method."""
    from genaug.mixing.config import MixConfig
    from genaug.mixing.stage import mix as run_mix

    for method, report in run_mix(_stage_config(MixConfig, config, overrides, check=True)).items():
        typer.echo(f"{method}: {report.made} made, {report.already_done} already there -> {report.set_dir}")
        if report.skipped_without_source:
            typer.echo(f"  {len(report.skipped_without_source)} records without a real source were skipped")


@app.command()
def merge(set_dir: Annotated[Path, typer.Argument(help="a synthetic set written by several shards")]) -> None:
    """Join the shards' manifest.<rank>.jsonl into the set's manifest.jsonl."""
    from genaug.manifest import merge_shards

    records = merge_shards(set_dir)
    typer.echo(f"{len(records)} records in {set_dir / 'manifest.jsonl'}")


@fractals_app.command("make")
def fractals_make(
    output: Annotated[Path, typer.Argument(help="folder to write the fractal PNGs into")],
    count: Annotated[int, typer.Option(help="number of fractals")] = 256,
    size: Annotated[int, typer.Option(help="side length in pixels")] = 64,
    seed: Annotated[int, typer.Option(help="seed of the iterated function systems")] = 0,
) -> None:
    """Render a seeded bank of IFS fractals as PNGs (usable as a folder bank)."""
    from genaug.mixing.config import FractalBankConfig
    from genaug.mixing.fractals import make_fractal_folder

    paths = make_fractal_folder(FractalBankConfig(count=count, size=size, seed=seed), output)
    typer.echo(f"{len(paths)} fractals in {output}")


@app.command("filter")
def filter_command(config: ConfigFile = None, overrides: Overrides = None) -> None:
    """Score a synthetic set and mark which records training keeps (never deletes)."""
    from genaug.filtering import filter_set
    from genaug.filtering.config import FilterConfig

    report = filter_set(_stage_config(FilterConfig, config, overrides, check=True))
    counts = ", ".join(f"{name} dropped {len(ids)}" for name, ids in report.dropped.items())
    typer.echo(f"kept {report.kept} of {report.total} ({counts}) in {report.seconds:.1f} s -> {report.set_dir}")
    reused = {name: sum(found.values()) for name, found in report.scores_reused.items()}
    if reused:
        typer.echo("scores from the cache: " + ", ".join(f"{name} {n} of {report.total}" for name, n in reused.items()))


def _sdi_config(config: Path | None, overrides: list[str] | None):
    from genaug.sdi.config import SdiConfig

    return _stage_config(SdiConfig, config, overrides, check=True)


@sdi_app.command("embed")
def sdi_embed(config: ConfigFile = None, overrides: Overrides = None) -> None:
    """CLIP image_embeds of the training images (cached with their ids)."""
    from genaug.sdi import embed_training_images

    for pool, path in embed_training_images(_sdi_config(config, overrides)).items():
        typer.echo(f"{pool}: {path}")


@sdi_app.command("train")
def sdi_train(config: ConfigFile = None, overrides: Overrides = None) -> None:
    """Train the projector against frozen SD (resumes from its checkpoint)."""
    from genaug.sdi import train_projector

    run = train_projector(_sdi_config(config, overrides))
    typer.echo(f"projector: {run.steps} steps, final loss {run.final_loss:.4f}, {run.steps_per_second:.2f} steps/s -> {run.path}")


@sdi_app.command("bank")
def sdi_bank(config: ConfigFile = None, overrides: Overrides = None) -> None:
    """Project the training images' embeddings into the feature bank."""
    from genaug.sdi import build_bank

    typer.echo(f"bank: {build_bank(_sdi_config(config, overrides))}")


@sdi_app.command("sample")
def sdi_sample(config: ConfigFile = None, overrides: Overrides = None) -> None:
    """Fit the per-class sampler and draw multiplier x N_c new features per class."""
    from genaug.sdi import sample_features

    typer.echo(f"samples: {sample_features(_sdi_config(config, overrides))}")


@sdi_app.command("generate")
def sdi_generate(config: ConfigFile = None, overrides: Overrides = None, shard: Shard = None) -> None:
    """Generate one image per sampled feature through the generation engine."""
    from genaug.sdi import generate_from_samples

    _echo_job(generate_from_samples(_sdi_config(config, _with_shard(overrides, shard, "generate.engine.shard"))))


# ------------------------------------------------------------------------ experiments


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="experiment YAML (see configs/)")],
    overrides: Overrides = None,
    out: Annotated[Optional[Path], typer.Option(help="run folder (default: runs/<experiment name>)")] = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="run only this arm (repeatable)")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="comma-separated seeds replacing the file's")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the stage graph, what is cached and an estimate")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="apply the file's quick: section")] = False,
    artifacts: Annotated[Optional[Path], typer.Option(help="stage-output folder shared between runs")] = None,
    rehearse_: Annotated[
        bool, typer.Option("--rehearse", help="run every stage on stand-ins of the models at real shapes (genaug rehearse)")
    ] = False,
    launcher: Annotated[
        Optional[str], typer.Option("--launcher", help="local (this machine, the default) or slurm (jobs; the file's launcher: section)")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="--no-wait: submit the Slurm jobs that are ready and exit")] = True,
) -> None:
    """Run an experiment: stages, every arm x seed, results table and HTML report."""
    from genaug.experiment import load_experiment

    experiment = load_experiment(config, overrides, quick=quick)
    _check_only(experiment, only)
    if launcher not in (None, "local", "slurm"):
        raise ConfigError(f"on the command line: --launcher must be local or slurm, got {launcher!r}")
    _quiet_model_loading()
    if rehearse_:
        _rehearse(experiment, out, steps=1, flops=True)
        return
    _run_and_print(experiment, out or Path("runs") / experiment.name, only, _parse_seeds(seeds), dry_run, artifacts, launcher, wait)


def _check_only(experiment, only: list[str] | None) -> None:
    for name in only or []:
        try:
            experiment.arm(name)
        except ConfigError as error:
            raise ConfigError(f"on {COMMAND_LINE}: --only: {error}") from None


@app.command()
def rehearse(
    config: Annotated[Path, typer.Argument(help="experiment YAML (see configs/)")],
    overrides: Overrides = None,
    out: Annotated[Optional[Path], typer.Option(help="rehearsal folder (default: runs/<experiment name>-rehearsal)")] = None,
    steps: Annotated[int, typer.Option(help="denoising steps per item (timings are extrapolated to the real count)")] = 1,
    flops: Annotated[bool, typer.Option("--flops/--no-flops", help="count FLOPs (torch.utils.flop_counter)")] = True,
) -> None:
    """Every stage of an experiment on stand-ins of its models (real architectures, random weights):
    1-2 items per stage at real shapes, measured; writes rehearsal.json and rehearsal.md."""
    from genaug.experiment import load_experiment

    _rehearse(load_experiment(config, overrides), out, steps=steps, flops=flops)


def _rehearse(experiment, out: Path | None, steps: int, flops: bool) -> None:
    from genaug.rehearsal.run import REHEARSAL_JSON, REHEARSAL_MD, rehearse as rehearse_experiment

    out = out or Path("runs") / f"{experiment.name}-rehearsal"
    result = rehearse_experiment(experiment, out, steps=steps, count_flops=flops, echo=typer.echo)
    typer.echo((out / REHEARSAL_MD).read_text(encoding="utf-8"))
    typer.echo(f"rehearsal: {out / REHEARSAL_JSON}")
    if result["failed"]:
        raise SystemExit(1)


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"on the command line: --seeds must be comma-separated integers, got {text!r}") from None


def _run_and_print(
    experiment, out: Path, only, seeds, dry_run: bool, artifacts: Path | None, launcher: str | None = None, wait: bool = True
) -> None:
    from rich.console import Console

    from genaug.experiment import results_table, run_experiment

    try:
        results = run_experiment(experiment, out, artifacts=artifacts, only=only, seeds=seeds, dry_run=dry_run,
                                 echo=typer.echo, launcher=launcher, wait=wait)  # fmt: skip
    except Exception as error:
        from genaug.experiment.slurm import LeftRunning

        if not isinstance(error, LeftRunning):
            raise
        typer.echo(str(error))
        return
    if results is None:
        return
    from genaug.experiment.runner import metrics_table, verdict_lines, warning_lines

    # Never cut arm names or "mean ± std" cells: the console is as wide as the table needs
    # (a pipe or log file otherwise gets 80 columns).
    console = Console()
    for table in (verdict_table(results), results_table(results), metrics_table(results)):
        if table is not None:
            needed = console.measure(table, options=console.options.update(width=1000)).maximum
            Console(width=max(console.width, needed)).print(table)
    for line in verdict_lines(results):
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    for line in warning_lines(results):
        typer.secho(line, fg=typer.colors.YELLOW, err=True)
    console.print(f"results: {out / 'results.json'}")
    if results.get("report"):
        console.print(f"report:  {results['report']}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run folder written by genaug run")]) -> None:
    """Write (or rewrite) the HTML report of a run folder."""
    from genaug.report import write_report

    typer.echo(f"report: {write_report(run_dir)}")


@app.command()
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="four arms, two seeds, short training (about a minute)")] = False,
    out: Annotated[Optional[Path], typer.Option(help="run folder (default: runs/demo or runs/demo-quick)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan only")] = False,
) -> None:
    """The whole study on the pocket world with the shipped pocket models: table + HTML report."""
    from genaug.experiment import load_experiment

    _quiet_model_loading()
    experiment = load_experiment(packaged_config("demo.yaml"), quick=quick)
    _run_and_print(experiment, out or Path("runs") / ("demo-quick" if quick else "demo"), None, None, dry_run, None)


# ------------------------------------------------------------------------ Slurm tasks

task_app = typer.Typer(no_args_is_help=True, hidden=True, help="What one Slurm task of `genaug run --launcher slurm` runs.")
app.add_typer(task_app, name="task")
RunDir = Annotated[Path, typer.Argument(help="the run folder (its experiment.yaml and slurm/launch.json)")]
StageName = Annotated[str, typer.Argument(help="the stage's name in the experiment")]
StageKey = Annotated[str, typer.Argument(help="the stage's key when it was submitted (checked)")]


@task_app.command("stage")
def task_stage(
    run_dir: RunDir, name: StageName, key: StageKey, shard: Shard = None,
    prepare: Annotated[bool, typer.Option("--prepare", help="only what runs once before the stage's array (SDI: projector, bank, samples)")] = False,
) -> None:
    """Run a stage of the run folder's experiment (or its prepare part, or one shard of its images)."""
    from genaug.experiment.slurm import run_stage_task

    _quiet_model_loading()
    run_stage_task(run_dir, name, key, shard, prepare, echo=typer.echo)


@task_app.command("merge")
def task_merge(
    run_dir: RunDir, name: StageName, key: StageKey, shards: Annotated[int, typer.Option(help="the stage's shard count")] = 1
) -> None:
    """Merge the shards of a generate stage and record the stage."""
    from genaug.experiment.slurm import run_merge_task

    _quiet_model_loading()
    run_merge_task(run_dir, name, key, shards, echo=typer.echo)


@task_app.command("train")
def task_train(spec: Annotated[Path, typer.Argument(help="slurm/specs/<run>.json of the run folder")]) -> None:
    """Train one arm x seed of an experiment."""
    from genaug.experiment.slurm import run_train_task

    run_train_task(spec, echo=typer.echo)


# ------------------------------------------------------------------------ benchmarks

bench_app = typer.Typer(no_args_is_help=True, help="Measure speed (and judged quality) of generation settings.")
app.add_typer(bench_app, name="bench")


def _csv(text: str, cast=str) -> list:
    try:
        return [cast(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"expected a comma-separated list, got {text!r}") from None


@bench_app.command("sampling")
def bench_sampling(
    model: Annotated[str, typer.Argument(help="pocket:sd, pocket:ip2p, a diffusers pipeline folder or a hub id")],
    generator: Annotated[Optional[str], typer.Option(help="txt2img, instruct or sdi (default: from the model)")] = None,
    sdi_config: Annotated[Optional[Path], typer.Option(help="for --generator sdi: the SDI config whose sampled vectors are rendered")] = None,
    schedulers: Annotated[str, typer.Option(help="comma-separated: ddim, dpmsolver (DPM-Solver++ 2M), unipc, euler_ancestral, ...")] = "ddim,dpmsolver,unipc,euler_ancestral",
    steps: Annotated[str, typer.Option(help="comma-separated step counts")] = "4,6,8,12,20",
    precisions: Annotated[str, typer.Option(help="comma-separated: fp32, bf16 (autocast), fp16 (CUDA)")] = "fp32",
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "50",
    extra: Annotated[str, typer.Option(help="more points outside the grid: scheduler:steps:precision[:batch],...")] = "",
    images: Annotated[int, typer.Option(help="images per setting (same prompts, sources and seeds at every setting)")] = 200,
    speed_only: Annotated[bool, typer.Option("--speed-only", help="no judging (any model; e.g. real-architecture stand-ins)")] = False,
    size: Annotated[Optional[int], typer.Option(help="working side length (default: the model's native size)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    out: Annotated[Path, typer.Option(help="folder for sweep.json, sweep.md and pareto.png")] = Path("runs/bench-sampling"),
    write_presets: Annotated[bool, typer.Option("--write-presets", help="store reference and fast in genaug's presets file")] = False,
) -> None:
    """Sweep schedulers x steps x precision x batch size: images/s, class fidelity, colour, FD (CLIP)."""
    from genaug.generation import frontier
    from genaug.sdi.config import SdiConfig

    sdi = load_config(SdiConfig, sdi_config) if sdi_config else None
    _quiet_model_loading()
    try:
        frontier.check_sweep(model, generator, not speed_only, sdi)
        points = frontier.sweep_grid(_csv(schedulers), _csv(steps, int), _csv(precisions), _csv(batch_sizes, int))
        points += [frontier.parse_point(text, int(_csv(batch_sizes, int)[0])) for text in _csv(extra)]
        if images < 2:
            raise ValueError(f"--images must be >= 2, got {images}")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    result = frontier.sweep_sampling(model, points, generator=generator, images=images, quality=not speed_only,
                                     device=device, size=size, sdi=sdi, log=typer.echo)
    paths = frontier.write_sweep(result, out)
    typer.echo(paths["table"].read_text())
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")
    if write_presets and not speed_only:
        typer.echo(f"presets: {store_presets(frontier.preset_key(result), frontier.preset_entries(result), result.meta)}")
