"""The batch engine end to end with the deterministic luma model: pixels, names, resume, failures."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgcut import OutputOptions, PostOptions, RunOptions, remove_backgrounds
from bgcut.errors import UsageError

from .conftest import save, square_image


def opts(luma: Path, **kw: object) -> RunOptions:
    base = {"weights": str(luma), "workers": 0, "device": "cpu", "batch_size": 2}
    base.update(kw)
    return RunOptions(**base)  # type: ignore[arg-type]


def run(
    inputs: list[str], out: Path, luma: Path, fmt: str = "png-alpha", post: PostOptions | None = None, **kw: object
):  # noqa: ANN201
    out_kw = {k: kw.pop(k) for k in ("bg", "margin", "per_object", "min_area") if k in kw}
    return remove_backgrounds(
        inputs, out, opts(luma, **kw), OutputOptions(format=fmt, **out_kw), post, progress=False, log=lambda m: None
    )


def test_png_alpha_pixels_and_tree(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    out = tmp_path / "out"
    summary = run([str(photos)], out, luma_weights)
    assert (summary.done, summary.failed) == (3, 0)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a.png",
        "sub/b.png",
        "sub/deeper/c.png",
    ]
    im = np.asarray(Image.open(out / "a.png"))
    assert im.shape == (60, 80, 4)
    assert im[30, 40, 3] == 255 and im[2, 2, 3] == 0  # inside the white square / far background
    assert im[30, 40, :3].tolist() == [255, 255, 255]  # colour is the input's


def test_mask_binary_and_crop(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    run([str(photos / "a.png")], tmp_path / "m", luma_weights, "mask", PostOptions(binary=True))
    mask = np.asarray(Image.open(tmp_path / "m" / "a.png"))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() - 20) <= 1 and abs(xs.max() - 59) <= 1 and abs(ys.min() - 15) <= 1 and abs(ys.max() - 44) <= 1
    run([str(photos / "a.png")], tmp_path / "c", luma_weights, "crop", margin="2")
    crop = Image.open(tmp_path / "c" / "a.png")
    assert crop.mode == "RGBA" and abs(crop.size[0] - 44) <= 2 and abs(crop.size[1] - 34) <= 2


def test_jpg_on_background_and_webp(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    run([str(photos / "a.png")], tmp_path / "j", luma_weights, "jpg", bg="#00ff00")
    jpg = np.asarray(Image.open(tmp_path / "j" / "a.jpg"))
    assert jpg.shape == (60, 80, 3)
    assert jpg[2, 2, 1] > 240 and jpg[2, 2, 0] < 15  # background became green
    run([str(photos / "a.png")], tmp_path / "b", luma_weights, "jpg", bg="blur:3")
    blurred = np.asarray(Image.open(tmp_path / "b" / "a.jpg"))
    assert blurred.shape == (60, 80, 3) and (np.abs(blurred.astype(int) - jpg.astype(int)).max() > 100)
    run([str(photos / "a.png")], tmp_path / "w", luma_weights, "webp")
    webp = np.asarray(Image.open(tmp_path / "w" / "a.webp"))
    assert webp.shape == (60, 80, 4) and webp[30, 40, 3] == 255
    run([str(photos / "a.png")], tmp_path / "p", luma_weights, "png-alpha")
    png = np.asarray(Image.open(tmp_path / "p" / "a.png"))
    assert (webp[..., 3] == png[..., 3]).all()  # lossless: the same alpha as the PNG, bit for bit
    visible = png[..., 3] > 0
    assert (webp[..., :3][visible] == png[..., :3][visible]).all()


def test_per_object_crops(tmp_path: Path, luma_weights: Path) -> None:
    arr = square_image((100, 60), (5, 5, 45, 55))
    arr[20:40, 70:90] = 255
    save(arr, tmp_path / "in" / "two.png")
    run([str(tmp_path / "in")], tmp_path / "o", luma_weights, "crop", per_object=True)
    names = sorted(p.name for p in (tmp_path / "o").iterdir() if not p.name.startswith("."))
    assert names == ["two_obj00.png", "two_obj01.png"]
    assert Image.open(tmp_path / "o" / "two_obj00.png").size[0] > Image.open(tmp_path / "o" / "two_obj01.png").size[0]


def test_resume_skips_and_overwrite_redoes(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    out = tmp_path / "out"
    run([str(photos)], out, luma_weights)
    (out / "sub" / "b.png").unlink()
    marker = (out / "a.png").stat().st_mtime_ns
    second = run([str(photos)], out, luma_weights)
    assert (second.done, second.skipped) == (1, 2)
    assert (out / "sub" / "b.png").exists() and (out / "a.png").stat().st_mtime_ns == marker
    third = run([str(photos)], out, luma_weights, overwrite=True)
    assert (third.done, third.skipped) == (3, 0)


def test_colliding_stems_get_distinct_outputs(tmp_path: Path, luma_weights: Path) -> None:
    save(square_image(), tmp_path / "in" / "a.png")
    save(square_image(), tmp_path / "in" / "a.jpg")
    run([str(tmp_path / "in")], tmp_path / "o", luma_weights)
    assert sorted(p.name for p in (tmp_path / "o").iterdir() if not p.name.startswith(".")) == [
        "a.jpg.png",
        "a.png.png",
    ]


def make_broken_folder(root: Path) -> list[str]:
    """9 files: 6 good, 3 broken (empty, text, truncated)."""
    for i in range(6):
        save(square_image(), root / f"good{i}.png")
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("hello")
    data = (root / "good0.png").read_bytes()
    (root / "trunc.png").write_bytes(data[: len(data) // 2])
    return ["empty.jpg", "text.jpg", "trunc.png"]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_third_broken(tmp_path: Path, luma_weights: Path, workers: int) -> None:
    bad = make_broken_folder(tmp_path / "in")
    messages: list[str] = []
    summary = remove_backgrounds(
        [str(tmp_path / "in")],
        tmp_path / "o",
        opts(luma_weights, workers=workers, manifest=str(tmp_path / "m.jsonl")),
        progress=False,
        log=messages.append,
    )
    assert (summary.done, summary.failed) == (6, 3)
    assert sorted(p.name for p in (tmp_path / "o").iterdir() if not p.name.startswith(".")) == [
        f"good{i}.png" for i in range(6)
    ]
    errors = [m for m in messages if m.startswith("bgcut: error:")]
    assert len(errors) == 3
    for name in bad:
        assert any(name in m for m in errors)
    assert any("empty.jpg: empty file (0 bytes)" in m for m in errors)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 9
    failed = {Path(r["input"]).name: r["error"] for r in rows if r["status"] == "failed"}
    assert set(failed) == set(bad) and all(failed.values())
    done = [r for r in rows if r["status"] == "done"]
    assert all(
        r["width"] == 80 and r["height"] == 60 and r["model"] == "luma-test" and len(r["weights_sha256"]) == 64
        for r in done
    )
    assert all(abs(r["bbox"][0] - 20) <= 1 and 0.2 < r["fg_fraction"] < 0.3 for r in done)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_reports_each_file(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        summary = run([str(photos / "a.png")], out, luma_weights)
    finally:
        out.chmod(0o755)
    assert summary.failed == 1 and "cannot write output" in summary.rows[0].error


def test_unwritable_output_is_a_failed_row_and_leaves_nothing(
    photos: Path, tmp_path: Path, luma_weights: Path, monkeypatch
) -> None:  # noqa: ANN001
    """Simulates a write failing half way (read-only folder as root, full disk): no partial file remains."""
    import bgcut.storage as storage

    real_open = open

    def failing_open(path, mode="r", *a, **k):  # noqa: ANN001, ANN202
        if "w" in mode and storage.TMP_SUFFIX in str(path):
            f = real_open(path, mode, *a, **k)
            f.write(b"partial")
            f.close()
            raise PermissionError(13, "Permission denied")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr("builtins.open", failing_open)
    summary = run([str(photos)], tmp_path / "o", luma_weights)
    monkeypatch.undo()
    assert summary.failed == 3 and all(r.error == "cannot write output: Permission denied" for r in summary.rows)
    assert [p for p in (tmp_path / "o").rglob("*") if p.is_file()] == []


def test_output_folder_equal_to_input_is_refused(photos: Path, luma_weights: Path) -> None:
    with pytest.raises(UsageError, match="is the input folder"):
        run([str(photos)], photos, luma_weights)


def test_output_inside_input_is_not_reprocessed(photos: Path, luma_weights: Path) -> None:
    out = photos / "cutouts"
    run([str(photos)], out, luma_weights)
    second = run([str(photos)], out, luma_weights)
    assert (second.done, second.skipped, second.failed) == (0, 3, 0)


def test_input_alpha_is_respected(tmp_path: Path, luma_weights: Path) -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:, :20, 3] = 255  # left half opaque white, right half transparent white
    save(rgba, tmp_path / "in" / "t.png")
    run([str(tmp_path / "in")], tmp_path / "o", luma_weights)
    alpha = np.asarray(Image.open(tmp_path / "o" / "t.png"))[..., 3]
    assert alpha[20, 5] == 255 and alpha[20, 35] == 0


def test_odd_but_valid_inputs_end_to_end(tmp_path: Path, luma_weights: Path) -> None:
    """CMYK, 16-bit, palette+transparency, EXIF-rotated, grayscale and a non-ASCII name with spaces."""
    src = tmp_path / "in"
    src.mkdir()
    white = square_image()
    Image.fromarray(white).convert("CMYK").save(src / "cmyk.jpg", quality=100)
    Image.fromarray(white[..., 0].astype(np.uint16) * 257).save(src / "deep16.png")
    Image.fromarray(white).convert("P").save(src / "pal.png", transparency=0)
    Image.fromarray(white[..., 0], "L").save(src / "gray.png")
    save(white, src / "été photo 1.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(white).save(src / "rot.jpg", exif=exif.tobytes(), quality=100)
    summary = run([str(src)], tmp_path / "o", luma_weights)
    assert (summary.done, summary.failed) == (6, 0)
    for name in ("cmyk", "deep16", "pal", "gray", "été photo 1"):
        alpha = np.asarray(Image.open(tmp_path / "o" / f"{name}.png"))[..., 3]
        assert alpha.shape == (60, 80), name
        assert alpha[30, 40] == 255 and alpha[3, 3] == 0, name
    rotated = Image.open(tmp_path / "o" / "rot.png")
    assert rotated.size == (60, 80)  # orientation 6 turns the 80x60 picture upright as 60x80


def test_large_photos_are_held_by_pixels_and_their_outputs_do_not_change(
    tmp_path: Path, luma_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches cut short, writes waited for and written one at a time by their photos' pixels
    (the bounds that keep 100 MP scans from filling the memory), here at 4800-pixel photos: the
    same files, byte for byte, and every row."""
    from bgcut.pipeline import local_engine

    rng = np.random.default_rng(3)
    for i in range(9):
        save(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), tmp_path / "in" / f"p{i}.png")
    plain = run([str(tmp_path / "in")], tmp_path / "plain", luma_weights, batch_size=4, workers=2)
    held: list[int] = []

    class Watched(local_engine.PixelGate):
        @contextmanager
        def held(self, pixels: int) -> Iterator[None]:
            with super().held(pixels):
                held.append(self.used)
                yield

    monkeypatch.setattr(local_engine, "PixelGate", Watched)
    batches: list[int] = []
    real_batches = local_engine.model_batches

    def seen_batches(parts, size, max_pixels=None):  # noqa: ANN001, ANN202
        for batch in real_batches(parts, size, max_pixels):
            batches.append(len(batch))
            yield batch

    monkeypatch.setattr(local_engine, "model_batches", seen_batches)
    for name, value in {"BATCH_PIXELS": 9000, "QUEUED_PIXELS": 5000, "WRITING_PIXELS": 5000}.items():
        monkeypatch.setattr(local_engine, name, value)
    cut = run([str(tmp_path / "in")], tmp_path / "cut", luma_weights, batch_size=4, workers=2)
    assert (plain.done, cut.done, cut.failed) == (9, 9, 0)
    assert held and max(held) == 4800  # never two writes at once
    assert sum(batches) == 9 and max(batches) == 2  # two photos reach 9000 pixels: batches of 2, padded to 4
    for path in sorted((tmp_path / "plain").glob("*.png")):
        assert path.read_bytes() == (tmp_path / "cut" / path.name).read_bytes(), path.name


def test_a_batch_is_cut_short_once_its_photos_hold_the_pixels() -> None:
    from bgcut.pipeline.dataset import DecodeItem
    from bgcut.pipeline.local_engine import model_batches

    def photo(i: int, side: int) -> DecodeItem:
        return DecodeItem(i, rgb=np.zeros((side, side, 3), np.uint8))

    parts = [[photo(0, 10), DecodeItem(1, error="bad"), photo(2, 10)], [photo(3, 20), photo(4, 10), photo(5, 10)]]
    sizes = [[it.index for it in batch] for batch in model_batches(parts, 4, max_pixels=400)]
    assert sizes == [[0, 1, 2, 3], [4, 5]]  # 100 + 100 + 400: cut at the third photo, the failed one rides along
    assert [[it.index for it in b] for b in model_batches(parts, 2)] == [[0, 1, 2], [3, 4], [5]]
    assert [[it.index for it in b] for b in model_batches(parts, 8, max_pixels=1)] == [[0], [1, 2], [3], [4], [5]]


def test_the_pixel_gate_lets_one_photo_over_the_budget_run_alone() -> None:
    import threading
    import time

    from bgcut.pipeline.local_engine import PixelGate

    gate = PixelGate(100)
    together: list[int] = []

    def work(pixels: int) -> None:
        with gate.held(pixels):
            together.append(gate.used)
            time.sleep(0.05)

    threads = [threading.Thread(target=work, args=(p,)) for p in (60, 60, 250, 30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads) and gate.used == 0
    assert len(together) == 4 and max(together) <= 250 and all(u <= 100 or u == 250 for u in together)


def test_the_photo_engine_runs_the_step_it_is_given(tmp_path: Path) -> None:
    """The engine knows the model only as its step: inputs of the step's size and resampler in,
    masks (or one input's memory error) out, and the step's facts on every row."""
    from bgcut.errors import DeviceMemoryError
    from bgcut.pipeline.local_engine import process_photos
    from bgcut.pipeline.model_step import ModelFacts, ModelStep
    from bgcut.pipeline.reader import list_sources
    from bgcut.pipeline.report import Manifest, RunSummary
    from bgcut.pipeline.target import OutputTarget

    for i, size in enumerate([(80, 60), (50, 70), (64, 64)]):
        save(square_image(size), tmp_path / "in" / f"{i}.png")
    seen: list[tuple[tuple[int, ...], tuple[int, int]]] = []

    def masks(inputs, sizes):  # noqa: ANN001, ANN202
        for x, (h, w) in zip(inputs, sizes, strict=True):
            seen.append((x.shape, (h, w)))
            yield DeviceMemoryError("out of test memory") if (h, w) == (70, 50) else np.full((h, w), 200, np.uint8)

    step = ModelStep(ModelFacts("a-step", "ab" * 32, 40), 2, "bilinear", masks)
    out = tmp_path / "out"
    target = OutputTarget(RunOptions(workers=0), OutputOptions(format="mask"), PostOptions(), str(out))
    rows = []
    sources = list_sources([str(tmp_path / "in")], str(out)).sources
    record = lambda row, **_: rows.append(row)  # noqa: E731
    process_photos(target, step, sources, record, False, RunSummary(), Manifest(None, print), print, None)
    assert sorted(seen) == sorted([((3, 40, 40), (60, 80)), ((3, 40, 40), (70, 50)), ((3, 40, 40), (64, 64))])
    by_name = {Path(r.input).name: r for r in rows}
    assert by_name["1.png"].status == "failed" and by_name["1.png"].error == "out of test memory"
    for name in ("0.png", "2.png"):
        row = by_name[name]
        assert (row.status, row.model, row.weights_sha256) == ("done", "a-step", "ab" * 32)
        assert (np.asarray(Image.open(row.outputs[0])) == 200).all()
    assert not (out / "1.png").exists()
