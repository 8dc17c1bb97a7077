"""Teacher soft masks for distillation: computed once with the batch engine, cached as PNGs.

The teacher (``isnet-general``, or any weights folder) runs as ``bgcut --format mask`` into
``OUTPUT/teacher/<name>-<sha256[:12]>/``. The cache is therefore resumable like any run: a
second training run, or one that was interrupted while the teacher worked, computes only the
masks that are missing. The weights' hash in the folder name means new weights never reuse
old masks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import OutputOptions, RunOptions
from ..errors import UsageError
from ..models import create_model
from ..run import remove_backgrounds


def teacher_run_options(teacher: str, device: str, workers: int) -> RunOptions:
    """A registry name, or a local weights file/folder (anything that exists on disk)."""
    if Path(teacher).exists():
        return RunOptions(weights=teacher, device=device, workers=workers)
    return RunOptions(model=teacher, device=device, workers=workers)


def teacher_masks(
    teacher: str, images: list[Path], cache_root: Path, device: str, workers: int, log: Callable[[str], None]
) -> list[Path]:
    """The teacher's soft mask for each image (full size, 8-bit PNG), computing only the missing ones."""
    run = teacher_run_options(teacher, device, workers)
    loaded = create_model(run.model, run.weights)  # for the cache key; also fails early on bad weights
    folder = cache_root / f"{loaded.cfg.name}-{loaded.sha256[:12]}"
    summary = remove_backgrounds(
        [str(p) for p in images], folder, run, OutputOptions(format="mask"), progress=False, log=lambda _m: None
    )
    failed = [r for r in summary.rows if r.status == "failed"]
    if failed:
        raise UsageError(
            f"--teacher {teacher}: {len(failed)} training images failed, first {failed[0].input}: {failed[0].error}"
        )
    log(f"teacher {loaded.cfg.name}: {summary.done} masks computed, {summary.skipped} cached in {folder}")
    by_input = {r.input: Path(r.outputs[0]) for r in summary.rows}
    return [by_input[str(p)] for p in images]
