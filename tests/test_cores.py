"""CoreSplit: the model gets its share of the CPU cores, measured, never zero and never more than there are."""

from __future__ import annotations

from pathlib import Path

import torch

from bgcut import OutputOptions, RunOptions, remove_backgrounds
from bgcut.pipeline.cores import CoreSplit, available_cores, model_threads


def test_model_threads_follow_the_cpu_shares() -> None:
    assert model_threads(2, model_cpu=4.0, pipeline_cpu=0.035) == 2  # IS-Net: the model is everything
    assert model_threads(2, model_cpu=0.014, pipeline_cpu=0.035) == 1  # small model, PNG encoding dominates
    assert model_threads(16, model_cpu=1.0, pipeline_cpu=1.0) == 8
    assert model_threads(16, model_cpu=0.0, pipeline_cpu=1.0) == 1  # never zero
    assert model_threads(4, model_cpu=0.0, pipeline_cpu=0.0) == 4  # nothing measured: leave all cores


def test_core_split_decides_once_per_window() -> None:
    split = CoreSplit(cores=2, threads=2, every=8)
    split.add_model(0.05, 4)  # 0.05 s of main-thread CPU with 2 threads -> 0.1 core-seconds
    split.add_pipeline(0.3)
    assert split.decide() is None  # 4 images: not enough yet
    split.add_model(0.05, 4)
    split.add_pipeline(0.3)
    assert split.decide() == 1 and split.threads == 1  # 0.2 of 0.8 core-seconds -> 1 of 2 cores
    split.add_model(2.0, 8)  # now the model dominates: back to both cores
    split.add_pipeline(0.1)
    assert split.decide() == 2
    split.add_model(2.0, 8)
    split.add_pipeline(0.1)
    assert split.decide() is None  # unchanged


def test_available_cores_is_positive() -> None:
    assert 1 <= available_cores() <= (torch.get_num_threads() + 1024)


def test_a_cpu_run_leaves_torch_threads_as_it_found_them(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    before = torch.get_num_threads()
    run = RunOptions(weights=str(luma_weights), workers=0, device="cpu", batch_size=1)
    summary = remove_backgrounds([str(photos)], tmp_path / "out", run, OutputOptions(format="mask"), progress=False)
    assert summary.done == 3
    assert torch.get_num_threads() == before
