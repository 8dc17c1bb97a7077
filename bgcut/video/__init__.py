"""Video: a clip is a batch source like a folder of photos.

``decode`` reads frames (upright, in order, with their timestamps) in a thread of its own;
the run's one model makes their masks in batches (the ``ModelStep`` it is handed);
``stability`` can steady the masks from frame to frame; ``postprocess.render`` turns each frame
and mask into pixels, exactly as for a photo; ``encode`` writes them as a video (or numbered
images) under a temporary name and renames it when the last frame is in, copying the input's
audio where the container holds it. ``run.cut_video`` wires these for one input,
``run.process_videos`` takes a run's clips in turn; ``camera`` runs the same steps live.

PyAV (FFmpeg in its wheel) is an extra: ``pip install 'bgcut[video]'``. Nothing here
imports it before a video is actually read or written.
"""

from __future__ import annotations

from ..pipeline.reader import VIDEO_EXTENSIONS, is_video

__all__ = ["VIDEO_EXTENSIONS", "is_video"]
