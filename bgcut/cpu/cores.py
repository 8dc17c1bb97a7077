"""Sharing a CPU between the model's threads and the rest of the pipeline.

On a CPU run, the model's intra-op threads, the decode processes and the writer threads all
want the same cores. Giving the model every core is right when the model is the cost (IS-Net:
seconds per image) and wrong when it is not: with a small model (bgcut-lite, 256 px), decoding and PNG
encoding cost about twice what the network does (0.035 s against 0.014 s of CPU per davis16
frame), and two model threads fighting two writer threads on two cores ran 26.1 images/s where
one model thread ran 32.8 (bench/RESULTS.md).

The split is decided once per run, from the model's input size, and never changed while it
runs. It used to follow measured CPU times, but the thread count changes the order in which
the convolutions add up, and so the last bit of some mask values: identical runs wrote
different bytes (1 alpha level on 26 of 150 files). A fixed split keeps outputs byte-identical
whatever the timing; on davis16 it ran as fast as the measured one (17.3-18.2 images/s
measured, 16.6-19.4 fixed, 2 runs each on 2 cores).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

# The model's measured share of a CPU run's work, by model input size: 256 px bgcut-lite
# 0.014 s of 0.049 s per image (0.29); 1024 px IS-Net 1.7 s of 1.73 s (0.98).
SMALL_MODEL_SHARE = 0.3
LARGE_INPUT = 512  # pixels per side from which the model is taken to be nearly all the work


def available_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def model_threads(cores: int, model_cpu: float, pipeline_cpu: float) -> int:
    """The model's share of ``cores``: in proportion to its part of the CPU time per image, at least 1."""
    total = model_cpu + pipeline_cpu
    if total <= 0:
        return cores
    return max(1, min(cores, round(cores * model_cpu / total)))


def threads_for_model(cores: int, input_size: int) -> int:
    """The fixed number of intra-op threads a CPU run gives a model of this input size."""
    if input_size >= LARGE_INPUT:
        return cores
    return model_threads(cores, SMALL_MODEL_SHARE, 1 - SMALL_MODEL_SHARE)


@contextlib.contextmanager
def cores_for_model(device_type: str, input_size: int) -> Iterator[None]:
    """Give a model its share of the cores on a CPU run (``threads_for_model``) while the block
    runs, then torch's thread count as it was: a library must not keep a changed global. The
    photo loop and the video loop both run under it."""
    before = torch.get_num_threads()
    if device_type == "cpu":
        torch.set_num_threads(threads_for_model(available_cores(), input_size))
    try:
        yield
    finally:
        torch.set_num_threads(before)
