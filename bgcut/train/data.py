"""Image/mask pairs for training: listing, a deterministic validation split, an in-memory cache.

The cache holds every pair decoded once and resized to a fixed square, as uint8. On a CPU
the decode of a JPEG costs about as much as a training step of the small model, so
decoding once instead of every epoch roughly halves the time of a run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch

from ..errors import ImageError, UsageError
from ..images import open_named
from ..pipeline.reader import IMAGE_EXTENSIONS, list_sources
from ..workers import map_surviving_deaths, worker_context
from .decode import decode_in_worker, decode_pair, decoded, init_worker

Pair = tuple[Path, Path]
T = TypeVar("T")


def list_pairs(images: Path, masks: Path) -> list[Pair]:
    """Pairs matched by file stem; images without a mask are left out."""
    mask_by_stem = {p.stem: p for p in sorted(masks.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    pairs = [
        (p, mask_by_stem[p.stem])
        for p in sorted(images.iterdir())
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem in mask_by_stem
    ]
    if not pairs:
        raise UsageError(f"no image/mask pairs with matching names in {images} and {masks}")
    return pairs


def _bucket(stem: str) -> float:
    return int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_by_stem(items: Sequence[T], stem: Callable[[T], str], val_fraction: float) -> tuple[list[T], list[T]]:
    """Split by a hash of each item's picture name, so the split does not move when files are
    added (COCO objects are split by the picture they are in)."""
    val = [it for it in items if _bucket(stem(it)) < val_fraction]
    train = [it for it in items if _bucket(stem(it)) >= val_fraction]
    return train, val


def split_pairs(pairs: list[Pair], val_fraction: float) -> tuple[list[Pair], list[Pair]]:
    """Image/mask pairs split by the image's file stem."""
    return split_by_stem(pairs, lambda p: p[0].stem, val_fraction)


def _named(item: object) -> str:
    """The file an item is read from: a pair's image, or a COCO sample's picture."""
    if isinstance(item, tuple):
        return str(item[0])
    return str(getattr(item, "image", item))


def _decoded_in_order(
    items: Sequence[object], decode: Callable[[object, int], tuple], size: int, workers: int, log: Callable[[str], None]
) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray] | str]]:
    """(index, decoded item or its failure) for every item; with ``workers``, in worker processes
    and in the order they finish. A worker that dies (the OOM killer, a decoder's crash) costs
    only the item it was decoding when it died again alone (``map_surviving_deaths``)."""
    if not workers or len(items) <= 1:
        for i, item in enumerate(items):
            yield i, decoded(decode, size, item)
        return

    def died(job: tuple[int, object]) -> tuple[int, str]:
        return job[0], f"{_named(job[1])}: its decoder process died while reading it"

    ctx = worker_context(preload=("bgcut.train.decode",))  # torch-free: the workers start at once
    yield from map_surviving_deaths(
        ctx,
        decode_in_worker,
        list(enumerate(items)),
        workers,
        init_worker,
        (decode, size, os.getpid()),
        died,
        lambda line: log(f"warning: {line}"),
        "picture(s)",
    )


def cache_items(
    items: Sequence[object],
    decode: Callable[[object, int], tuple],
    size: int,
    channels: int,
    workers: int,
    log: Callable[[str], None] = print,
    into: tuple[torch.Tensor, torch.Tensor] | None = None,
    kind: str = "training",
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Decode every item once: uint8 images (N, 3, S, S), masks (N, C, S, S) and the indices kept.

    An item that cannot be read is reported in one line and left out, so one broken file does
    not end a run of hours; if nothing at all can be read, that is an error, which says of which
    set (``kind``: training or held-out). ``into`` are the tensors to fill (memory-mapped files,
    ``on_disk``); the first ``len(kept)`` rows are valid, in the items' order.
    """
    images = torch.empty((len(items), 3, size, size), dtype=torch.uint8) if into is None else into[0]
    masks = torch.empty((len(items), channels, size, size), dtype=torch.uint8) if into is None else into[1]
    kept: list[int] = []
    # Each item goes to its own row as it arrives; the rows kept are then moved up, in order.
    for i, got in _decoded_in_order(items, decode, size, workers, log):
        if isinstance(got, str):
            log(f"skipped: {got}")
            continue
        rgb, mask = got
        images[i] = torch.as_tensor(rgb).permute(2, 0, 1)
        masks[i] = torch.as_tensor(mask)
        kept.append(i)
    if items and not kept:
        raise UsageError(f"none of the {len(items)} {kind} pairs could be read")
    kept.sort()
    for row, i in enumerate(kept):
        if row != i:  # row < i: the rows below were moved already, so nothing is overwritten
            images[row], masks[row] = images[i], masks[i]
    if into is None and len(kept) < len(items):  # copy only when something was left out: the cache can be gigabytes
        images, masks = images[: len(kept)].clone(), masks[: len(kept)].clone()
    return images, masks, kept


def on_disk(
    folder: Path,
    items: Sequence[object],
    size: int,
    channels: int,
    build: Callable[[tuple[torch.Tensor, torch.Tensor]], list[int]],
    log: Callable[[str], None] = print,
    salt: str = "",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cache of ``items`` at ``size`` as memory-mapped files in ``folder``, built by ``build``
    (which fills the tensors it is given and returns the indices kept) the first time.

    Training processes on one machine then share one copy through the page cache instead of a
    private copy each (gigabytes: two side-by-side runs at 384 px need 11 GB otherwise), and a
    resumed or restarted run skips the decoding. The key is the items (paths with their sizes and
    modification times), the size, the channels and ``salt`` (what else decides the pixels: the
    resampler), so changed files or settings never reuse a stale cache.
    """
    stamp = []
    for item in items:
        for p in item if isinstance(item, tuple) else (item,):
            if isinstance(p, Path):
                st = p.stat()
                stamp.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
            else:
                stamp.append(repr(p))
    key = hashlib.sha1("\n".join([*stamp, str(size), str(channels), salt]).encode()).hexdigest()[:16]
    base = folder / f"pairs-{size}px-{len(items)}-{key}"
    meta = base.with_suffix(".json")
    if not meta.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        shapes = {"images": (len(items), 3, size, size), "masks": (len(items), channels, size, size)}
        arrays = {
            name: np.lib.format.open_memmap(f"{base}.{name}.npy.part", mode="w+", dtype=np.uint8, shape=shape)
            for name, shape in shapes.items()
        }
        kept = build((torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["masks"])))
        for name, array in arrays.items():
            array.flush()
            os.replace(f"{base}.{name}.npy.part", f"{base}.{name}.npy")
        arrays.clear()
        meta.write_text(json.dumps({"kept": len(kept), "items": len(items)}))
        log(f"cache written to {base}.*.npy")
    n = json.loads(meta.read_text())["kept"]
    # Copy-on-write maps: never written, so every process reads the same pages.
    images = torch.from_numpy(np.load(f"{base}.images.npy", mmap_mode="c"))[:n]
    masks = torch.from_numpy(np.load(f"{base}.masks.npy", mmap_mode="c"))[:n]
    return images, masks


def cache_pairs(
    pairs: list[Pair],
    size: int,
    workers: int,
    soft: list[Path] | None = None,
    log: Callable[[str], None] = print,
    interpolation: str = "bilinear",
    disk: Path | None = None,
    kind: str = "training",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every pair once: returns uint8 tensors (N, 3, S, S) and (N, C, S, S), held in
    memory, or with ``disk`` in memory-mapped files there (``on_disk``). ``kind`` as ``cache_items``.

    C is 1 (the ground truth), or 2 with ``soft``: a teacher's soft mask per pair as channel 1,
    so every augmentation moves it exactly with the ground truth.
    """
    items = [(img, mask, soft[i] if soft is not None else None) for i, (img, mask) in enumerate(pairs)]
    decode = partial(decode_pair, interpolation=interpolation)
    channels = 1 if soft is None else 2
    if disk is not None:

        def build(into: tuple[torch.Tensor, torch.Tensor]) -> list[int]:
            return cache_items(items, decode, size, channels, workers, log, into, kind)[2]

        return on_disk(disk, items, size, channels, build, log, salt=interpolation)
    images, masks, _ = cache_items(items, decode, size, channels, workers, log, kind=kind)
    return images, masks


def load_backgrounds(folder: Path, size: int, log: Callable[[str], None] = print) -> list[np.ndarray]:
    """Every photo in ``folder``, decoded once with its shorter side scaled to ``size`` (RGB uint8).

    A file that cannot be read is reported in one line and left out; none at all is an error.
    """
    listing = list_sources([str(folder)])
    for where, why in listing.errors:
        log(f"backgrounds: {where}: {why}")
    out = []
    for source in listing.sources:
        try:
            rgb = open_named(Path(source.path)).rgb
        except ImageError as e:
            log(f"backgrounds: skipped {e}")
            continue
        h, w = rgb.shape[:2]
        s = size / min(h, w)
        if s < 1:
            rgb = cv2.resize(rgb, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(rgb))
    if not out:
        raise UsageError(f"--backgrounds {folder}: no readable images")
    return out
