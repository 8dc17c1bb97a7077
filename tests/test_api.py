"""The Python API on in-memory images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bgcut.images
from bgcut import OutputOptions, PostOptions, Remover, RunOptions, remove_backgrounds
from bgcut.errors import ImageError, ImageTooLargeError, UsageError

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
    API's raw mask is the engine's --format mask output, byte for byte (the embedded fast model)."""
    sizes = [(90, 70), (64, 64), (120, 50)]
    arrays = [square_image(s, (10, 12, 40, 45)) for s in sizes]
    for i, arr in enumerate(arrays):
        Image.fromarray(arr).save(tmp_path / f"in{i}.png")
    summary = remove_backgrounds(
        [str(tmp_path / f"in{i}.png") for i in range(3)],
        tmp_path / "out",
        RunOptions(model="bgcut-lite", device="cpu", workers=0),
        OutputOptions(format="mask"),
    )
    assert summary.done == 3
    api = Remover(model="bgcut-lite", device="cpu").masks(arrays)
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


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_plain_script_without_main_guard(tmp_path: Path, luma_weights: Path, how: str) -> None:
    """A script with no ``if __name__ == "__main__":`` guard, run as a file or piped into
    ``python -``: the decode workers must not run it again (each would start a run of its own)."""
    from .conftest import run_plain_script

    (tmp_path / "photos").mkdir()
    for i in range(20):
        Image.fromarray(square_image((90, 70), (10 + i, 12, 50, 45))).save(tmp_path / "photos" / f"p{i:02d}.png")
    script = (
        "import bgcut\n"
        f"s = bgcut.remove_backgrounds([{str(tmp_path / 'photos')!r}], {str(tmp_path / 'out')!r}, "
        f"bgcut.RunOptions(weights={str(luma_weights)!r}, workers=2, device='cpu'), progress=False)\n"
        "print(s.done, s.failed)\n"
    )
    result = run_plain_script(script, how, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["20", "0"], result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "died" not in result.stderr


def test_one_output_file_takes_its_format_from_its_name(tmp_path: Path, luma_weights: Path) -> None:
    """``remove_backgrounds([photo], "cut.webp")`` writes a WebP, as ``bgcut photo -o cut.webp``
    does; a format given with another name is still the one usage error the CLI gives."""
    Image.fromarray(square_image((80, 60), (20, 10, 60, 50))).save(tmp_path / "photo.png")
    run = RunOptions(weights=str(luma_weights), device="cpu")
    for name, kind in (("cut.webp", "WEBP"), ("cut.jpg", "JPEG"), ("cut.png", "PNG")):
        summary = remove_backgrounds([str(tmp_path / "photo.png")], tmp_path / name, run, progress=False)
        assert (summary.done, summary.failed) == (1, 0)
        with Image.open(tmp_path / name) as im:
            assert im.format == kind
    assert OutputOptions().format is None and OutputOptions().spec.name == "png-alpha"
    with pytest.raises(UsageError, match="--format mask writes .png files; name the output cut.png"):
        remove_backgrounds([str(tmp_path / "photo.png")], tmp_path / "cut.webp", run, OutputOptions(format="mask"))


def test_an_image_that_cannot_be_read_is_named_in_the_error(tmp_path: Path, luma_weights: Path) -> None:
    """As the engine names a file: the path, or the place in a batch; the error class is kept."""
    remover = Remover(weights=luma_weights)
    missing = tmp_path / "nothere.jpg"
    with pytest.raises(ImageError, match=r"^.*nothere\.jpg: no such file$"):
        remover.remove(missing)
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ImageError, match=r"^image 2 of 2: array of shape \(3, 3, 7\) is not an image"):
        remover.remove_batch([good, np.zeros((3, 3, 7), np.uint8)])
    with pytest.raises(ImageError, match=r"^array of shape \(3, 3, 7\) is not an image"):
        remover.remove(np.zeros((3, 3, 7), np.uint8))
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    with pytest.MonkeyPatch.context() as mp, pytest.raises(ImageTooLargeError, match=r"big\.png: 300x300") as err:
        mp.setattr(bgcut.images.load_image, "__defaults__", (1000,))  # a 1000-pixel limit
        remover.remove(big)
    assert (err.value.width, err.value.height) == (300, 300)
