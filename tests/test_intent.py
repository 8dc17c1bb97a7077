"""The command does what a user means: one file to one file, bytes on stdin, resume that knows
the settings, never an output over an input, empty inputs, terminals, file permissions (issue 16)."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.models._weights import save_tensors

from .conftest import save, square_image


def cli(*args: str, stdin: bytes | None = None):  # noqa: ANN201
    return CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bgcut: "), stderr
    return lines[0]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return save(square_image(), tmp_path / "photo.jpg", quality=95)


@pytest.mark.parametrize(
    ("name", "extra", "mode"),
    [("cut.png", [], "RGBA"), ("cut.webp", [], "RGBA"), ("cut.jpg", [], "RGB"), ("cut.JPEG", [], "RGB")]
    + [("mask.png", ["--format", "mask"], "L")],
)
def test_one_input_to_one_named_file(
    photo: Path, tmp_path: Path, luma_weights: Path, name: str, extra: list[str], mode: str
) -> None:
    target = tmp_path / "elsewhere" / name
    result = cli(str(photo), "-o", str(target), "-w", str(luma_weights), *extra)
    assert result.exit_code == 0, result.stderr
    with Image.open(target) as im:
        assert im.mode == mode and im.size == (80, 60)
        px = np.asarray(im)
    assert not (tmp_path / "elsewhere" / name / name).exists()
    if mode == "RGBA":
        assert px[30, 40, 3] == 255 and px[2, 2, 3] == 0
    # An explicit file is written again on a rerun: the user named it.
    again = cli(str(photo), "-o", str(target), "-w", str(luma_weights), *extra)
    assert again.exit_code == 0 and "1 done" in again.stderr


def test_a_named_file_that_does_not_fit(photo: Path, photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    result = cli(str(photo), "-o", str(tmp_path / "cut.png"), "--format", "jpg", "-w", str(luma_weights))
    assert result.exit_code == 2
    assert one_line(result.stderr) == (
        f"bgcut: error: -o {tmp_path / 'cut.png'}: --format jpg writes .jpg files; "
        "name the output cut.jpg, or leave --format out"
    )
    result = cli(str(photos), "-o", str(tmp_path / "cut.png"), "-w", str(luma_weights))
    assert result.exit_code == 2
    assert one_line(result.stderr) == (
        f"bgcut: error: -o {tmp_path / 'cut.png'} names one output file, but the inputs name 3 images; give a folder"
    )
    assert not (tmp_path / "cut.png").exists()


def test_image_bytes_on_stdin(photo: Path, tmp_path: Path, luma_weights: Path) -> None:
    result = cli("-", "-o", "-", "-w", str(luma_weights), stdin=photo.read_bytes())
    assert result.exit_code == 0, result.stderr
    with Image.open(io.BytesIO(result.stdout_bytes)) as im:
        assert im.format == "PNG" and im.mode == "RGBA" and im.size == (80, 60)
    result = cli("-", "-o", str(tmp_path / "out"), "-w", str(luma_weights), stdin=photo.read_bytes())
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "stdin.png").is_file()


def test_path_lists_on_stdin(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    paths = sorted(str(p) for p in photos.rglob("*.png"))
    result = cli("-0", "-", "-o", str(tmp_path / "a"), "-w", str(luma_weights), stdin="\0".join(paths).encode() + b"\0")
    assert result.exit_code == 0, result.stderr
    assert "3 done" in result.stderr
    result = cli("-", "-o", str(tmp_path / "b"), "-w", str(luma_weights), stdin="\0".join(paths).encode())
    assert result.exit_code == 2
    assert one_line(result.stderr) == (
        "bgcut: error: stdin holds neither an image bgcut can read nor a list of paths "
        "(it has NUL bytes: for `find -print0` lists add -0)"
    )
    for junk, why in (
        (b"\xff\xd8\xff\xe0garbage", "it starts like a JPEG file, but the image in it cannot be read"),
        (b"\x89PNG\r\n\x1a\n" + b"x" * 20, "it starts like a PNG file, but the image in it cannot be read"),
        (b"photo.jpg\n\x1b[31mred\n", "it has control bytes that no list of paths holds"),
    ):
        result = cli("-", "-o", str(tmp_path / "j"), "-w", str(luma_weights), stdin=junk)
        assert result.exit_code == 2
        assert one_line(result.stderr) == (
            f"bgcut: error: stdin holds neither an image bgcut can read nor a list of paths ({why})"
        )
    assert not (tmp_path / "j").exists()
    result = cli("-", "-o", str(tmp_path / "c"), "-w", str(luma_weights), stdin=b"")
    assert result.exit_code == 2
    assert one_line(result.stderr) == (
        "bgcut: error: stdin is empty: `-` reads the bytes of one image, or a list of paths, from it"
    )


def test_resume_knows_the_settings(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    out = tmp_path / "out"
    common = [str(photos), "-o", str(out), "-w", str(luma_weights)]
    assert cli(*common, "--format", "mask").exit_code == 0
    result = cli(*common)  # png-alpha into a folder of masks: the same names, another kind
    assert result.exit_code == 2
    assert one_line(result.stderr) == (
        f"bgcut: error: {out} holds outputs made with other settings: --format mask (now png-alpha); "
        "rerun with those to resume, add --overwrite to redo every file with these, or choose another -o"
    )
    with Image.open(out / "a.png") as im:
        assert im.mode == "L"  # untouched
    assert "0 done, 3 skipped" in cli(*common, "--format", "mask").stderr  # the same settings resume
    result = cli(*common, "--binary", "--format", "mask")
    assert result.exit_code == 2 and "--binary False (now True)" in result.stderr
    result = cli(*common, "--overwrite")
    assert result.exit_code == 0 and "3 done" in result.stderr
    with Image.open(out / "a.png") as im:
        assert im.mode == "RGBA"
    assert "0 done, 3 skipped" in cli(*common).stderr


def test_resume_names_weights_by_content(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    """`-w DIR`, `-w DIR/model.safetensors` and a copy elsewhere are the same weights."""
    import json
    import shutil

    out = tmp_path / "out"
    assert cli(str(photos), "-o", str(out), "-w", str(luma_weights)).exit_code == 0
    copy = tmp_path / "copy"
    shutil.copytree(luma_weights, copy)
    for weights in (luma_weights / "model.safetensors", copy):
        result = cli(str(photos), "-o", str(out), "-w", str(weights))
        assert result.exit_code == 0 and "0 done, 3 skipped" in result.stderr, result.stderr
    # A folder written when weights were recorded by their resolved path still resumes.
    settings = out / ".bgcut-settings.json"
    data = json.loads(settings.read_text())
    data["--model/--weights"] = str(luma_weights.resolve())
    settings.write_text(json.dumps(data))
    assert "0 done, 3 skipped" in cli(str(photos), "-o", str(out), "-w", str(copy)).stderr
    # Other weights are other settings.
    other = tmp_path / "other"
    shutil.copytree(luma_weights, other)
    import torch
    from safetensors.torch import save_file

    save_file({"scale": torch.tensor(20.0), "offset": torch.tensor(0.5)}, str(other / "model.safetensors"))
    result = cli(str(photos), "-o", str(out), "-w", str(other))
    assert result.exit_code == 2 and "--model/--weights " in result.stderr and "(now sha256:" in result.stderr


def test_resume_after_the_default_changed_names_the_old_model(photos: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "out"
    out.mkdir()
    (out / ".bgcut-settings.json").write_text(json.dumps({
        "--format": "png-alpha", "--model/--weights": "bgcut-lite", "--size": None, "--precision": "auto",
    }))  # fmt: skip
    result = cli(str(photos), "-o", str(out))
    assert result.exit_code == 2
    assert "--model/--weights bgcut-lite (now isnet-general)" in result.stderr
    assert "the default model is now isnet-general: add -m bgcut-lite to go on with the model" in result.stderr


def test_an_output_is_never_an_input(photo: Path, tmp_path: Path, luma_weights: Path) -> None:
    before = photo.read_bytes()
    for extra in ([], ["--overwrite"]):
        result = cli(str(photo), "-o", str(tmp_path), "--format", "jpg", "-w", str(luma_weights), *extra)
        assert result.exit_code == 2
        assert one_line(result.stderr) == (
            f"bgcut: error: the output for {photo} would be {photo}, which is the input {photo}; "
            "choose another -o or --format"
        )
    result = cli(str(photo), "-o", str(photo), "-w", str(luma_weights))
    assert result.exit_code == 2 and "which is the input" in result.stderr
    (tmp_path / "via-link").symlink_to(tmp_path, target_is_directory=True)  # the same folder by another name
    result = cli(
        str(photo), "-o", str(tmp_path / "via-link"), "--format", "jpg", "--overwrite", "-w", str(luma_weights)
    )
    assert result.exit_code == 2 and "which is the input" in result.stderr
    assert photo.read_bytes() == before


def test_empty_input_says_so(tmp_path: Path, luma_weights: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    result = cli(str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "-w", str(luma_weights))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"bgcut: error: no input images: {tmp_path / 'empty'} holds no image files "
        "(1 file(s) passed over: not a photo or video bgcut reads (.txt))"
    )


def test_files_not_read_are_counted_and_listed(tmp_path: Path, luma_weights: Path) -> None:
    """Before, a folder of 47 files said "46 done" for the one it passed over in silence."""
    import json

    from bgcut.codecs import why_unreadable

    folder = tmp_path / "in"
    save(square_image(), folder / "a.png")
    Image.fromarray(square_image()).save(folder / "b.avif")  # read by Pillow itself
    Image.fromarray(square_image()).save(folder / "c.heic")  # read through pillow-heif (bgcut[heic])
    (folder / "README.md").write_text("notes")
    (folder / "scan").write_bytes(b"\x00" * 10)
    (folder / "d.xyz").write_bytes(b"x")
    manifest = tmp_path / "run.jsonl"
    result = cli(str(folder), "-o", str(tmp_path / "out"), "-w", str(luma_weights), "--manifest", str(manifest))
    assert result.exit_code == 0, result.stderr
    assert "3 done, 0 skipped, 0 failed, 3 passed over (1 .md, 1 .xyz, 1 without extension)" in result.stderr
    for name in ("a", "b", "c"):
        with Image.open(tmp_path / "out" / f"{name}.png") as im:
            assert im.mode == "RGBA" and np.asarray(im)[30, 40, 3] == 255 and np.asarray(im)[0, 0, 3] == 0
    rows = {Path(r["input"]).name: r for r in map(json.loads, manifest.read_text().splitlines())}
    assert rows["README.md"]["status"] == "passed-over"
    assert rows["README.md"]["error"] == "not a photo or video bgcut reads (.md)"
    assert rows["scan"]["error"] == "not a photo or video bgcut reads (no extension)"
    assert rows["c.heic"]["status"] == "done"
    assert why_unreadable(".HEIC") == "HEIC/HEIF photos need pip install 'bgcut[heic]'"


def test_second_names_of_files_are_one_warning(tmp_path: Path, luma_weights: Path) -> None:
    """Before, each link to a file found under another name had a warning line of its own."""
    folder = tmp_path / "in"
    for name in ("a", "b", "c"):
        save(square_image(), folder / f"{name}.png")
        for n in range(3):
            (folder / f"{name}-link{n}.png").symlink_to(folder / f"{name}.png")
    result = cli(str(folder), "-o", str(tmp_path / "out"), "-w", str(luma_weights))
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"bgcut: warning: 9 file(s) passed over, e.g. {folder / 'a-link0.png'}: the same file as "
        f"{folder / 'a.png'}, which is read under that name"
    ]
    assert "3 done, 0 skipped, 0 failed, 9 passed over (9 .png)" in result.stderr


def test_image_bytes_are_not_written_to_a_terminal(photo: Path, luma_weights: Path) -> None:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bgcut", str(photo), "-o", "-", "-w", str(luma_weights)],
            stdout=secondary,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(secondary)
        os.close(primary)
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        "bgcut: error: refusing to write image bytes to a terminal: redirect stdout (> cut.png) or give -o FILE"
    )


def test_weights_are_written_with_the_umask(tmp_path: Path) -> None:
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        old = os.umask(umask)
        try:
            save_tensors({"w": torch.zeros(2)}, tmp_path / f"w{umask:o}.safetensors")
        finally:
            os.umask(old)
        assert (tmp_path / f"w{umask:o}.safetensors").stat().st_mode & 0o777 == mode


def test_the_settings_file_is_what_the_options_declare() -> None:
    """Each option that changes an output's bytes says so where it is declared (``config.setting``);
    the settings file holds exactly those, under their flags, and nothing that does not change them."""
    from bgcut.config import OutputOptions, PostOptions, RunOptions, VideoOptions, settings_of
    from bgcut.pipeline.guard import MODEL_KEY, _settings

    out = OutputOptions(format="crop", margin="5%", png="small")
    assert settings_of(out) == {"--format": "crop", "--bg": None, "--margin": "5%", "--per-object": False,
                                "--min-area": 64}  # fmt: skip
    assert settings_of(RunOptions(size=512, workers=7, batch_size=3)) == {"--precision": "auto", "--size": 512}
    assert settings_of(VideoOptions(quality=30)) == {"--video-format": "webm", "--steady": 0.0, "--video-quality": 30}
    post = PostOptions(erode=2, refine="guided")
    assert settings_of(post) == {f"--{k.replace('_', '-')}": v for k, v in vars(post).items()}  # every post option
    settings = _settings(RunOptions(model="bgcut-lite"), out, post, VideoOptions())
    assert settings[MODEL_KEY] == "bgcut-lite" and "--png" not in settings and "--workers" not in settings
