"""Two small costs of the engine, each measured both ways in one process (issue 30).

    python bench/batch_handoff.py

1. The hand-over of decoded batches from DataLoader workers: 2 forkserver workers return 35
   batches of 8 items, each a 3x320x320 and a 480x854x3 uint8 tensor, either as separate tensors
   (each its own file descriptor, as before) or through ``PackedBatch`` (one shared block a
   batch). Prints the main process's CPU seconds and the wall seconds, twice each, alternating.
2. The box and foreground share of an 854x480 mask: ``np.nonzero`` (before) against
   ``postprocess.coverage`` (OpenCV). Prints ms per mask.
"""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bgcut.pipeline.dataset import DecodeItem, PackedBatch
from bgcut.pipeline.postprocess import coverage, hard


class Frames(Dataset):
    def __len__(self) -> int:
        return 280

    def __getitem__(self, i: int) -> DecodeItem:
        return DecodeItem(
            i, model_input=torch.zeros(3, 320, 320, dtype=torch.uint8), rgb=torch.zeros(480, 854, 3, dtype=torch.uint8)
        )


def separate(items: list[DecodeItem]) -> list[DecodeItem]:
    return list(items)


def handoff() -> None:
    ctx = multiprocessing.get_context("forkserver")
    for name, collate in [("separate", separate), ("packed", PackedBatch)] * 2:
        loader = DataLoader(Frames(), batch_size=8, num_workers=2, collate_fn=collate, multiprocessing_context=ctx)
        batches = iter(loader)
        next(batches)  # the workers' start, untimed
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in batches:
            pass
        print(f"{name}: main process CPU {time.process_time() - cpu:.3f} s, wall {time.perf_counter() - wall:.3f} s")


def old_box(mask: np.ndarray, threshold: float) -> tuple[tuple[int, int, int, int] | None, float]:
    ys, xs = np.nonzero(hard(mask, threshold))
    box = None if xs.size == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return box, float(hard(mask, threshold).mean())


def new_box(mask: np.ndarray, threshold: float) -> tuple[tuple[int, int, int, int] | None, float]:
    return coverage(mask, threshold)


def box() -> None:
    mask = np.zeros((480, 854), np.uint8)
    mask[60:420, 200:640] = 255  # a subject covering 39% of the frame
    for fn in (old_box, new_box):
        t0 = time.perf_counter()
        for _ in range(200):
            fn(mask, 0.5)
        print(f"{fn.__name__}: {(time.perf_counter() - t0) / 200 * 1000:.3f} ms per mask")


if __name__ == "__main__":
    handoff()
    box()
