"""What an engine is given of the loaded model: the facts its outputs record, the input it
takes, and its batch step as a function.

``bgcut/run.py`` loads the model once (``infer.Predictor``) and hands each engine a
``ModelStep`` (``Predictor.step``), or Ray's a ``ClusterModel``. The engines (photos, clips,
Ray) import nothing of the model stage: the step is the one place where their inputs meet the
model, so the model is loaded, placed and batched in ``infer`` alone, and an engine runs on any
step it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DeviceMemoryError

if TYPE_CHECKING:
    import torch

# Model inputs (3 x S x S uint8, ``images.model_input``) and each photo's (height, width) -> each
# photo's uint8 mask at its own size, in order, as soon as it is made; a photo that does not fit
# in device memory even alone is handed on as that error in its mask's place.
MaskStep = Callable[[Sequence[np.ndarray], Sequence[tuple[int, int]]], Iterator[np.ndarray | DeviceMemoryError]]


@dataclass(frozen=True)
class ModelFacts:
    """What a written output records of the model that made its mask (the manifest row), and the
    model's input size, which scales the edge refinement."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelStep:
    """One loaded model as an engine sees it: ``masks`` in forward passes of ``batch_size``,
    on inputs resized to ``facts.size`` with ``interpolation``."""

    facts: ModelFacts
    batch_size: int
    interpolation: str
    masks: MaskStep

    @property
    def size(self) -> int:
        """The model's square input, in pixels."""
        return self.facts.size


@dataclass(frozen=True)
class ClusterModel:
    """The model as the Ray engine is handed it (``infer.cluster_model``): the driver plans the
    tasks from the model's input contract and the cluster's devices, and each actor loads the
    model on its own machine. Both are plain functions, so that they pickle to the actors."""

    interpolation: str
    plan: Callable[[torch.device], tuple[int, int]]  # a device -> (input size, batch size)
    load: Callable[[], ModelStep]  # on an actor: the model on that machine's device
