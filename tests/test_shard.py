"""--shard I/N: N jobs cover every input exactly once, reruns are idempotent, the split ignores listing order."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bgcut import OutputOptions, RunOptions, remove_backgrounds
from bgcut.cli import app
from bgcut.config import parse_shard
from bgcut.errors import UsageError
from bgcut.pipeline.reader import list_sources, shard_of

from .conftest import save, square_image


@pytest.fixture
def many(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for i in range(18):
        save(square_image((40 + i, 30), (5, 5, 20 + i, 25)), root / f"d{i % 3}" / f"img{i:02d}.png")
    return root


def _run(inputs: list[str], out: Path, luma: Path, shard: tuple[int, int], manifest: Path):
    run = RunOptions(weights=str(luma), workers=0, device="cpu", shard=shard, manifest=str(manifest))
    return remove_backgrounds(inputs, out, run, OutputOptions(format="mask"), progress=False, log=lambda m: None)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_three_shards_cover_every_input_once(many: Path, tmp_path: Path, luma_weights: Path) -> None:
    out = tmp_path / "out"
    parts = []
    for i in range(3):
        summary = _run([str(many)], out, luma_weights, (i, 3), tmp_path / "run.jsonl")
        assert summary.ok
        part = tmp_path / f"run.shard-{i}-of-3.jsonl"
        parts.append({Path(r["input"]).relative_to(many).as_posix() for r in _rows(part)})
        assert all(r["status"] == "done" for r in _rows(part))
    assert not (tmp_path / "run.jsonl").exists()
    everything = {p.relative_to(many).as_posix() for p in many.rglob("*.png")}
    assert set().union(*parts) == everything
    assert sum(len(p) for p in parts) == len(everything)  # disjoint: nothing done twice
    assert all(parts), "18 names over 3 shards: each gets some"
    written = {p.relative_to(out).with_suffix(".png").as_posix() for p in out.rglob("*.png")}
    assert written == everything

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = _run([str(many)], out, luma_weights, (1, 3), tmp_path / "again.jsonl")
    assert (again.done, again.skipped, again.failed) == (0, len(parts[1]), 0)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before


def test_split_does_not_depend_on_listing_order(many: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(many)
    files = sorted(p.relative_to(many).as_posix() for p in many.rglob("*.png"))
    forward = list_sources(files).sources
    backward = list_sources(list(reversed(files))).sources
    assert {s.key: shard_of(s.key, 4) for s in forward} == {s.key: shard_of(s.key, 4) for s in backward}
    # the same files found by walking the folder get the same keys, hence the same shards
    walked = list_sources(["."]).sources
    assert {s.key for s in walked} == {s.key for s in forward}


def test_shard_spec_errors(tmp_path: Path) -> None:
    assert parse_shard("2/5") == (2, 5)
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(UsageError, match="--shard: expected I/N"):
            parse_shard(bad)
    with pytest.raises(UsageError, match="--shard 4/4: expected I/N"):
        RunOptions(shard=(4, 4))
    res = CliRunner().invoke(app, [str(tmp_path), "-o", str(tmp_path / "o"), "--shard", "3/3"])
    assert res.exit_code == 2
    assert "bgcut: error: --shard: expected I/N with 0 <= I < N (e.g. 0/4), got '3/3'" in res.output
    assert os.path.exists(tmp_path) and not (tmp_path / "o").exists()
