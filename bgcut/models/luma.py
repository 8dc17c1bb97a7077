"""``luma_test``: a two-parameter "model" whose mask is a sigmoid of brightness.

Not for photos. It makes the whole pipeline testable with exact expectations (a white
square on black gives a known mask) and runs in microseconds; like timm's ``test_*``
models it is built from real safetensors weights through the normal loading path.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_arch


@register_arch("luma_test")
class LumaTest(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(40.0))
        self.offset = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x.mean(dim=1, keepdim=True) - self.offset)
