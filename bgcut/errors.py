"""bgcut's exceptions.

Every error also subclasses a standard-library type so callers can catch broadly
(``except ValueError``) or narrowly (``except UnknownModelError``). Messages are one
line and say what to do next; the CLI prints them verbatim.
"""

from __future__ import annotations


class BgcutError(Exception):
    """Base of every error bgcut raises on purpose."""


class UnknownModelError(BgcutError, ValueError):
    """The model name is not in the registry."""


class WeightsUnavailableError(BgcutError, FileNotFoundError):
    """The weights file cannot be found locally and cannot be downloaded."""


class ChecksumError(BgcutError, ValueError):
    """A weights file does not have the sha256 its registry entry promises."""


class WeightsMismatchError(BgcutError, ValueError):
    """A weights file's tensors do not fit the architecture."""


class ImageError(BgcutError, ValueError):
    """One input image cannot be read or decoded; the reason is in the message."""


class ImageTooLargeError(ImageError):
    """An image with more pixels than the limit allows (refused from its header, before decoding)."""

    def __init__(self, width: int, height: int, limit: int) -> None:
        super().__init__(f"{width}x{height} = {width * height} pixels is over the limit of {limit} (--max-pixels)")
        self.width, self.height, self.limit = width, height, limit


class DeviceMemoryError(ImageError):
    """One image does not fit in the device's memory even in a batch of its own."""


class VideoError(ImageError):
    """One input video cannot be read, decoded or written; the reason is in the message."""


class StorageError(BgcutError, OSError):
    """A bucket or remote folder cannot be listed or written (credentials, permissions, network)."""


class IncompleteEvaluationError(BgcutError, ValueError):
    """``bgcut eval``: some ground-truth masks have no prediction to score, or cannot be read."""


class UsageError(BgcutError, ValueError):
    """Options that do not make sense together (the CLI exits with status 2)."""
