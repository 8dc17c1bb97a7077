"""How much to doubt a cut-out, from its mask alone: a number from 0 to 1 for the manifest.

A dataset of thousands of cut-outs cannot be checked by eye, and the bad ones (a kept wall, a
crowd taken for the subject, a lost limb) look alike in their masks:

- ``unsure``: how much of the mask is neither clearly foreground nor clearly background, as a
  share of everything the mask touches (a model that hesitates leaves ghosts of the background);
- ``frame``: how much of the picture's border the foreground covers (a kept wall or floor runs
  off the frame on several sides; most subjects touch one side at most);
- ``pieces``: how much of the foreground lies outside its largest piece (a crowd, debris);
- ``extent``: how far the foreground's share of the picture is from the usual range.

``doubt`` weighs them (``WEIGHTS``, fitted on labelled sets by ``bench/doubt_fit.py`` for the
Spearman correlation of ``doubt`` with each image's true MAE: about 0.5 on davis16 and human-seg,
numbers in bench/RESULTS.md). No ground truth is needed at run time, and it costs about a
millisecond a photo (measured on a copy 256 px on its longer side).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SOFT_LOW, SOFT_HIGH = 26, 229  # alpha levels between these are "unsure" (0.1 to 0.9)
SOLID = 128  # alpha at or above this is foreground, for the frame, the pieces and the extent
USUAL_EXTENT = (0.02, 0.6)  # a subject usually covers this share of its picture
MEASURE_SIDE = 256  # measured on a copy this size on its longer side: the shares do not need more
# Fitted by bench/doubt_fit.py on bgcut-s's masks of davis16 and human-seg, checked on
# isnet-general's (bench/RESULTS.md). ``extent`` got no weight: a small subject has a small MAE
# however badly it is cut, so MAE cannot reward it; it is still reported, for empty or full masks.
WEIGHTS = {"unsure": 1.0, "frame": 1.0, "pieces": 0.25, "extent": 0.0}


@dataclass(frozen=True)
class Doubt:
    doubt: float
    unsure: float
    frame: float
    pieces: float
    extent: float

    def parts(self) -> dict[str, float]:
        return {"unsure": self.unsure, "frame": self.frame, "pieces": self.pieces, "extent": self.extent}


def _small(alpha: np.ndarray) -> np.ndarray:
    h, w = alpha.shape
    scale = MEASURE_SIDE / max(h, w)
    if scale >= 1:
        return alpha
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)


def measure(alpha: np.ndarray) -> Doubt:
    """The doubt of one final alpha (H x W uint8) and the measures it is made of, each in [0, 1]."""
    a = _small(alpha)
    touched = a > SOFT_LOW
    n_touched = int(touched.sum())
    unsure = float((touched & (a < SOFT_HIGH)).sum() / n_touched) if n_touched else 0.0
    solid = (a >= SOLID).astype(np.uint8)
    border = np.concatenate([solid[0], solid[-1], solid[1:-1, 0], solid[1:-1, -1]])
    frame = float(border.mean()) if border.size else 0.0
    stats = cv2.connectedComponentsWithStats(solid, connectivity=8)[2]
    areas = stats[1:, cv2.CC_STAT_AREA]
    total = int(areas.sum())
    pieces = float(1.0 - areas.max() / total) if total else 0.0
    share = total / solid.size
    low, high = USUAL_EXTENT
    if total == 0:
        extent = 1.0  # nothing found at all
    elif share < low:
        extent = 1.0 - share / low
    elif share > high:
        extent = (share - high) / (1.0 - high)
    else:
        extent = 0.0
    parts = {"unsure": unsure, "frame": frame, "pieces": pieces, "extent": extent}
    score = sum(WEIGHTS[k] * v for k, v in parts.items()) / sum(WEIGHTS.values())
    return Doubt(round(min(1.0, max(0.0, score)), 4), *(round(v, 4) for v in parts.values()))
