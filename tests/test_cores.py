"""The CPU split: the model gets its share of the cores, fixed per run, never zero and never more than there are."""

from __future__ import annotations

from pathlib import Path

import torch

from bgcut import OutputOptions, RunOptions, remove_backgrounds
from bgcut.cpu.cores import available_cores, model_threads, threads_for_model


def test_model_threads_follow_the_cpu_shares() -> None:
    assert model_threads(2, model_cpu=4.0, pipeline_cpu=0.035) == 2  # IS-Net: the model is everything
    assert model_threads(2, model_cpu=0.014, pipeline_cpu=0.035) == 1  # small model, PNG encoding dominates
    assert model_threads(16, model_cpu=1.0, pipeline_cpu=1.0) == 8
    assert model_threads(16, model_cpu=0.0, pipeline_cpu=1.0) == 1  # never zero
    assert model_threads(4, model_cpu=0.0, pipeline_cpu=0.0) == 4  # nothing measured: leave all cores


def test_the_split_is_fixed_by_the_model_input_size() -> None:
    assert threads_for_model(2, 256) == 1  # bgcut-lite: PNG encoding is two thirds of the work
    assert threads_for_model(2, 1024) == 2  # IS-Net: the model is everything
    assert threads_for_model(16, 320) == 5
    assert threads_for_model(1, 256) == 1  # never zero


def test_available_cores_is_positive() -> None:
    assert 1 <= available_cores() <= (torch.get_num_threads() + 1024)


def test_a_cpu_run_leaves_torch_threads_as_it_found_them(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    before = torch.get_num_threads()
    run = RunOptions(weights=str(luma_weights), workers=0, device="cpu", batch_size=1)
    summary = remove_backgrounds([str(photos)], tmp_path / "out", run, OutputOptions(format="mask"), progress=False)
    assert summary.done == 3
    assert torch.get_num_threads() == before
