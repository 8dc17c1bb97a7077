"""The CPU heap setting: freed large blocks are reused inside ``retained_heap`` and handed back after."""

from __future__ import annotations

import platform
import resource
import statistics
from pathlib import Path

import pytest
import torch

from bgcut.cpu import heap
from bgcut.models import create_model
from bgcut.pipeline.infer import Predictor

glibc_only = pytest.mark.skipif(
    heap._LIBC is None, reason=f"needs glibc malloc (this is {platform.libc_ver()[0] or 'not glibc'})"
)


def _faults_per_forward() -> float:
    """Minor page faults per forward of a small conv net whose feature maps are 64 MiB each
    (16 channels at 1024 x 1024, like IS-Net's first stage): the median of five forwards after
    two warm-up ones. A single forward can catch the heap settling (a fresh interpreter inside
    the block faulted 65,730, 0, 16,384, then 0 on every later forward), which made a mean of
    two fail now and then; the median still counts a heap that faults on most forwards."""
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1)]
    net = torch.nn.Sequential(*layers, torch.nn.ReLU(), torch.nn.Conv2d(16, 1, 3, padding=1)).eval()
    x = torch.rand(1, 3, 1024, 1024)
    counts = []
    with torch.inference_mode():
        for _ in range(2):
            net(x)
        for _ in range(5):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            net(x)
            counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return float(statistics.median(counts))


@glibc_only
def test_freed_feature_maps_are_reused_inside_and_returned_after() -> None:
    outside = _faults_per_forward()
    with heap.retained_heap():
        inside = _faults_per_forward()
    after = _faults_per_forward()
    # Outside, glibc maps each feature map afresh from the kernel: its pages fault again every
    # forward (about 16,000 per 64 MiB map).
    assert outside > 50_000
    assert inside * 10 < outside
    # On exit glibc's defaults are back (and the kept memory was trimmed): maps fault again.
    assert after > outside / 2
    assert not heap.active()


@glibc_only
def test_nested_blocks_keep_the_setting_until_the_outermost_exits() -> None:
    with heap.retained_heap():
        with heap.retained_heap():
            assert heap.active()
        assert heap.active()
        assert _faults_per_forward() < 5_000
    assert not heap.active()
    with heap.retained_heap("cuda"):  # feature maps in device memory: host malloc left alone
        assert not heap.active()


def test_opt_out_and_user_tuning_leave_malloc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGCUT_RETAIN_HEAP", "0")
    assert heap._libc() is None
    monkeypatch.delenv("BGCUT_RETAIN_HEAP")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert heap._libc() is None
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    assert heap._libc() is None


@glibc_only
def test_a_cpu_forward_runs_inside_the_setting(monkeypatch: pytest.MonkeyPatch, luma_weights: Path) -> None:
    seen: list[bool] = []
    loaded = create_model(None, str(luma_weights), device="cpu")
    predictor = Predictor(loaded, torch.device("cpu"), torch.float32)
    forward = predictor.model.forward
    monkeypatch.setattr(predictor.model, "forward", lambda x: (seen.append(heap.active()), forward(x))[1])
    masks = predictor(torch.zeros(2, 3, predictor.size, predictor.size, dtype=torch.uint8))
    assert seen == [True]
    assert masks.shape == (2, 1, predictor.size, predictor.size)
    assert not heap.active()


_WORKER_FAULTS = """
import os, resource, sys
if sys.argv[1] == "worker":
    from bgcut.pipeline.dataset import init_worker
    init_worker(os.getpid())  # as the loader sets up each decode worker
counts = []
for _ in range(6):  # a 13-megapixel photo's RGB buffer, written, then freed, once a file
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    b"\\1" * (40 << 20)  # plain malloc (numpy would ask for huge pages)
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(counts[1:])[2])
"""


@glibc_only
def test_a_decode_worker_reuses_a_photos_freed_buffer_for_the_next(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("BGCUT_RETAIN_HEAP", "GLIBC_TUNABLES")}

    def faults(kind: str) -> int:
        done = subprocess.run([sys.executable, "-c", _WORKER_FAULTS, kind], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    # Above glibc's largest mmap threshold (32 MiB) each buffer is mapped afresh: 10,240 pages.
    assert faults("plain") > 5_000
    assert faults("worker") < 500
