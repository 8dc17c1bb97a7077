"""Out of device memory never ends a run: a batch is halved and retried, down to one image.

The device's memory cannot run out on a CPU test machine, so the forward pass is wrapped to raise
torch's own ``OutOfMemoryError`` the way CUDA does: for any batch over a size, and for any batch
holding one particular (all-white) image, which then cannot fit even alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bgcut import Remover
from bgcut.config import OutputOptions, RunOptions
from bgcut.errors import DeviceMemoryError
from bgcut.pipeline.infer import Predictor
from bgcut.run import remove_backgrounds

from .conftest import square_image

FITS = 2  # the largest batch the pretend device holds


@pytest.fixture
def small_device(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Batches that reached the model, by size (after padding)."""
    real = Predictor.__call__
    seen: list[int] = []

    def forward(self: Predictor, batch: torch.Tensor) -> torch.Tensor:
        n = max(batch.shape[0], self.batch_size if self.pad else 0)
        seen.append(n)
        if n > FITS or any(bool((img == 255).all()) for img in batch):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, batch)

    monkeypatch.setattr(Predictor, "__call__", forward)
    return seen


def test_a_run_lowers_the_batch_and_fails_only_the_image_that_never_fits(
    tmp_path: Path, luma_weights: Path, small_device: list[int]
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(7):
        Image.fromarray(square_image((80, 60), (10 + i, 10, 50, 40))).save(src / f"img{i}.png")
    Image.fromarray(np.full((60, 80, 3), 255, np.uint8)).save(src / "white.png")  # too big even alone
    said: list[str] = []
    run = RunOptions(weights=str(luma_weights), workers=0, batch_size=8)
    summary = remove_backgrounds([str(src)], tmp_path / "out", run, OutputOptions(format="mask"), log=said.append)
    rows = {Path(r.input).name: r for r in summary.rows}
    assert (summary.done, summary.failed) == (7, 1) and not summary.ok
    assert rows["white.png"].error == "out of cpu memory even alone at 64 px (try a smaller --size, or --device cpu)"
    assert "bgcut: warning: out of cpu memory at batch size 8; lowered to 4" in said
    assert "bgcut: warning: out of cpu memory at batch size 4; lowered to 2" in said
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"img{i}.png" for i in range(7)]
    # The masks are those of a device with room to spare.
    small_device.clear()
    reference = remove_backgrounds(
        [str(src / f"img{i}.png") for i in range(7)],
        tmp_path / "ref",
        RunOptions(weights=str(luma_weights), workers=0, batch_size=2),
        OutputOptions(format="mask"),
        log=lambda _m: None,
    )
    assert reference.ok
    for i in range(7):
        assert (tmp_path / "out" / f"img{i}.png").read_bytes() == (tmp_path / "ref" / f"img{i}.png").read_bytes()


def test_the_api_raises_for_the_image_that_never_fits(luma_weights: Path, small_device: list[int]) -> None:
    remover = Remover(weights=str(luma_weights), device="cpu")
    ok = [square_image((80, 60), (10, 10, 50, 40))] * 5
    masks = remover.masks(ok)  # 5 at a batch of 8: halved until they fit, all returned
    assert len(masks) == 5 and all(m.shape == (60, 80) for m in masks)
    with pytest.raises(DeviceMemoryError, match="even alone"):
        remover.masks([np.full((60, 80, 3), 255, np.uint8)])


def test_the_server_answers_413_for_the_image_that_never_fits(luma_weights: Path, small_device: list[int]) -> None:
    import io

    pytest.importorskip("fastapi")
    from bgcut.serve.options import ServeOptions

    from .test_serve import running

    def png(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        return buf.getvalue()

    predictor = Predictor.from_options(RunOptions(weights=str(luma_weights), device="cpu"), pad=False)
    with running(ServeOptions(max_wait_ms=2), predictor) as client:
        fine = client.post("/remove", content=png(square_image((80, 60), (10, 10, 50, 40))))
        assert fine.status_code == 200
        huge = client.post("/remove", content=png(np.full((60, 80, 3), 255, np.uint8)))
        assert huge.status_code == 413
        assert huge.json() == {
            "error": "too large for the model's device: out of cpu memory even alone at 64 px "
            "(try a smaller --size, or --device cpu)"
        }
