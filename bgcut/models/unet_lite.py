"""LiteUNet: the compact default architecture.

A MobileNetV2-style encoder (inverted residual blocks: cheap depthwise 3x3 convolutions,
few channels at high resolution) feeding a light UNet decoder with skip connections.
The decoder predicts at 1/2 resolution and the mask is upsampled bilinearly: the full
resolution stage would cost more than the rest of the network for a barely sharper
edge at 320 px, and the final mask is upsampled to the photo's size anyway.
In training mode it also returns deep-supervision logits from the coarser decoder
stages, which speeds up convergence from scratch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedCfg
from ._registry import register_arch, register_model


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            ConvBNAct(cin, hidden, 1),
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            ConvBNAct(hidden, cout, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class SepConv(nn.Sequential):
    """Depthwise-separable 3x3 convolution (depthwise then pointwise)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(ConvBNAct(cin, cin, 3, groups=cin), ConvBNAct(cin, cout, 1))


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.fuse = ConvBNAct(cin + cskip, cout, 1)
        self.refine = SepConv(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(self.fuse(torch.cat([x, skip], dim=1)))


class GlobalContext(nn.Module):
    """Adds image-level context (global average pool) to the deepest features.

    Salient-object masks depend on what the whole picture is about; at 1/32 resolution a
    320 px input has a 10x10 grid whose receptive field does not cover everything.
    """

    def __init__(self, c: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(x.mean(dim=(2, 3), keepdim=True))


class UNetDecoding(nn.Module):
    """The light UNet decoder both compact architectures share (``unet_lite``, ``effnet_unet``):
    image-level context on the deepest features, a ``DecoderBlock`` per coarser scale, a head at
    the finest decoded scale, and deep-supervision heads on the three coarser ones (training only).
    Subclasses build their encoder, then call ``_build_decoder``; the attribute names are the
    weight files' keys (``context.*``, ``decoder.N.*``, ``head.*``, ``side_heads.N.*``)."""

    def _build_decoder(self, channels: Sequence[int], decoder_widths: Sequence[int]) -> None:
        """``channels``: the encoder's feature maps, finest first (five of them)."""
        self.context = GlobalContext(channels[4])
        dec = []
        cin = channels[4]
        for skip, cout in zip(reversed(channels[:4]), decoder_widths, strict=True):
            dec.append(DecoderBlock(cin, skip, cout))
            cin = cout
        self.decoder = nn.ModuleList(dec)
        self.head = nn.Conv2d(decoder_widths[-1], 1, 3, padding=1)
        self.side_heads = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in decoder_widths[:-1])

    def _decode(self, feats: list[torch.Tensor], size: torch.Size) -> torch.Tensor | list[torch.Tensor]:
        y = self.context(feats[-1])
        outs = []
        for block, skip in zip(self.decoder, reversed(feats[:-1]), strict=True):
            y = block(y, skip)
            outs.append(y)
        main = F.interpolate(self.head(y), size=size, mode="bilinear", align_corners=False)
        if not self.training:
            return main
        sides = [
            F.interpolate(h(o), size=size, mode="bilinear", align_corners=False)
            for h, o in zip(self.side_heads, outs[:-1], strict=True)
        ]
        return [main, *sides]


@register_arch("unet_lite")
class LiteUNet(UNetDecoding):
    def __init__(
        self,
        widths: Sequence[int] = (16, 24, 40, 80, 160),
        depths: Sequence[int] = (2, 2, 3, 3),
        decoder_widths: Sequence[int] = (80, 48, 32, 24),
        expand: int = 4,
    ) -> None:
        super().__init__()
        if len(widths) != 5 or len(depths) != 4 or len(decoder_widths) != 4:
            raise ValueError("unet_lite needs 5 widths, 4 depths and 4 decoder widths")
        self.stem = ConvBNAct(3, widths[0], 3, 2)
        stages = []
        for i, depth in enumerate(depths):
            cin, cout = widths[i], widths[i + 1]
            blocks = [InvertedResidual(cin, cout, 2, expand)]
            blocks += [InvertedResidual(cout, cout, 1, expand) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self._build_decoder(widths, decoder_widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return self._decode(feats, x.shape[-2:])


register_model(
    PretrainedCfg(
        name="bgcut-lite",
        arch="unet_lite",
        arch_args={},
        input_size=256,
        hf_repo_id="bgcut/bgcut-lite",
        hf_revision="v0.1.0",
        sha256="d08f214e29a49150055824bf70e88f69d6934abfa22e68859c962b72db8cf884",
        license="apache-2.0",
        embedded="bgcut-lite.safetensors",
        description="compact default (0.74M params), MobileNetV2-style encoder + light UNet decoder",
    )
)
