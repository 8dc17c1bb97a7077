"""An exponential moving average of a model's weights, the copy that is validated and exported.

Averaging the last few thousand steps smooths out the noise of the final learning-rate steps
and of the last batches seen; the averaged weights usually validate better than the raw ones.
The decay ramps up from 0 (``(1 + n) / (10 + n)``), so short runs are not stuck near the
random initialisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class Ema:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        for avg, new in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(new.detach(), alpha=1 - d)
            else:  # batch-norm counters: copied, not averaged
                avg.copy_(new)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
