"""``bgcut paste``: synthetic "cut, paste and learn" datasets from cut-outs (Dwibedi et al., ICCV 2017).

sources (cut-outs with classes, backgrounds) -> compose (one picture, exact visible masks)
-> annotations (COCO RLE, YOLO polygons) -> run (workers, resume, dataset files).
"""

from .compose import Composition, Placed, compose
from .options import BLENDS, PasteOptions
from .run import PasteSummary, paste_dataset

__all__ = ["BLENDS", "Composition", "PasteOptions", "PasteSummary", "Placed", "compose", "paste_dataset"]
