"""The ``bgcut`` command line: a thin Typer layer over the library.

``bgcut INPUT... -o OUT`` runs ``remove``; ``models``, ``train`` and ``eval`` are commands
beside it (see ``DefaultToRemove`` for how a folder with a command's name is reached).
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from ._common import DefaultToRemove

app = typer.Typer(
    name="bgcut",
    cls=DefaultToRemove,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help=(
        "Cut the background out of images in bulk.\n\n"
        "Main job: bgcut INPUT... -o OUT [--format png-alpha|mask|crop|webp|jpg] (see `bgcut remove --help`). "
        "A first argument naming a command runs it; write a folder with such a name as ./NAME."
    ),
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bgcut {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Cut the background out of images in bulk."""


def _register() -> None:
    from . import evaluate, models, paste, remove, train

    app.command("remove")(remove.remove_cli)
    app.add_typer(models.app, name="models")
    app.command("train")(train.train_cli)
    app.command("eval")(evaluate.eval_cli)
    app.command("paste")(paste.paste_cli)


_register()


def main() -> None:
    app(prog_name="bgcut")
