"""The Python API for single images: ``remove(image)`` and the reusable ``Remover``.

Folders and file lists go through ``bgcut.remove_backgrounds`` (the batch engine); these
are for code that already holds images in memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

from .config import OutputOptions, PostOptions, RunOptions
from .errors import ImageError
from .images import Decoded, load_image
from .pipeline.infer import Predictor
from .pipeline.matting import require_pymatting
from .pipeline.postprocess import render
from .pipeline.target import load_background

ImageLike = Image.Image | np.ndarray | str | os.PathLike


class Remover:
    """A loaded model that cuts out images in batches; build once, call many times.

    >>> remover = Remover()                       # the embedded default model, on the best device
    >>> cut = remover.remove("photo.jpg")         # PIL.Image, RGBA
    >>> masks = remover.masks([img1, img2])       # uint8 numpy masks, one per image

    Raises (at construction): UnknownModelError, WeightsUnavailableError, ChecksumError,
    WeightsMismatchError, UsageError (device or precision).
    """

    def __init__(
        self,
        model: str | None = None,
        weights: str | os.PathLike | None = None,
        device: str = "auto",
        precision: str = "auto",
        size: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        # The engines' own options object and set-up: the same checks, device and batch size.
        run = RunOptions(
            model=model,
            weights=None if weights is None else os.fspath(weights),
            device=device,
            precision=precision,
            size=size,
            batch_size=batch_size,
        )
        self.predictor = Predictor.from_options(run)
        self.model_name = self.predictor.model_name
        self.batch_size = self.predictor.batch_size

    def _decode(self, images: Sequence[ImageLike]) -> list[Decoded]:
        decoded = []
        for i, image in enumerate(images):
            try:
                decoded.append(load_image(image))
            except ImageError as e:
                # Named as the engine names a file ("photo.jpg: no such file"); the same class,
                # so a caller's ``except ImageTooLargeError`` still holds.
                if (name := _name(image, i, len(images))) is not None:
                    e.args = (f"{name}: {e}",)
                raise
        return decoded

    def _masks(self, decoded: list[Decoded]) -> list[np.ndarray]:
        inputs = [self.predictor.prepare(d.rgb) for d in decoded]
        return list(self.predictor.masks(inputs, [d.rgb.shape[:2] for d in decoded]))

    def masks(self, images: Sequence[ImageLike]) -> list[np.ndarray]:
        """Raw soft masks (H x W uint8, 255 = foreground), before any post-processing."""
        return self._masks(self._decode(images))

    def remove_batch(
        self,
        images: Sequence[ImageLike],
        *,
        format: str = "png-alpha",  # noqa: A002 - mirrors the CLI's --format
        bg: str | None = None,
        post: PostOptions | None = None,
        margin: str = "0",
    ) -> list[Image.Image]:
        """Cut-outs as PIL images.

        RGBA for ``png-alpha``, ``webp`` and ``crop``; L for ``mask``; RGB for ``jpg`` or with any ``bg``.
        """
        post = post or PostOptions()
        out = OutputOptions(format=format, bg=bg, margin=margin)  # checked here, before any work
        if post.refine == "matting":
            require_pymatting()
        background = load_background(bg) if bg else None
        decoded = self._decode(images)
        results = []
        for d, m in zip(decoded, self._masks(decoded), strict=True):
            r = render(d.rgb, d.alpha, m, post, out, background, self.predictor.size)
            if not r.images:  # a crop with no foreground: an empty, fully transparent image
                results.append(Image.new("RGBA", (0, 0)))
            else:
                results.append(Image.fromarray(r.images[0][1]))
        return results

    def remove(self, image: ImageLike, **kwargs: object) -> Image.Image:
        """One image; the keyword arguments are those of ``remove_batch``."""
        return self.remove_batch([image], **kwargs)[0]  # type: ignore[arg-type]


def _name(image: ImageLike, index: int, count: int) -> str | None:
    """How an error names one input: its path, or its place in a batch (a lone image in memory
    needs no name)."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    return f"image {index + 1} of {count}" if count > 1 else None


@lru_cache(maxsize=2)
def _cached_remover(model: str | None, device: str) -> Remover:
    return Remover(model=model, device=device)


def remove(image: ImageLike, *, model: str | None = None, device: str = "auto", **kwargs: object) -> Image.Image:
    """Cut the background out of one image (PIL image, numpy array or path) -> PIL image.

    The model is loaded on first use and kept for later calls with the same model/device.
    """
    return _cached_remover(model, device).remove(image, **kwargs)
