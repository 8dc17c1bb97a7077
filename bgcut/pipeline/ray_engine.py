"""The Ray Data engine: the same stages as ``local_engine.py``, scheduled by Ray across a cluster.

listing (driver) -> decode (CPU tasks) -> model (actors, one GPU each when there are GPUs;
the model is loaded once per actor) -> post-process, encode and write (CPU tasks) -> manifest
rows (driver). Ray Data streams the stages with backpressure, so a slow writer holds back
decoding instead of filling memory. Output names, formats, resume and manifest rows are
the local engine's: each stage calls the same functions.

Rows carry the decoded images as pickled bytes: full-size images differ in shape, and a
failed decode carries only its message, neither of which Arrow columns hold well.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import asdict
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..config import OutputOptions, PostOptions, RunOptions
from ..errors import UsageError
from .dataset import DecodeDataset
from .model_step import ClusterModel, ModelFacts, ModelStep
from .output import Job, Row, Writer
from .reader import Source
from .report import RunSummary
from .target import OutputTarget

if TYPE_CHECKING:
    import ray.data

INSTALL_HINT = "--engine ray needs Ray: pip install 'bgcut[ray]'"


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate part of the install
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def sources_dataset(sources: list[Source]) -> ray.data.Dataset:
    """A dataset of inputs: one row per source, with its output key (the unit of resume)."""
    ray = import_ray()
    items = [{"path": s.path, "key": s.key, "display": s.display} for s in sources]
    return ray.data.from_items(items)


def _decode(row: dict[str, Any], size: int, max_pixels: int, interpolation: str) -> dict[str, Any]:
    item = DecodeDataset([row["path"]], size, max_pixels, interpolation)[0]
    return {**row, "item": pickle.dumps(item)}


class _Model:
    """A Ray actor: one model, loaded once, run on batches of decoded rows."""

    def __init__(self, load: Callable[[], ModelStep]) -> None:
        self.step = load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(b) for b in batch["item"]]
        good = [it for it in items if it.error is None]
        found = iter(self.step.masks([it.model_input for it in good], [it.rgb.shape[:2] for it in good]))
        masks = []
        for it in items:
            mask = next(found) if it.error is None else None
            if isinstance(mask, Exception):  # did not fit in device memory even alone: this input fails
                it.error, mask = str(mask), None
            masks.append(mask)
        for it in items:
            it.model_input = None  # not needed downstream: keep the object store lean
        n = len(items)
        return {
            "path": batch["path"],
            "key": batch["key"],
            "display": batch["display"],
            "job": np.array([pickle.dumps((it, m)) for it, m in zip(items, masks, strict=True)], dtype=object),
            "model": np.array([self.step.facts.name] * n, dtype=object),
            "sha": np.array([self.step.facts.sha256] * n, dtype=object),
            "size": np.array([self.step.size] * n, dtype=np.int64),
        }


@lru_cache(maxsize=4)
def _writer(
    run: RunOptions, out: OutputOptions, post: PostOptions, output: str, model: str, sha: str, size: int
) -> Any:
    """One writer per worker process and settings: ``--bg PHOTO`` is read once, not once per row."""
    return Writer(OutputTarget(run, out, post, output), ModelFacts(model, sha, size))


def _write(row: dict[str, Any], run: RunOptions, out: OutputOptions, post: PostOptions, output: str) -> dict[str, Any]:
    writer = _writer(run, out, post, output, row["model"], row["sha"], int(row["size"]))
    item, mask = pickle.loads(row["job"])
    if item.error is not None:
        result = Row(row["display"], status="failed", error=item.error)
    else:
        result = writer.write(Job(Source(row["path"], row["key"], row["display"]), item, mask))
    return {"row": json.dumps(asdict(result), ensure_ascii=False)}


def cutout_dataset(
    inputs: ray.data.Dataset,
    output: str,
    run: RunOptions,
    out: OutputOptions,
    post: PostOptions,
    model: ClusterModel,
) -> ray.data.Dataset:
    """Lazily cut out every row of ``inputs`` (columns ``path``, ``key``, ``display``) into ``output``.

    Returns a dataset of manifest rows (column ``row``, JSON); nothing runs until it is consumed.
    ``model`` (``infer.cluster_model(run)``) sizes the decode tasks and the actors' batches, and
    loads the model on each actor.
    """
    ray = import_ray()
    gpus = _cluster_gpus()
    size, batch_size = model.plan(torch.device("cuda" if gpus else "cpu"))
    decoded = inputs.map(
        _decode, fn_kwargs={"size": size, "max_pixels": run.max_pixels, "interpolation": model.interpolation}
    )
    predicted = decoded.map_batches(
        _Model,
        fn_constructor_kwargs={"load": model.load},
        batch_size=max(1, batch_size),
        batch_format="numpy",
        num_gpus=1 if gpus else 0,
        # ``compute`` (``concurrency`` is deprecated since Ray 2.51 and warns on every run).
        compute=ray.data.ActorPoolStrategy(size=max(1, gpus) if gpus else max(1, run.ray_actors)),
    )
    return predicted.map(_write, fn_kwargs={"run": run, "out": out, "post": post, "output": output})


def _cluster_gpus() -> int:
    ray = import_ray()
    return int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0


def connect(address: str | None) -> None:
    """Join ``address`` (a cluster, or ``auto``), or start a local Ray instance; no-op if already connected."""
    ray = import_ray()
    # Ray's notes ("Token authentication is enabled ...", its progress report and execution plan
    # every few seconds, "progress bars disabled") would bury bgcut's progress bar and summary; its
    # log files under /tmp/ray keep them, and its errors still arrive as exceptions.
    logging.getLogger("ray").setLevel(logging.ERROR)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # Ray Data configures its own console handler (INFO and up) for its logger; its file handler
    # keeps everything.
    for handler in logging.getLogger("ray.data").handlers:
        if "File" not in type(handler).__name__:
            handler.setLevel(logging.ERROR)


def run_on_ray(
    target: OutputTarget,
    model: ClusterModel,
    pending: list[Source],
    record: Callable[[Row], None],
    summary: RunSummary,
) -> None:
    """The photos on Ray Data; rows come back as each input is written. The model is loaded by
    each actor (``model.load``)."""
    connect(target.run.ray_address)
    rows = cutout_dataset(
        sources_dataset(pending),
        target.dest.where if target.dest else "",
        target.run,
        target.out,
        target.post,
        model,
    )
    try:
        for r in rows.iter_rows():
            record(Row(**json.loads(r["row"])))
    except KeyboardInterrupt:
        summary.interrupted = True
