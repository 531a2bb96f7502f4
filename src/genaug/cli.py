"""The ``genaug`` command line: one subcommand per stage, argument parsing only.

Every command parses its arguments, builds the stage's typed config and calls the library
function that does the work; errors the user can fix are printed without a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Generative dataset augmentation.")
data_app = typer.Typer(no_args_is_help=True, help="Real datasets: inspect and prepare.")
app.add_typer(data_app, name="data")
pocket_app = typer.Typer(no_args_is_help=True, help="The pocket world: tiny CLIP / SD / InstructPix2Pix on styled digits.")
app.add_typer(pocket_app, name="pocket")

Overrides = Annotated[Optional[list[str]], typer.Argument(help="key.sub=value overrides")]


def main() -> None:
    from genaug.config import ConfigError
    from genaug.data.base import DatasetError

    try:
        app()
    except (ConfigError, DatasetError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


@app.command()
def version() -> None:
    """Print genaug's version."""
    from genaug import __version__

    typer.echo(__version__)


# ------------------------------------------------------------------------------ data


@data_app.command("info")
def data_info(
    name: Annotated[str, typer.Argument(help="dataset name, or a YAML file holding a dataset config")],
    overrides: Overrides = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Counts per split and class, image sizes and skipped files of a dataset.

    Example: ``genaug data info folder root=/data/flowers image_size=64``.
    """
    from genaug.config import DatasetConfig, load_config, parse_config
    from genaug.data import dataset_info, load_splits

    if name.endswith((".yaml", ".yml")):
        config = load_config(DatasetConfig, name, overrides)
    else:
        from genaug.config import apply_overrides

        config = parse_config(DatasetConfig, apply_overrides({"name": name}, overrides), "command line")
    info = dataset_info(load_splits(config))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    _print_dataset_info(info)


def _print_dataset_info(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{info['name']}: {info['num_classes']} classes")
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("per class (min / max)", justify="right")
    table.add_column("image size")
    for split, entry in info["splits"].items():
        counts = list(entry["per_class"].values())
        size = entry.get("image_size") or entry.get("image_sizes", {}).get("most_common", "?")
        table.add_row(split, str(entry["count"]), f"{min(counts)} / {max(counts)}", str(size))
    console.print(table)
    if info["skipped"]:
        console.print(f"[yellow]{len(info['skipped'])} file(s) skipped:[/yellow]")
        for item in info["skipped"]:
            console.print(f"  {item['path']}: {item['reason']}", markup=False, highlight=False)


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
    from genaug.pocket.store import format_pocket_info

    info = build_pocket(spec_path=spec, out_dir=out, quick=quick, keep_checkpoints=keep_checkpoints, num_threads=threads)
    typer.echo(format_pocket_info(info))


@pocket_app.command("info")
def pocket_info_command(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Where the pocket models in use are, their spec hash and measured quality."""
    from genaug.pocket import pocket_info
    from genaug.pocket.store import format_pocket_info

    info = pocket_info()
    typer.echo(json.dumps(info, indent=2, default=str) if as_json else format_pocket_info(info))
