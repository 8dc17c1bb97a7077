"""PyAV, imported when a video is first touched, with one clear error when it is missing."""

from __future__ import annotations

from types import ModuleType

from ..errors import VideoError


def require_av() -> ModuleType:
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV: pip install 'bgcut[video]'") from None
    return av
