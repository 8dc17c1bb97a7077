"""DecodedParts: inputs in order, read ahead within bounds; a file that kills its worker is
reported alone; workers that keep dying are given up."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgcut.pipeline import loader
from bgcut.pipeline.dataset import DecodeDataset, DecodeItem
from bgcut.pipeline.loader import DecodedParts

# Workers leave the current folder off ``sys.path`` before they take any task, so the class
# they unpickle lives in a module of its own, in a folder of its own.
DEADLY = """
import os, signal
from bgcut.pipeline.dataset import DecodeItem


class Deadly:
    \"\"\"Items are their index; reading one of ``deadly`` in a worker process kills that process.\"\"\"

    def __init__(self, n, deadly):
        self.n, self.deadly, self.main = n, deadly, os.getpid()

    def __len__(self):
        return self.n

    def part(self, _indices):
        return self

    def __getitem__(self, i):
        if os.getpid() != self.main and (self.deadly is None or i in self.deadly):
            os.kill(os.getpid(), signal.SIGKILL)
        return DecodeItem(i, warning=f"decoded in {'main' if os.getpid() == self.main else 'worker'}")
"""


@pytest.fixture
def deadly(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> type:
    folder = tmp_path_factory.mktemp("deadly")
    (folder / "deadly_dataset.py").write_text(DEADLY)
    monkeypatch.syspath_prepend(str(folder))
    import deadly_dataset

    return deadly_dataset.Deadly


def collect(dataset: object, workers: int = 2, part_files: int = 2) -> tuple[list[DecodeItem], list[str]]:
    warnings: list[str] = []
    decoding = DecodedParts(dataset, workers, warnings.append, part_files=part_files)  # type: ignore[arg-type]
    try:
        items = [it for part in decoding for it in part]
    finally:
        decoding.close()
    return items, warnings


def test_a_file_that_kills_its_worker_twice_is_reported_alone(deadly: type) -> None:
    items, warnings = collect(deadly(20, {5}))
    assert [it.index for it in items] == list(range(20))  # each file exactly once, in order
    failed = [it for it in items if it.error]
    assert [(it.index, it.error) for it in failed] == [
        (5, "the decode worker process died twice while reading this file")
    ]
    assert all(it.warning == "decoded in worker" for it in items if not it.error)
    assert len(warnings) == 1 and warnings[0].startswith("a decode worker died ("), warnings
    assert "retrying its " in warnings[0]


def test_two_files_that_kill_side_by_side_cost_only_themselves(deadly: type) -> None:
    """Both die with the pool and again alone: two deaths of files, not three of the machine
    (the pool's own death was counted too, and the rest of the run was decoded in this process)."""
    items, warnings = collect(deadly(20, {4, 5}))
    assert [(it.index, bool(it.error)) for it in items] == [(i, i in (4, 5)) for i in range(20)]
    assert all(it.warning == "decoded in worker" for it in items if not it.error)
    assert len(warnings) == 1 and warnings[0].startswith("a decode worker died ("), warnings


def test_workers_that_keep_dying_are_given_up_for_this_process(deadly: type) -> None:
    items, warnings = collect(deadly(20, None))
    assert [it.index for it in items] == list(range(20))
    assert all(it.error for it in items if it.warning != "decoded in main")
    assert sum(it.warning == "decoded in main" for it in items) >= 16  # the rest, decoded here
    assert warnings[-1].startswith("decode worker processes died 3 times in a row (")
    assert warnings[-1].endswith("decoding in this process from now on")


def test_workers_start_with_the_decoder_imported_and_frozen() -> None:
    """The fork server imports the decoder (not torch) with the collector off and freezes those
    objects, so every worker forked from it starts with them in the permanent generation."""
    import gc

    from bgcut.workers import worker_context

    with worker_context().Pool(1) as pool:
        frozen = pool.apply(gc.get_freeze_count)
        enabled = pool.apply(gc.isenabled)
        modules = pool.apply(_imported, ("cv2", "torch"))
    assert frozen > 1_000  # numpy's, PIL's and OpenCV's modules, classes and functions
    assert enabled
    assert modules == [True, False]


def _imported(*names: str) -> list[bool]:
    import sys

    return [name in sys.modules for name in names]


def _photos(tmp_path: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        p = tmp_path / f"{i:02d}.png"
        Image.fromarray(np.full((9 + i, 7, 3), i, np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_real_files_arrive_decoded_in_order_with_errors_in_place(tmp_path: Path) -> None:
    paths = _photos(tmp_path, 9)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    paths.insert(4, str(tmp_path / "bad.png"))
    dataset = DecodeDataset(paths, 8, 10**8)
    items, warnings = collect(dataset, workers=2, part_files=3)
    here = [dataset[i] for i in range(len(paths))]
    assert warnings == [] and [it.index for it in items] == list(range(10))
    for got, want in zip(items, here, strict=True):
        assert got.error == want.error and got.warning == want.warning
        for name in ("model_input", "rgb", "alpha"):
            x, y = getattr(got, name), getattr(want, name)
            assert (x is None and y is None) or np.array_equal(x, y), (got.index, name)
    assert items[4].error is not None and items[4].rgb is None


def test_the_read_ahead_stops_at_its_byte_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing taken, workers stop handing in parts once the bound is passed: what waits is
    the bound plus the parts that were in the workers' hands."""
    import time

    monkeypatch.setattr(loader, "READ_AHEAD_BYTES", 1)
    dataset = DecodeDataset(_photos(tmp_path, 20), 8, 10**8)
    decoding = DecodedParts(dataset, 2, print, part_files=1)
    try:
        time.sleep(2.0)  # far longer than 20 tiny PNGs take
        pool = decoding._pool
        assert pool is not None
        handed = len(pool._futures)
        assert 1 < handed <= 1 + loader.IN_HANDS * 2  # the first arrival stops it; the rest were in hand
        items = [it for part in decoding for it in part]
    finally:
        decoding.close()
    assert [it.index for it in items] == list(range(20)) and all(it.error is None for it in items)


def test_no_workers_decodes_in_this_process(deadly: type) -> None:
    items, _ = collect(deadly(5, None), workers=0)
    assert [it.index for it in items] == list(range(5)) and all(it.warning == "decoded in main" for it in items)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="counts mappings in /proc/self/maps")
def test_a_part_taken_and_dropped_is_unmapped(tmp_path: Path) -> None:
    """A block stays mapped only while its items are alive: a run of many parts holds a few, not all."""

    def mapped() -> int:
        return Path("/proc/self/maps").read_text().count("bgcut-decode")

    dataset = DecodeDataset(_photos(tmp_path, 24), 8, 10**8)
    decoding = DecodedParts(dataset, 2, print, part_files=2)
    try:
        most = 0
        for part in decoding:
            assert all(it.error is None for it in part)
            most = max(most, mapped())
            del part
    finally:
        decoding.close()
    assert most == 1 and mapped() == 0


def test_large_files_go_to_the_workers_in_smaller_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A part ends at ``PART_FILES`` files, or once its files take ``PART_BYTES`` on disk: four
    100 MP photos in one part were held in memory as one 1.2 GB block. A path whose size cannot
    be read (a URL, a file gone) counts as small; the photos come back the same, in order."""
    monkeypatch.setattr(loader, "PART_BYTES", 2000)
    rng = np.random.default_rng(0)
    paths = []
    for i, side in enumerate([8, 8, 8, 8, 8, 40, 8, 40, 40, 8]):
        path = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    sizes = [os.path.getsize(p) for p in paths]
    assert max(s for s in sizes if s < 2000) * 4 < 2000 < min(s for s in sizes if s > 2000)  # small and large
    paths.insert(2, "https://example.com/not-read.png")
    dataset = DecodeDataset(paths, 16, 10**8)
    decoding = DecodedParts(dataset, 2, print, part_files=4)
    try:
        assert decoding.parts == [[0, 1, 2, 3], [4, 5, 6], [7, 8], [9], [10]]
        items = [it for part in decoding for it in part]
    finally:
        decoding.close()
    assert [it.index for it in items] == list(range(11))
    assert items[2].error is not None and all(it.error is None for i, it in enumerate(items) if i != 2)
    alone = [dataset[i] for i in range(11)]
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(alone, items, strict=True) if a.error is None)
