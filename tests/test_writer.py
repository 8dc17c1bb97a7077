"""PNG writing: fpng for colour, libpng for grey masks and without fpng; the pixels never differ."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bgcut.config import OutputOptions
from bgcut.errors import UsageError
from bgcut.pipeline import writer


def _cutout(shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    if len(shape) == 3 and shape[2] == 4:
        image[:10, :, 3] = 0  # transparent rows, as a cut-out has
        image[:10, :, :3] = 0
    return image


def _decoded(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("shape", [(37, 53, 4), (37, 53, 3), (37, 53)])
@pytest.mark.parametrize("png", ["fast", "small"])
def test_every_png_mode_writes_the_exact_pixels(shape: tuple[int, ...], png: str) -> None:
    image = _cutout(shape)
    data = writer.encode(image, ".png", png)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(_decoded(data), image)


def test_fast_uses_fpng_for_colour_and_libpng_for_grey(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fpng")
    calls: list[tuple[int, ...]] = []
    real = writer._FPNG.from_ndarray

    def spy(a: np.ndarray) -> bytes:
        calls.append(a.shape)
        return real(a)

    monkeypatch.setattr(writer._FPNG, "from_ndarray", spy)
    writer.encode(_cutout((20, 30, 4)), ".png", "fast")
    writer.encode(_cutout((20, 30, 3)), ".png", "fast")
    writer.encode(_cutout((20, 30)), ".png", "fast")  # grey: fpng does not write it
    writer.encode(_cutout((20, 30, 4)), ".png", "small")
    writer.encode(_cutout((20, 30, 4))[:, ::2], ".png", "fast")  # a strided view is made contiguous
    assert calls == [(20, 30, 4), (20, 30, 3), (20, 15, 4)]


def test_without_fpng_the_same_pixels_come_from_libpng(monkeypatch: pytest.MonkeyPatch) -> None:
    image = _cutout((41, 29, 4))
    with_fpng = writer.encode(image, ".png", "fast")
    monkeypatch.setattr(writer, "_FPNG", None)
    without = writer.encode(image, ".png", "fast")
    assert np.array_equal(_decoded(without), _decoded(with_fpng))
    assert np.array_equal(_decoded(without), image)


def test_an_unknown_png_mode_is_refused() -> None:
    with pytest.raises(UsageError, match=r"--png 'huge': expected one of fast, small"):
        OutputOptions(png="huge")
