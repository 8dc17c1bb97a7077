"""decoded_batches: a file that kills its worker is reported alone; workers that keep dying are given up."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from bgcut.pipeline.dataset import DecodeItem
from bgcut.pipeline.loader import decoded_batches


class Deadly(torch.utils.data.Dataset):
    """Items are their index; reading one of ``deadly`` in a worker process kills that process."""

    def __init__(self, n: int, deadly: set[int] | None) -> None:
        self.n, self.deadly, self.main = n, deadly, os.getpid()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> DecodeItem:
        if os.getpid() != self.main and (self.deadly is None or i in self.deadly):
            os.kill(os.getpid(), signal.SIGKILL)
        return DecodeItem(i, warning=f"decoded in {'main' if os.getpid() == self.main else 'worker'}")


@pytest.fixture(autouse=True)
def quick_liveness_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch notices a dead worker when a 5 s wait for data times out; 0.2 s keeps these tests short.
    monkeypatch.setattr(_MultiProcessingDataLoaderIter._try_get_data, "__defaults__", (0.2,))


def collect(dataset: Deadly, workers: int = 2) -> tuple[list[DecodeItem], list[str]]:
    warnings: list[str] = []
    order = [list(range(i, min(i + 2, dataset.n))) for i in range(0, dataset.n, 2)]
    items = [it for batch in decoded_batches(dataset, order, workers, False, warnings.append) for it in batch]  # type: ignore[arg-type]
    return items, warnings


def test_a_file_that_kills_its_worker_twice_is_reported_alone() -> None:
    items, warnings = collect(Deadly(20, {5}))
    assert sorted(it.index for it in items) == list(range(20))  # each file exactly once
    failed = [it for it in items if it.error]
    assert [(it.index, it.error) for it in failed] == [
        (5, "the decode worker process died twice while reading this file")
    ]
    assert all(it.warning == "decoded in worker" for it in items if not it.error)
    assert len(warnings) == 1 and warnings[0].startswith("a decode worker died (")


def test_workers_that_keep_dying_are_given_up_for_this_process() -> None:
    items, warnings = collect(Deadly(20, None))
    assert sorted(it.index for it in items) == list(range(20))
    assert all(it.error for it in items if it.warning != "decoded in main")
    assert sum(it.warning == "decoded in main" for it in items) >= 16  # the rest, decoded here
    assert warnings[-1].startswith("decode worker processes died 3 times in a row (")
    assert warnings[-1].endswith("decoding in this process from now on")


def test_workers_start_with_the_decoder_imported_and_frozen() -> None:
    """The fork server imports the decoder (and torch) with the collector off and freezes those
    objects, so every worker forked from it starts with them in the permanent generation."""
    import gc

    from bgcut.workers import worker_context

    with worker_context().Pool(1) as pool:
        frozen = pool.apply(gc.get_freeze_count)
        enabled = pool.apply(gc.isenabled)
    assert frozen > 10_000  # torch's modules, classes and functions
    assert enabled


def test_more_workers_than_cpus_runs_without_torchs_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    """``-j 3`` on a 2-core machine is the user's choice: torch's paragraph about it, printed twice,
    is left out, and the files are decoded as usual."""
    import warnings

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})  # torch asks this: one CPU here
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        items, told = collect(Deadly(6, set()), workers=2)
    assert sorted(it.index for it in items) == list(range(6)) and told == []
    assert all(it.warning == "decoded in worker" for it in items)
    assert [str(w.message) for w in said if "DataLoader" in str(w.message)] == []


def test_other_warnings_raised_as_the_workers_start_still_reach_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import bgcut.pipeline.loader as loader

    real = loader.DataLoader

    def loud(*args: object, **kwargs: object) -> object:
        warnings.warn("something else the loader said", RuntimeWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(loader, "DataLoader", loud)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        items, _ = collect(Deadly(4, set()), workers=1)
    assert sorted(it.index for it in items) == [0, 1, 2, 3]
    assert [(w.category, str(w.message)) for w in said] == [(RuntimeWarning, "something else the loader said")]
