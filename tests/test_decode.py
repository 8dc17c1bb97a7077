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
from bgcut.images import load_image, open_image
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
    assert d.warning and "first frame" in d.warning
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
    assert ok.error is None and tuple(ok.model_input.shape) == (3, 16, 16) and tuple(ok.rgb.shape) == (8, 10, 3)
    assert err.model_input is None and err.error == "empty file (0 bytes)"


def test_decoding_does_not_import_torch() -> None:
    # bgcut paste workers decode through this module; torch would cost each of them a second or more.
    code = "import sys, bgcut.images, bgcut.paste.sources; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
