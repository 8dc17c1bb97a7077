"""``bgcut review``: the review page of a finished run (``bgcut/review.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import reported_errors


def review_cli(
    folder: Annotated[Path, typer.Argument(help="A finished run's output folder.")],
    manifest: Annotated[
        Path, typer.Option("--manifest", help="The run's manifest (the --manifest it was written with).")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="The page to write (default: FOLDER/review.html); thumbnails go beside it."
        ),
    ] = None,
) -> None:
    """Write one page to look through a run's cut-outs, worst first (by doubt), with keys to mark rejects.

    Each cut-out is a thumbnail on a checkerboard beside its source, with its doubt and what it is
    made of; filter by doubt and folder. x marks a reject, e exports the rejects as a list of
    inputs, one per line, for bgcut to read back: bgcut - -o redo -m isnet-general < rejects.txt.
    Thumbnails are made once and kept beside the page. Open the page in a browser: no server.

    Example: bgcut review out --manifest run.jsonl
    """
    from ..review import make_review

    with reported_errors():
        summary = make_review(folder, manifest, output)
    typer.echo(
        f"bgcut: review page {summary.page}: {summary.entries} cut-outs; thumbnails {summary.thumbnails_made} made, "
        f"{summary.thumbnails_kept} kept" + (f", {summary.unreadable} unreadable" if summary.unreadable else ""),
        err=True,
    )
