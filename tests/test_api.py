"""The Python API on in-memory images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bgcut import Remover

from .conftest import square_image


def test_remover_on_pil_array_and_path(tmp_path: Path, luma_weights: Path) -> None:
    remover = Remover(weights=luma_weights, device="cpu")
    arr = square_image()
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    outs = remover.remove_batch([Image.fromarray(arr), arr, str(path)])
    for out in outs:
        assert out.mode == "RGBA" and out.size == (80, 60)
        a = np.asarray(out)[..., 3]
        assert a[30, 40] == 255 and a[0, 0] == 0
    masks = remover.masks([arr])
    assert masks[0].shape == (60, 80) and masks[0].dtype == np.uint8
    assert remover.remove(arr, format="mask").mode == "L"
    assert remover.remove(arr, format="jpg", bg="red").getpixel((0, 0)) == (255, 0, 0)
