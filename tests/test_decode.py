"""Input normalisation: every mode becomes RGB uint8 (+ alpha); broken files give reasons."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgcut.errors import ImageError
from bgcut.images import decoder_noise, load_image, open_image
from bgcut.pipeline.dataset import DecodeDataset


def test_grayscale_becomes_rgb(tmp_path: Path) -> None:
    p = tmp_path / "g.png"
    Image.fromarray(np.full((4, 5), 77, np.uint8), "L").save(p)
    d = open_image(p)
    assert d.rgb.shape == (4, 5, 3) and (d.rgb == 77).all() and d.alpha is None


def test_cmyk_jpeg_is_converted(tmp_path: Path) -> None:
    p = tmp_path / "c.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(p, quality=100)  # pure red in CMYK
    d = open_image(p)
    r, g, b = d.rgb[4, 4].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    p = tmp_path / "deep.png"
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(p)
    d = open_image(p)
    assert d.rgb[0, :, 0].tolist() == [0, 128, 255]


def test_palette_with_transparency_keeps_alpha(tmp_path: Path) -> None:
    p = tmp_path / "pal.png"
    im = Image.new("P", (4, 4), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putpixel((0, 0), 1)
    im.info["transparency"] = 1
    im.save(p, transparency=1)
    d = open_image(p)
    assert d.alpha is not None and d.alpha[0, 0] == 0 and d.alpha[1, 1] == 255
    assert d.rgb[1, 1].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    p = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    picture = np.zeros((20, 40, 3), np.uint8)
    picture[:8, :8] = (255, 0, 0)  # top left as stored: top right once turned upright
    Image.fromarray(picture).save(p, exif=exif.tobytes(), quality=100)
    rgb = open_image(p).rgb
    assert rgb.shape[:2] == (40, 20) and rgb[2, -3, 0] > 200 and rgb[2, 2, 0] < 50
    # A caller's own PIL image is turned in the decoded copy, never in place.
    mine = Image.open(p)
    assert open_image(mine).rgb.shape[:2] == (40, 20)
    assert mine.size == (40, 20) and mine.getexif().get(0x0112) == 6


def test_animated_gif_uses_first_frame_with_warning(tmp_path: Path) -> None:
    p = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 255, 255), (0, 0, 0))]
    frames[0].save(p, save_all=True, append_images=frames[1:])
    d = open_image(p)
    assert d.warning == "animated image with 2 frames; only the first frame is used"
    assert d.rgb.mean() > 200


def test_multi_page_tiff_uses_first_page_and_says_pages(tmp_path: Path) -> None:
    p = tmp_path / "scan.tiff"
    pages = [Image.new("RGB", (6, 6), c) for c in ((255, 255, 255), (0, 0, 0), (0, 0, 0))]
    pages[0].save(p, save_all=True, append_images=pages[1:])
    d = open_image(p)
    assert d.warning == "TIFF with 3 pages; only the first page is used"
    assert d.rgb.mean() > 200


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"this is not a picture\n", "not an image"),
    ],
)
def test_bad_files_have_reasons(tmp_path: Path, content: bytes, reason: str) -> None:
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        open_image(p)


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    p = tmp_path / "trunc.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated"):
        open_image(p)


def test_pixel_limit(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.new("L", (100, 100)).save(p)
    with pytest.raises(ImageError, match="10000 pixels is over the limit of 9999"):
        open_image(p, max_pixels=9999)


def test_a_pipe_is_refused_by_name_without_waiting_for_it(tmp_path: Path) -> None:
    """A pipe (`bgcut <(curl ...)`) has no size: it was reported as an empty file."""
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # nothing ever writes to it: opening it for reading would wait forever
    with pytest.raises(ImageError) as caught:
        open_image(fifo)
    assert str(caught.value) == "not a regular file (a pipe, socket or device): pipe one image into `bgcut -` instead"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "secret.png"
    Image.new("L", (4, 4)).save(p)
    p.chmod(0)
    if os.access(p, os.R_OK):  # running as root: permissions do not stop us, so simulate the OS refusing
        real_open = Image.open

        def refuse(fp: object, *a: object, **k: object) -> Image.Image:
            if Path(str(fp)) == p:
                raise PermissionError(13, "Permission denied")
            return real_open(fp, *a, **k)

        monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(ImageError, match="permission denied"):
        open_image(p)


def test_array_inputs() -> None:
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 3] = 9
    d = load_image(rgba)
    assert d.rgb.shape == (3, 4, 3) and (d.alpha == 9).all()
    assert load_image(np.ones((2, 2), np.float32)).rgb.max() == 255


def test_dataset_turns_errors_into_records(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (10, 8), "white").save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    ds = DecodeDataset([good, bad], size=16, max_pixels=10**6)
    ok, err = ds[0], ds[1]
    assert ok.error is None and ok.model_input.shape == (3, 16, 16) and ok.rgb.shape == (8, 10, 3)
    assert err.model_input is None and err.error == "empty file (0 bytes)"


def test_decoding_does_not_import_torch() -> None:
    # bgcut paste workers decode through this module; torch would cost each of them a second or more.
    code = "import sys, bgcut.images, bgcut.paste.sources; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def _jpeg(tmp_path: Path, name: str, arr: np.ndarray, **save: object) -> Path:
    p = tmp_path / name
    Image.fromarray(arr).save(p, "JPEG", quality=90, **save)
    return p


def _both(p: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """PIL's pixels, the fast path's pixels, how often OpenCV decoded, and what leaked to the outer capture."""
    import cv2

    calls = []
    real = cv2.imdecode

    def counted(*a: object) -> object:
        calls.append(1)
        return real(*a)

    monkeypatch.setattr(cv2, "imdecode", counted)
    slow = open_image(p).rgb
    assert not calls  # PIL alone unless asked
    with decoder_noise() as noise:
        fast = open_image(p, fast_jpeg=True).rgb
    return slow, fast, len(calls), noise


def test_opencv_decodes_jpegs_to_pils_pixels_in_every_orientation(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)
    arr[:6, :10] = 255  # an asymmetric corner, so each orientation shows
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        p = _jpeg(tmp_path, f"o{orientation}.jpg", arr, exif=exif.tobytes())
        slow, fast, decoded, noise = _both(p, monkeypatch)
        assert decoded == 1 and not noise, orientation
        assert fast.shape == slow.shape and np.array_equal(fast, slow), orientation
        assert fast.flags["C_CONTIGUOUS"]
    grey = _jpeg(tmp_path, "grey.jpg", rng.integers(0, 255, (16, 12), dtype=np.uint8))
    slow, fast, decoded, _ = _both(grey, monkeypatch)
    assert decoded == 1 and fast.shape == (16, 12, 3) and np.array_equal(fast, slow)
    prog = _jpeg(tmp_path, "prog.jpg", arr, progressive=True, subsampling=0)
    slow, fast, decoded, _ = _both(prog, monkeypatch)
    assert decoded == 1 and np.array_equal(fast, slow)


def test_a_jpeg_opencv_complains_about_is_decoded_by_pil(tmp_path: Path, monkeypatch) -> None:
    """A truncated JPEG, which OpenCV fills in grey with a warning, still fails as PIL fails it;
    a JPEG with junk before its end marker, which PIL decodes silently, keeps PIL's silence."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(data[: len(data) // 2])
    with decoder_noise() as noise, pytest.raises(ImageError, match="truncated"):
        open_image(trunc, fast_jpeg=True)
    assert noise == []
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(data[:-2] + b"\x00" * 22 + data[-2:])
    slow, fast, decoded, noise = _both(junk, monkeypatch)
    assert decoded == 1 and noise == [] and np.array_equal(fast, slow)


def test_cmyk_and_png_are_left_to_pil(tmp_path: Path, monkeypatch) -> None:
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk, quality=100)
    png = tmp_path / "p.png"
    Image.new("RGB", (8, 8), "red").save(png)
    for p in (cmyk, png):
        slow, fast, decoded, _ = _both(p, monkeypatch)
        assert decoded == 0 and np.array_equal(fast, slow)


def test_nested_decoder_noise_keeps_each_blocks_own_lines() -> None:
    with decoder_noise() as outer:
        os.write(2, b"outer one\n")
        with decoder_noise() as inner:
            os.write(2, b"inner\n")
        os.write(2, b"outer two\n")
    assert inner == ["inner"] and outer == ["outer one", "outer two"]


def test_a_decoded_part_arrives_as_its_items() -> None:
    """A worker's part crosses to the main process as one in-memory file (``pack``, ``unpack``);
    each item comes back with its own arrays, errors and warnings, all views of one block."""
    from bgcut.pipeline.dataset import DecodeItem, pack, unpack

    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    items = [
        DecodeItem(0, model_input=np.full((3, 4, 4), 9, np.uint8), rgb=rgb, warning="w"),
        DecodeItem(1, error="bad"),
        DecodeItem(2, model_input=np.ones((3, 4, 4), np.uint8), rgb=rgb[::-1], alpha=np.zeros((2, 3), np.uint8)),
    ]
    fd, layouts = pack(items)
    assert fd is not None and os.fstat(fd).st_size == 2 * (48 + 18) + 6
    bare = [
        (DecodeItem(it.index, error=it.error, warning=it.warning), layout)
        for it, layout in zip(items, layouts, strict=True)
    ]
    back = unpack(fd, bare)
    with pytest.raises(OSError):
        os.fstat(fd)  # unpack closed it: the mapping alone keeps the block
    assert [(i.index, i.error, i.warning) for i in back] == [(0, None, "w"), (1, "bad", None), (2, None, None)]
    for a, b in zip(items, back, strict=True):
        for name in ("model_input", "rgb", "alpha"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or (y.flags.c_contiguous and np.array_equal(x, y)), (a.index, name)
    assert _root(back[0].rgb) is _root(back[2].alpha)  # one block, mapped once
    assert pack([DecodeItem(0, error="bad")]) == (None, [[]])
    assert unpack(None, [(DecodeItem(0, error="bad"), [])])[0].error == "bad"


def _root(a: np.ndarray) -> object:
    while isinstance(a, (np.ndarray, memoryview)):
        a = a.base if isinstance(a, np.ndarray) else a.obj
    return a


def test_decode_workers_do_not_import_torch() -> None:
    # They start while the main process imports torch: a second import on the other core would
    # hold the first photos back by a second.
    code = "import sys, bgcut.pipeline.dataset, bgcut.pipeline.loader; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
