"""Inputs and outputs as fsspec URLs: in-memory (one process) and S3 (a local moto server, real HTTP).

The S3 tests run the CLI in a subprocess with decode workers, so the worker processes read
from the bucket themselves, exactly as on a real cluster; only the endpoint is local.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from bgcut import OutputOptions, RunOptions, remove_backgrounds
from bgcut.errors import StorageError, UsageError
from bgcut.pipeline.reader import list_sources
from bgcut.storage import Destination, append_lines, is_url

from .conftest import s3_filesystem, save, square_image


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def mem() -> Iterator[fsspec.AbstractFileSystem]:
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()


def test_is_url() -> None:
    assert is_url("s3://b/x") and is_url("gs://b") and is_url("simplecache::s3://b/x") and is_url("file:///tmp")
    assert not is_url("photos/a.jpg") and not is_url("/abs/path") and not is_url("C:\\photos") and not is_url("-")


def test_memory_urls_in_and_out(mem: fsspec.AbstractFileSystem, tmp_path: Path, luma_weights: Path) -> None:
    mem.pipe_file("/in/a.png", _png(square_image()))
    mem.pipe_file("/in/sub/b.png", _png(square_image((64, 64), (10, 10, 40, 50))))
    mem.pipe_file("/in/.hidden/c.png", _png(square_image()))
    mem.pipe_file("/in/notes.txt", b"not an image, and not listed")
    mem.pipe_file("/in/broken.jpg", b"not a jpeg")
    run = RunOptions(weights=str(luma_weights), workers=0, device="cpu", manifest="memory://logs/run.jsonl")
    errors: list[str] = []
    summary = remove_backgrounds(["memory://in"], "memory://out", run, OutputOptions(format="mask"), log=errors.append)
    assert (summary.done, summary.failed) == (2, 1)
    assert errors == ["bgcut: error: memory://in/broken.jpg: not an image, or a format PIL cannot identify"]
    assert sorted(mem.find("/out")) == ["/out/.bgcut-settings.json", "/out/a.png", "/out/sub/b.png"]
    mask = np.asarray(Image.open(io.BytesIO(mem.cat_file("/out/sub/b.png"))))
    assert mask.shape == (64, 64) and mask[30, 20] == 255 and mask[5, 5] == 0  # the white box is foreground

    # The same inputs through local paths give byte-identical files.
    local_in = tmp_path / "in"
    for name in ("a.png", "sub/b.png"):
        (local_in / name).parent.mkdir(parents=True, exist_ok=True)
        (local_in / name).write_bytes(mem.cat_file(f"/in/{name}"))
    local_run = dataclasses.replace(run, manifest=None)
    remove_backgrounds([str(local_in)], tmp_path / "out", local_run, OutputOptions(format="mask"), log=lambda m: None)
    for name in ("a.png", "sub/b.png"):
        assert (tmp_path / "out" / name).read_bytes() == mem.cat_file(f"/out/{name}")

    rows = [json.loads(line) for line in mem.cat_file("/logs/run.jsonl").decode().splitlines()]
    assert {r["input"]: r["outputs"] for r in rows if r["status"] == "done"} == {
        "memory://in/a.png": ["memory://out/a.png"],
        "memory://in/sub/b.png": ["memory://out/sub/b.png"],
    }

    # A rerun skips both (one listing of the output), and its rows are appended to the manifest.
    again = remove_backgrounds(["memory://in"], "memory://out", run, OutputOptions(format="mask"), log=lambda m: None)
    assert (again.done, again.skipped, again.failed) == (0, 2, 1)
    assert len(mem.cat_file("/logs/run.jsonl").decode().splitlines()) == 6


def test_url_listing_keys_and_output_inside_input(mem: fsspec.AbstractFileSystem) -> None:
    for name in ("x/a.jpg", "x/deep/b.png", "x/out/old.png", "x/deep/readme.md", "y/z/c.png"):
        mem.pipe_file(f"/{name}", b"...")
    args = ["memory://x", "memory://y/z/c.png", "memory://x/deep/b.png", "memory://nothing"]
    listing = list_sources(args, "memory://x/out")
    assert [(s.key, s.path) for s in listing.sources] == [
        ("a", "memory://x/a.jpg"),
        ("c", "memory://y/z/c.png"),  # a file URL keeps only its name
        ("deep/b", "memory://x/deep/b.png"),  # named twice, read once; nothing from the output folder
    ]
    assert listing.errors == [("memory://nothing", "no such file or folder")]


def test_output_url_equal_to_input_is_refused(mem: fsspec.AbstractFileSystem, luma_weights: Path) -> None:
    mem.pipe_file("/in/a.png", _png(square_image()))
    with pytest.raises(UsageError, match="is the input folder"):
        remove_backgrounds(["memory://in"], "memory://in/", RunOptions(weights=str(luma_weights), workers=0))


def test_missing_filesystem_package_is_a_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    if any(_importable(m) for m in ("gcsfs",)):
        pytest.skip("gcsfs is installed here")
    proc = subprocess.run(
        [sys.executable, "-m", "bgcut", "gs://bucket/photos", "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("bgcut: error: gs://bucket/photos: ") and "gcsfs" in last, proc.stderr


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_destination_stale_object_removal(mem: fsspec.AbstractFileSystem) -> None:
    dest = Destination("memory://out")
    dest.write("a_obj00.png", b"1")
    dest.write("a_obj01.png", b"2")
    assert dest.exists("a_obj00.png") and not dest.exists("zzz.png")
    assert dest.remove_if_exists("a_obj01.png") and not dest.remove_if_exists("a_obj01.png")
    assert dest.locate("sub/x.png") == "memory://out/sub/x.png"


# --- S3 through a local moto server -------------------------------------------------------------


def _bgcut(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bgcut", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, **env})


def test_s3_in_and_out_matches_local_paths(s3_env: dict[str, str], tmp_path: Path, luma_weights: Path) -> None:
    # Ray reading from this bucket is tested in test_ray (one Ray start costs about 20 s of the suite).
    engine = "local"
    s3 = s3_filesystem(s3_env)
    bucket = f"bgcut-{engine}"
    s3.mkdir(bucket)
    local_in = tmp_path / "in"
    for i in range(6):
        save(square_image((50 + 3 * i, 40), (4, 4, 20 + 2 * i, 30)), local_in / f"d{i % 2}" / f"img{i}.png")
    (local_in / "broken.jpg").write_bytes(b"not a jpeg")
    s3.put(str(local_in) + "/", f"{bucket}/in/", recursive=True)

    common = ["-w", str(luma_weights), "-b", "2", "-j", "2", "--format", "crop", "-q", "--engine", engine]
    proc = _bgcut([f"s3://{bucket}/in", "-o", f"s3://{bucket}/out", "--manifest", f"s3://{bucket}/run.jsonl", *common],
                  s3_env)  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the broken file fails; the rest are written
    assert f"bgcut: error: s3://{bucket}/in/broken.jpg: not an image, or a format PIL cannot identify" in proc.stderr
    # The yardstick and the resume check run on the local engine: both engines share naming, resume
    # and the writer, and each Ray start costs about 20 s of the suite's time.
    local_engine = [*common[:-1], "local"]
    local = _bgcut([str(local_in), "-o", str(tmp_path / "out"), *local_engine], {})
    assert local.returncode == 1, local.stderr

    expected = {p.relative_to(tmp_path / "out").as_posix(): p.read_bytes() for p in (tmp_path / "out").rglob("*.png")}
    got = {k[len(f"{bucket}/out/") :]: s3.cat_file(k) for k in s3.find(f"{bucket}/out") if k.endswith(".png")}
    assert len(expected) == 6 and got == expected  # byte-identical crops, same tree
    rows = [json.loads(line) for line in s3.cat_file(f"{bucket}/run.jsonl").decode().splitlines()]
    done = {r["input"]: r["outputs"] for r in rows if r["status"] == "done"}
    assert done[f"s3://{bucket}/in/d0/img0.png"] == [f"s3://{bucket}/out/d0/img0.png"]
    assert len(done) == 6

    again = _bgcut(
        [f"s3://{bucket}/in/d1", "-o", f"s3://{bucket}/out/d1", *[a for a in local_engine if a != "-q"]], s3_env
    )
    assert again.returncode == 0 and "0 done, 3 skipped, 0 failed" in again.stderr, again.stderr


def test_remote_failures_are_one_line_errors(
    mem: fsspec.AbstractFileSystem, monkeypatch: pytest.MonkeyPatch, luma_weights: Path
) -> None:
    class NoCredentialsError(Exception):  # what botocore raises: not an OSError
        pass

    def refuse(*args: object, **kwargs: object) -> None:
        raise NoCredentialsError("Unable to locate credentials")

    mem.pipe_file("/in/a.png", _png(square_image()))
    monkeypatch.setattr(type(mem), "find", refuse)
    listing = list_sources(["memory://in"])
    assert listing.errors == [("memory://in", "cannot list: NoCredentialsError: Unable to locate credentials")]
    with pytest.raises(StorageError, match=r"^memory://out: cannot list the output folder: NoCredentialsError"):
        mem.pipe_file("/out/x.png", b"1")
        Destination("memory://out").exists("x.png")
    monkeypatch.setattr(type(mem), "pipe_file", refuse)
    with pytest.raises(StorageError, match=r"^memory://m.jsonl: cannot write the manifest: NoCredentialsError"):
        append_lines("memory://m.jsonl", ["{}\n"])


def test_a_manifest_is_read_back_by_its_last_row_per_input(tmp_path: Path) -> None:
    """One reader for resume and for the review page: an input's last row counts, damaged lines
    and rows of no input are passed over, and ``keep`` picks which rows may count."""
    from bgcut.manifests import last_rows

    path = tmp_path / "run.jsonl"
    rows = [
        {"input": "a.jpg", "status": "done", "width": 4},
        {"input": "b.jpg", "status": "done", "width": 5},
        {"input": "a.jpg", "status": "failed", "error": "x"},
        ["not", "a", "row"],
        {"status": "done"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"input": "c.jpg", "sta')  # killed mid-line
    assert last_rows(path) == {"a.jpg": rows[2], "b.jpg": rows[1]}
    assert last_rows(path, keep=lambda r: "width" in r) == {"a.jpg": rows[0], "b.jpg": rows[1]}
    with pytest.raises(OSError):
        last_rows(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_manifest_cut_short_mid_line_loses_no_new_row(tmp_path: Path, luma_weights: Path, where: str) -> None:
    """A manifest whose last line was cut short (a full disk, a hand edit): each new row starts a
    line of its own, where the first one used to be glued to the damaged line and lost."""
    from bgcut.manifests import last_rows

    manifest = str(tmp_path / "run.jsonl") if where == "local" else "memory://cut/run.jsonl"
    with fsspec.open(manifest, "wb") as f:
        f.write(b'{"input": "earlier.jpg", "status": "done"}\n{"input": "killed.jpg", "sta')
    for name in ("a.png", "b.png"):
        save(square_image(), tmp_path / "in" / name)
    run = RunOptions(weights=str(luma_weights), workers=0, device="cpu", manifest=manifest)
    summary = remove_backgrounds([str(tmp_path / "in")], tmp_path / "out", run, log=lambda m: None)
    assert summary.done == 2
    with fsspec.open(manifest, "rb") as f:
        lines = f.read().decode().splitlines()
    assert lines[:2] == ['{"input": "earlier.jpg", "status": "done"}', '{"input": "killed.jpg", "sta']
    assert [json.loads(line)["status"] for line in lines[2:]] == ["done", "done"]
    if where == "local":
        assert sorted(Path(p).name for p in last_rows(Path(manifest))) == ["a.png", "b.png", "earlier.jpg"]
