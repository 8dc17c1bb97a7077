"""Sharing a CPU between the model's threads and the rest of the pipeline.

On a CPU run, the model's intra-op threads, the decode processes and the writer threads all
want the same cores. Giving the model every core is right when the model is the cost (IS-Net:
seconds per image) and wrong when it is not: with the small default model, decoding and PNG
encoding cost twice what the network does, and two model threads fighting two writer threads
on two cores ran 26.1 images/s where the measured split ran 32.8 (bench/RESULTS.md). So the engine measures
the CPU time each side actually uses per image and gives the model its share of the cores.
"""

from __future__ import annotations

import os


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


class CoreSplit:
    """Running CPU-time totals per side; ``decide`` returns the model's thread count once enough is seen.

    Model CPU is the main thread's CPU time in the forward pass times the threads it ran with
    (intra-op work is split evenly); pipeline CPU is decode, mask upsampling, post-processing,
    encoding and writing, each measured as the CPU time of the thread that did it.
    """

    def __init__(self, cores: int, threads: int, every: int = 32) -> None:
        self.cores, self.threads, self.every = cores, threads, every
        self.model_cpu = self.pipeline_cpu = 0.0
        self.images = 0

    def add_model(self, main_thread_cpu: float, images: int) -> None:
        self.model_cpu += main_thread_cpu * self.threads
        self.images += images

    def add_pipeline(self, cpu_seconds: float) -> None:
        self.pipeline_cpu += cpu_seconds

    def decide(self) -> int | None:
        """A new thread count when one is due and differs from the current one, else None."""
        if self.images < self.every:
            return None
        threads = model_threads(self.cores, self.model_cpu, self.pipeline_cpu)
        # Start a new window: image sizes and the mix of formats can drift along a run.
        self.model_cpu = self.pipeline_cpu = 0.0
        self.images = 0
        if threads == self.threads:
            return None
        self.threads = threads
        return threads
