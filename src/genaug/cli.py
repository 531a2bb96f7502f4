"""The ``genaug`` command line: one subcommand per stage, argument parsing only."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Generative dataset augmentation.")


def main() -> None:
    app()


@app.command()
def version() -> None:
    """Print genaug's version."""
    from genaug import __version__

    typer.echo(__version__)
