"""``bgcut models list`` and ``bgcut models fetch``."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import reported_errors

app = typer.Typer(name="models", help="List the model zoo and download weights ahead of time.", no_args_is_help=True)


@app.command("list")
def list_cli(
    pattern: Annotated[str, typer.Argument(help="Only names matching this glob.")] = "*",
) -> None:
    """List registered models: name, parameters, input size, licence, and whether it runs offline.

    "offline" is "embedded" (ships inside bgcut), "cached" (in the huggingface_hub cache)
    or "no" (run `bgcut models fetch NAME` first).

    Example: bgcut models list
    """
    from ..models import count_parameters, get_pretrained_cfg, list_models
    from ..models._hub import cached_path, embedded_path

    rows = [("name", "params", "input", "licence", "offline")]
    for name in list_models(pattern):
        cfg = get_pretrained_cfg(name)
        where = "embedded" if embedded_path(cfg) else "cached" if cached_path(cfg) else "no"
        rows.append((name, f"{count_parameters(cfg) / 1e6:.2f}M", str(cfg.input_size), cfg.license, where))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@app.command("fetch")
def fetch_cli(
    names: Annotated[list[str], typer.Argument(help="Model names.", show_default=False)],
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if cached (repairs a corrupt file).")
    ] = False,
) -> None:
    """Download models' weights into the huggingface_hub cache (for offline use and CI).

    Honours HF_HOME, HF_ENDPOINT and HF_TOKEN; the sha256 of every file is checked.

    Example: bgcut models fetch bgcut-lite
    """
    from ..models import get_pretrained_cfg
    from ..models._hub import resolve_weights

    with reported_errors():
        for name in names:
            path, sha = resolve_weights(get_pretrained_cfg(name), force_download=force)
            typer.echo(f"{name}: {path} (sha256 {sha[:12]}…)")
