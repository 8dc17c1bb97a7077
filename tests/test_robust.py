"""Nothing ends a run with a traceback: crafted files, odd names, bad options, weights, manifests.

Each test here failed before the fix it covers (issue 15). The process-level cases (a killed
worker, a killed main process, SIGTERM, the current folder's modules) are in test_processes.py.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from bgcut import OutputOptions, PostOptions, RunOptions, remove_backgrounds
from bgcut.cli import app
from bgcut.errors import UsageError, WeightsMismatchError
from bgcut.models import create_model
from bgcut.storage import NAME_MAX, sweep_temporaries, temp_name

from .conftest import save, square_image


def bgcut(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process: for what the decode workers and C libraries do."""
    return subprocess.run([sys.executable, "-m", "bgcut", *args], capture_output=True, text=True, timeout=300)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The same command in this process (through Typer's runner): seconds faster, same exit codes and lines."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def only_bgcut_lines(stderr: str) -> list[str]:
    """stderr's lines, after asserting each is one of bgcut's own (no traceback, no library noise)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert all(line.startswith("bgcut: ") for line in lines), stderr
    return lines


def tiff_without_dimensions() -> bytes:
    """A two-page TIFF whose second page has no width or height: PIL's ``n_frames`` raises TypeError."""
    buf = io.BytesIO()
    pages = [Image.fromarray(square_image()) for _ in range(2)]
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])
    data = bytearray(buf.getvalue())
    first = struct.unpack_from("<I", data, 4)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * struct.unpack_from("<H", data, first)[0])[0]
    for k in range(struct.unpack_from("<H", data, second)[0]):
        at = second + 2 + 12 * k
        if struct.unpack_from("<H", data, at)[0] in (256, 257):  # ImageWidth, ImageLength -> unknown tags
            struct.pack_into("<H", data, at, 900 + k)
    return bytes(data)


def gif_truncations_that_crash_pil() -> list[bytes]:
    """Truncated animated GIFs on which PIL raises something other than OSError (IndexError, struct.error)."""
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8)).convert("P") for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    data, found = buf.getvalue(), []
    for n in range(len(data) // 2, len(data)):
        try:
            with Image.open(io.BytesIO(data[:n])) as im:
                _ = im.n_frames
        except OSError:
            continue
        except Exception:  # noqa: BLE001 - exactly the kind of file we want
            found.append(data[:n])
        if len(found) == 3:
            break
    assert found, "this Pillow no longer crashes on truncated GIFs; pick another crafted file"
    return found


def test_crafted_tiff_and_gif_fail_alone_and_the_rest_runs(tmp_path: Path, luma_weights: Path) -> None:
    src = tmp_path / "in"
    for i in range(12):
        save(square_image(), src / f"good{i:02d}.png")
    (src / "nodims.tif").write_bytes(tiff_without_dimensions())
    for i, data in enumerate(gif_truncations_that_crash_pil()):
        (src / f"trunc{i}.gif").write_bytes(data)
    for workers in (0, 2):
        out = tmp_path / f"out{workers}"
        proc = bgcut(str(src), "-o", str(out), "-w", str(luma_weights), "-j", str(workers), "-b", "2")
        assert proc.returncode == 1, proc.stderr
        errors = [line for line in only_bgcut_lines(proc.stderr) if line.startswith("bgcut: error: ")]
        assert len(errors) == 1 + len(list(src.glob("trunc*.gif")))
        assert any("nodims.tif: cannot decode image: corrupt header (no image size)" in e for e in errors), errors
        assert len(list(out.glob("good*.png"))) == 12


def test_decoder_messages_are_attached_to_the_file(tmp_path: Path, luma_weights: Path) -> None:
    arr = (square_image() * 0.5 + np.arange(80)[None, :, None]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "TIFF", compression="tiff_lzw")
    data = bytearray(buf.getvalue())
    data[8:32] = bytes(range(200, 224))  # LZW codes that libtiff has not seen yet: it prints a warning
    src = tmp_path / "in"
    src.mkdir()
    (src / "badcodes.tif").write_bytes(bytes(data))
    for i in range(4):
        save(square_image(), src / f"good{i}.png")
    proc = bgcut(str(src), "-o", str(tmp_path / "out"), "-w", str(luma_weights), "-j", "2", "-b", "1")
    lines = only_bgcut_lines(proc.stderr)  # libtiff's own line is not printed on its own
    (bad,) = [line for line in lines if "badcodes.tif" in line]
    assert bad.endswith(
        "badcodes.tif: cannot decode image: corrupt image data (the decoder stopped with error -2)"
        " (decoder said: tempfile.tif: Using code not yet in table.)"
    ), bad
    assert len(list((tmp_path / "out").glob("good*.png"))) == 4


def test_file_names_that_are_not_utf8_or_hold_newlines(tmp_path: Path, luma_weights: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    save(square_image(), Path(os.fsdecode(bytes(src) + b"/caf\xe9.png")))
    (src / "two\nlines.png").write_bytes(b"not a picture")
    manifest = tmp_path / "m.jsonl"
    proc = cli(str(src), "-o", str(tmp_path / "out"), "-w", str(luma_weights), "--manifest", str(manifest))
    assert proc.returncode == 1, proc.stderr
    lines = only_bgcut_lines(proc.stderr)
    assert any(line.endswith("two\\nlines.png: not an image, or a format PIL cannot identify") for line in lines), lines
    rows = [json.loads(line) for line in manifest.read_text("utf-8").splitlines()]
    done = [r for r in rows if r["status"] == "done"]
    assert len(rows) == 2 and len(done) == 1
    assert os.fsencode(done[0]["input"]).endswith(b"/caf\xe9.png")  # the exact bytes come back
    assert (tmp_path / "out" / os.fsdecode(b"caf\xe9.png")).is_file()


def test_a_folder_that_cannot_be_entered(tmp_path: Path, luma_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in"
    save(square_image(), src / "ok.png")
    save(square_image(), src / "locked" / "a.png")
    real_stat = os.stat

    def stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        # What a folder with mode r-- looks like to its (non-root) owner: names listed, files not reachable.
        if os.fsdecode(path).startswith(str(src / "locked") + "/"):  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied")
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", stat)
    run = RunOptions(weights=str(luma_weights), workers=0, device="cpu")
    summary = remove_backgrounds([str(src)], tmp_path / "out", run, progress=False, log=lambda m: None)
    by_name = {Path(r.input).name: r for r in summary.rows}
    assert by_name["ok.png"].status == "done"
    assert by_name["a.png"].status == "failed" and by_name["a.png"].error == "permission denied"


def test_a_symlink_loop_given_as_a_file_fails_alone(tmp_path: Path, luma_weights: Path) -> None:
    """``bgcut loop.jpg`` (a link to itself) ended in a RuntimeError traceback from
    ``Path.resolve``, before any input was read."""
    save(square_image(), tmp_path / "ok.png")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    out = tmp_path / "out"
    proc = bgcut(str(tmp_path / "loop.jpg"), str(tmp_path / "ok.png"), "-o", str(out), "-w", str(luma_weights))
    assert proc.returncode == 1
    assert f"bgcut: error: {tmp_path / 'loop.jpg'}: cannot open: Too many levels of symbolic links" in (
        only_bgcut_lines(proc.stderr)
    )
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["ok.png"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root enters every folder")
def test_a_folder_that_cannot_be_entered_for_real(tmp_path: Path, luma_weights: Path) -> None:
    src = tmp_path / "in"
    save(square_image(), src / "ok.png")
    save(square_image(), src / "locked" / "a.png")
    (src / "locked").chmod(0o444)
    try:
        proc = bgcut(str(src), "-o", str(tmp_path / "out"), "-w", str(luma_weights))
    finally:
        (src / "locked").chmod(0o755)
    assert proc.returncode == 1
    assert any("a.png: permission denied" in line for line in only_bgcut_lines(proc.stderr))
    assert (tmp_path / "out" / "ok.png").is_file()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--feather", "inf"], "--feather inf: must be from 0 to 500 pixels"),
        (["--dilate", "100000"], "--dilate 100000: must be from 0 to 500 pixels"),
        (["--erode", "501"], "--erode 501: must be from 0 to 500 pixels"),
    ],
)
def test_option_values_are_one_usage_error_before_any_work(
    photos: Path, tmp_path: Path, luma_weights: Path, extra: list[str], words: str
) -> None:
    proc = cli(str(photos), "-o", str(tmp_path / "out"), "-w", str(luma_weights), *extra)
    assert proc.returncode == 2
    (line,) = only_bgcut_lines(proc.stderr)
    assert line.startswith(f"bgcut: error: {words}")
    assert not (tmp_path / "out").exists()


def test_option_values_click_refuses_are_one_line_too(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    proc = bgcut(str(photos), "-o", str(tmp_path / "out"), "-w", str(luma_weights), "--threshold", "half")
    assert proc.returncode == 2
    (line,) = only_bgcut_lines(proc.stderr)
    assert line.startswith("bgcut: error: Invalid value for '--threshold' / '-t': ")
    assert line.endswith("(see `bgcut remove --help`)")
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_is_a_usage_error(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    proc = cli(str(photos), "-o", str(target), "-w", str(luma_weights))
    assert proc.returncode == 2
    (line,) = only_bgcut_lines(proc.stderr)
    assert line == (
        f"bgcut: error: -o {target} is a file; -o names the folder the outputs are written into "
        "(or one output file ending in .jpeg, .jpg, .png, .webp)"
    )
    assert target.read_text() == "keep me"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("cut.tif", "bgcut writes no .tif files; end one output file in .jpeg, .jpg, .png, .webp, or give a folder"),
        ("cut.HEIC", "bgcut writes no .heic files; end one output file in .jpeg, .jpg, .png, .webp, or give a folder"),
        ("cut.mp4", "videos are written into a folder (as NAME.webm ...); give a folder"),
    ],
)
def test_output_named_as_a_file_bgcut_cannot_write_is_a_usage_error(
    photos: Path, tmp_path: Path, luma_weights: Path, name: str, said: str
) -> None:
    """-o cut.tif used to become a folder named cut.tif with cut.png inside."""
    target = tmp_path / name
    proc = cli(str(photos / "a.png"), "-o", str(target), "-w", str(luma_weights), "-j", "0")
    assert proc.returncode == 2
    assert only_bgcut_lines(proc.stderr) == [f"bgcut: error: -o {target}: {said}"]
    assert not target.exists()


def test_an_existing_folder_with_a_pictures_extension_is_still_written_into(
    photos: Path, tmp_path: Path, luma_weights: Path
) -> None:
    folder = tmp_path / "scans.tif"
    folder.mkdir()
    proc = cli(str(photos / "a.png"), "-o", str(folder), "-w", str(luma_weights), "-j", "0")
    assert proc.returncode == 0, proc.stderr
    assert (folder / "a.png").is_file()
    # A new one, named with a trailing slash: a folder it says it is.
    proc = cli(str(photos / "a.png"), "-o", f"{tmp_path / 'new.tif'}/", "-w", str(luma_weights), "-j", "0")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "new.tif" / "a.png").is_file()


def test_manifest_problems(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    common = [str(photos), "-w", str(luma_weights), "-j", "0"]
    folder = tmp_path / "a-folder"
    folder.mkdir()
    proc = cli(*common, "-o", str(tmp_path / "o1"), "--manifest", str(folder))
    assert proc.returncode == 2 and only_bgcut_lines(proc.stderr) == [
        f"bgcut: error: --manifest {folder} is a folder; give a file name, e.g. {folder / 'run.jsonl'}"
    ]
    assert not (tmp_path / "o1").exists()
    nested = tmp_path / "new" / "deeper" / "run.jsonl"  # a missing folder is made, as -o's is
    proc = cli(*common, "-o", str(tmp_path / "o2"), "--manifest", str(nested))
    assert proc.returncode == 0, proc.stderr
    assert len(nested.read_text().splitlines()) == 3
    if Path("/dev/full").exists():  # every write fails with "No space left on device"
        proc = cli(*common, "-o", str(tmp_path / "o3"), "--manifest", "/dev/full")
        assert proc.returncode == 1
        lines = only_bgcut_lines(proc.stderr)
        assert lines[0] == (
            "bgcut: error: /dev/full: cannot write the manifest: No space left on device; the outputs are still written"
        )
        assert "3 done" in lines[-1] and len(lines) == 2
        assert len(list((tmp_path / "o3").rglob("*.png"))) == 3


def test_a_manifest_that_would_write_into_an_input_or_an_output_is_refused(
    photos: Path, tmp_path: Path, luma_weights: Path
) -> None:
    """A manifest is appended to: named as an input it changed the photo, named as an output its
    lines went into the file that the output's rename then replaced."""
    out = tmp_path / "out"
    bare = tmp_path / "photo"  # an input named on the command line, without an extension
    bare.write_bytes((photos / "a.png").read_bytes())
    before = {p: p.read_bytes() for p in (photos / "a.png", bare)}
    for manifest, said in [
        (photos / "a.png", "a manifest is JSON lines, not a .png file; name it e.g. run.jsonl"),
        (out / "a.png", "a manifest is JSON lines, not a .png file; name it e.g. run.jsonl"),
        (bare, f"is the input {bare}; give the manifest another name"),
        (out / ".bgcut-settings.json", "is bgcut's settings file of that folder; name it e.g. run.jsonl"),
    ]:
        proc = cli(
            str(photos / "a.png"), str(bare), "-o", str(out), "-w", str(luma_weights), "--manifest", str(manifest)
        )
        assert proc.returncode == 2
        assert only_bgcut_lines(proc.stderr) == [
            f"bgcut: error: --manifest {manifest}{'' if said.startswith('is') else ':'} {said}"
        ]
    assert {p: p.read_bytes() for p in before} == before
    assert not out.exists()


def test_a_pickle_that_is_not_a_checkpoint(photos: Path, tmp_path: Path) -> None:
    bad = tmp_path / "model.pth"
    torch.save({"net": torch.nn.Linear(2, 2)}, bad)  # a whole module: loading it would run pickle code
    proc = cli(str(photos), "-o", str(tmp_path / "out"), "-w", str(bad))
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()  # torch's own two-line warning came first before
    assert line.startswith("bgcut: error: ") and "not a state dict of tensors" in line and "weights_only" not in line


def test_damaged_weights_are_refused(tmp_path: Path, luma_weights: Path) -> None:
    folder = tmp_path / "nan"
    folder.mkdir()
    (folder / "config.json").write_text((luma_weights / "config.json").read_text())
    state = load_file(str(luma_weights / "model.safetensors"))
    save_file({**state, "scale": torch.tensor(float("nan"))}, str(folder / "model.safetensors"))
    with pytest.raises(WeightsMismatchError, match="tensor scale holds NaN or infinite values"):
        create_model(weights=folder)
    # A folder from `bgcut train` records its weights' sha256: changed bytes are caught even when finite.
    trained = tmp_path / "trained"
    trained.mkdir()
    save_file(state, str(trained / "model.safetensors"))
    config = json.loads((luma_weights / "config.json").read_text())
    config["sha256"] = "0" * 64
    (trained / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="its config.json records another sha256"):
        create_model(weights=trained)


def test_post_options_check_themselves() -> None:
    with pytest.raises(UsageError, match="--threshold nan: must be from 0 to 1"):
        PostOptions(threshold=float("nan"))  # the CLI's own range check refuses it first, with exit 2
    with pytest.raises(UsageError, match="--keep 'biggest'"):
        PostOptions(keep="biggest")
    with pytest.raises(UsageError, match="--format 'gif'"):
        OutputOptions(format="gif")


def test_long_file_names_fit_their_temporary_name(tmp_path: Path, luma_weights: Path) -> None:
    name = "é" * 60 + "x" * 116 + ".png"  # 240 bytes in UTF-8; the output is as long, its temporary longer
    assert len(name.encode()) == 240
    save(square_image(), tmp_path / "in" / name)
    run = RunOptions(weights=str(luma_weights), workers=0, device="cpu")
    summary = remove_backgrounds([str(tmp_path / "in")], tmp_path / "out", run, progress=False, log=lambda m: None)
    assert summary.done == 1, summary.rows
    assert (tmp_path / "out" / name).is_file()
    assert len(os.fsencode(temp_name("é" * 200 + ".png"))) <= NAME_MAX


def test_stale_temporaries_of_a_killed_run_are_removed(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = out / "sub" / ".b.png.999999999.0123abcd.bgcut-tmp"  # no such process
    live = out / f".a.png.{os.getpid()}.0123abcd.bgcut-tmp"  # a run in progress (this one)
    # Not bgcut's own pattern: a user's two-day-old file (it was deleted before), no PID, not hidden.
    users = [out / "notes.bgcut-tmp", out / ".c.png.0123abcd.bgcut-tmp", out / "d.png.999999999.0123abcd.bgcut-tmp"]
    for p in (dead, live, *users):
        p.write_bytes(b"half a png")
        os.utime(p, (1_000_000_000, 1_000_000_000))
    proc = cli(str(photos), "-o", str(out), "-w", str(luma_weights))
    assert proc.returncode == 0, proc.stderr
    assert f"bgcut: removed 1 temporary file(s) left under {out} by a killed run" in proc.stderr
    assert not dead.exists() and live.exists() and all(p.exists() for p in users)
    fresh = out / ".d.png.999999999.0123abcd.bgcut-tmp"  # written after the sweep's cut-off: a concurrent run's
    fresh.write_bytes(b"x")
    assert sweep_temporaries(out, older_than=0) == []


def test_outputs_are_byte_identical_whatever_the_batching(tmp_path: Path) -> None:
    """A real network (the embedded fast one; the default at 1024 px would take minutes here): -j, a
    broken file in a batch and resume history must not change a byte."""
    rng = np.random.default_rng(7)
    src = tmp_path / "in"
    for i in range(12):
        # Smooth random scenes: the masks come out soft, where a last-bit difference shows as an alpha level.
        field = cv2.resize(rng.integers(0, 255, (6, 8, 3)).astype(np.uint8), (320, 240), interpolation=cv2.INTER_CUBIC)
        save(np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype(np.uint8), src / f"p{i:02d}.png")
    common = {"device": "cpu", "batch_size": 8, "model": "bgcut-lite"}

    def run(inputs: list[Path], out: Path, workers: int) -> None:
        summary = remove_backgrounds(
            [str(p) for p in inputs],
            out,
            RunOptions(workers=workers, **common),  # type: ignore[arg-type]
            OutputOptions(format="mask"),
            progress=False,
            log=lambda m: None,
        )
        assert summary.failed == 0 or any(r.input.endswith("broken.png") for r in summary.rows)

    files = sorted(src.glob("*.png"))
    run(files, tmp_path / "a", workers=0)
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    run([files[0], tmp_path / "broken.png", *files[1:]], tmp_path / "b", workers=2)
    for f in files[:4]:
        run([f], tmp_path / "c", workers=0)  # batches of one
    run(files, tmp_path / "c", workers=2)  # resumes the other 8
    for f in files:
        a = (tmp_path / "a" / f.name).read_bytes()
        assert (tmp_path / "b" / f.name).read_bytes() == a, f.name
        assert (tmp_path / "c" / f.name).read_bytes() == a, f.name
