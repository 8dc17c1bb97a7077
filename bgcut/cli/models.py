"""``bgcut models list`` and ``bgcut models fetch``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..collector import imports_uncollected
from ..config import DEFAULT_STORAGE
from ._common import reported_errors

app = typer.Typer(name="models", help="List the model zoo and download weights ahead of time.", no_args_is_help=True)


@app.command("list")
def list_cli(
    pattern: Annotated[str, typer.Argument(help="Only names matching this glob.")] = "*",
) -> None:
    """List registered models: name, parameters, input size, licence, and whether it runs offline.

    "offline" is "embedded" (ships inside bgcut), "imported" (converted with `bgcut models
    import`), "cached" (in the huggingface_hub cache), "download" (published on the Hub, not
    downloaded yet: run `bgcut models fetch NAME`) or "unpublished" (no weights published: convert
    a checkpoint with `bgcut models import`, train one, or pass --weights).

    Example: bgcut models list
    """
    with imports_uncollected():
        from ..models import count_parameters, get_pretrained_cfg, list_models, local_weights

    rows = [("name", "params", "input", "licence", "offline")]
    for name in list_models(pattern):
        cfg = get_pretrained_cfg(name)
        local = local_weights(cfg)
        where = local[0] if local else "download" if cfg.hf_repo_id and cfg.sha256 else "unpublished"
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
    with imports_uncollected():
        from ..models import get_pretrained_cfg, resolve_weights

    with reported_errors():
        for name in names:
            path, sha = resolve_weights(get_pretrained_cfg(name), force_download=force)
            typer.echo(f"{name}: {path} (sha256 {sha[:12]}…)")


@app.command("import")
def import_cli(
    source: Annotated[
        Path,
        typer.Argument(
            help="A .onnx export or a .pth/.pt state dict.", exists=True, dir_okay=False, show_default=False
        ),
    ],
    arch: Annotated[
        str,
        typer.Option(
            "--arch", help="Architecture: isnet, u2net, unet_lite (u2netp = u2net with the u2netp model's config)."
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="Model name: a registered one (isnet-general, u2net, u2netp) takes its config from the registry.",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for model.safetensors + config.json (default: $BGCUT_HOME/models/NAME, where --model NAME finds it).",
        ),
    ] = None,
    storage: Annotated[
        str,
        typer.Option(
            "--storage",
            help="How the file stores the tensors: fp32, fp16, or int8 (per-channel weights, a quarter of fp32's size; read back as fp32).",
        ),
    ] = DEFAULT_STORAGE,
) -> None:
    """Convert a public checkpoint into bgcut's format: model.safetensors + config.json.

    ONNX files are read from their initializers (needs `pip install 'bgcut[import]'`);
    state dicts with torch.load(weights_only=True), so no pickled code runs. A file whose
    tensors do not fit the architecture (names, shapes, dtypes) is refused.

    Example: bgcut models import isnet.onnx --arch isnet --name isnet-general
    """
    from ..config import PretrainedCfg
    from ..errors import UsageError

    with imports_uncollected():
        from ..models import get_arch, get_pretrained_cfg, import_checkpoint, imported_dir, list_models

    with reported_errors():
        get_arch(arch)
        registered = name in list_models()
        cfg = get_pretrained_cfg(name) if registered else PretrainedCfg(name=name, arch=arch)
        if cfg.arch != arch:
            raise UsageError(f"model {name!r} is registered with architecture {cfg.arch!r}, not {arch!r}")
        target, sha = import_checkpoint(source, cfg, output or imported_dir(name), storage)
    typer.echo(f"{name}: {target} (sha256 {sha})")
    if registered and cfg.sha256 and sha != cfg.sha256:
        typer.echo(
            f"bgcut: warning: the sha256 differs from the registry's ({cfg.sha256[:12]}…): this is not the file "
            f"{name!r} is published as (another checkpoint, or another --storage); use it with --weights {target.parent}",
            err=True,
        )
