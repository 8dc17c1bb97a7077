"""The Python API on in-memory images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgcut import OutputOptions, PostOptions, Remover, RunOptions, remove_backgrounds
from bgcut.errors import UsageError

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


def test_api_and_engine_share_one_batch_step(tmp_path: Path) -> None:
    """Remover and the batch engine set up one Predictor the same way and run the same step: the
    API's raw mask is the engine's --format mask output, byte for byte (embedded default model)."""
    sizes = [(90, 70), (64, 64), (120, 50)]
    arrays = [square_image(s, (10, 12, 40, 45)) for s in sizes]
    for i, arr in enumerate(arrays):
        Image.fromarray(arr).save(tmp_path / f"in{i}.png")
    summary = remove_backgrounds(
        [str(tmp_path / f"in{i}.png") for i in range(3)],
        tmp_path / "out",
        RunOptions(device="cpu", workers=0),
        OutputOptions(format="mask"),
    )
    assert summary.done == 3
    api = Remover(device="cpu").masks(arrays)
    for i, mask in enumerate(api):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"in{i}.png")), mask)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "gif"}, "--format 'gif': expected one of png-alpha, mask, crop, webp, jpg"),
        ({"format": "crop", "margin": "ten"}, "--margin 'ten': expected pixels like 16 or a percentage like 10%"),
        ({"bg": "nocolour"}, "--bg 'nocolour' is neither a colour nor an image file"),
    ],
)
def test_api_options_are_one_usage_error_before_any_work(
    kwargs: dict[str, str], message: str, luma_weights: Path
) -> None:
    remover = Remover(weights=luma_weights, device="cpu")
    calls: list[int] = []
    remover._decode = lambda images: calls.append(1) or []  # type: ignore[method-assign]
    with pytest.raises(UsageError) as err:
        remover.remove_batch([square_image()], **kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message and not calls


def test_remover_checks_its_options_like_the_cli(luma_weights: Path) -> None:
    with pytest.raises(UsageError, match="--precision 'fp8': expected one of auto, fp32, fp16, bf16"):
        Remover(weights=luma_weights, precision="fp8")
    with pytest.raises(UsageError, match="--batch-size 0: must be at least 1"):
        Remover(weights=luma_weights, batch_size=0)
    with pytest.raises(UsageError, match="--keep 'biggest': expected one of all, largest"):
        PostOptions(keep="biggest")
