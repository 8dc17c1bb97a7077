"""The ``bgcut`` command line: a thin Typer layer over the library.

``bgcut INPUT... -o OUT`` runs ``remove``; ``models``, ``train``, ``eval``, ``paste``,
``serve``, ``camera`` and ``review`` are commands beside it (see ``DefaultToRemove`` for how a folder with a command's name is reached).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import __version__
from ..collector import no_collection_at_exit
from ..config import FORMATS
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
        f"Main job: bgcut INPUT... -o OUT [--format {'|'.join(FORMATS)}] (see `bgcut remove --help`). "
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
    from . import camera, evaluate, models, paste, remove, review, serve, train

    app.command("remove")(remove.remove_cli)
    app.add_typer(models.app, name="models")
    app.command("train")(train.train_cli)
    app.command("eval")(evaluate.eval_cli)
    app.command("paste")(paste.paste_cli)
    app.command("serve")(serve.serve_cli)
    app.command("camera")(camera.camera_cli)
    app.command("review")(review.review_cli)


_register()


def _click_error(name: str) -> type[Exception]:
    """click's exception class of that name, from the click that Typer actually runs on
    (recent Typer releases carry their own copy of click, whose classes are not ``click``'s)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


def _run_app() -> object:
    try:
        return app(prog_name="bgcut", standalone_mode=False)
    finally:
        no_collection_at_exit()  # whatever the outcome, the process ends next


def main() -> None:
    """The console script: Typer's app, with click's usage errors as one line like bgcut's own."""
    usage_error, click_error = _click_error("UsageError"), _click_error("ClickException")
    try:
        code = _run_app()
    except usage_error as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `bgcut` alone: the help, as before
            e.show()  # type: ignore[attr-defined]
        else:
            # click prints four lines (usage, a hint, a blank, the error); scripts and people want one.
            ctx = getattr(e, "ctx", None)
            where = ctx.command_path if ctx is not None else "bgcut"
            typer.echo(f"bgcut: error: {e.format_message()} (see `{where} --help`)", err=True)  # type: ignore[attr-defined]
        sys.exit(e.exit_code)  # type: ignore[attr-defined]
    except click_error as e:
        typer.echo(f"bgcut: error: {e.format_message()}", err=True)  # type: ignore[attr-defined]
        sys.exit(e.exit_code)  # type: ignore[attr-defined]
    except typer.Abort:  # Ctrl-C while click itself was parsing
        typer.echo("bgcut: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
