"""The U2-Net family: U2-Net and U2-Net-p (Qin et al., Pattern Recognition 2020) and IS-Net
(Qin et al., ECCV 2022, "Highly Accurate Dichotomous Image Segmentation").

Written from the papers' descriptions. Module and parameter names follow the published
checkpoints (``stage1.rebnconvin.conv_s1.weight``, ``side1.bias``, ...) so that public state
dicts load without renaming. Each network returns the logits of its mask output; the
sigmoid (and any per-image rescaling) is the model config's ``output`` rule.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedCfg
from ._registry import register_arch, register_model


def _upsample_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)


class REBNCONV(nn.Module):
    """3x3 convolution (optionally dilated) + batch norm + ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dirate: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of height ``height`` (RSU-7 ... RSU-4): a small U-Net inside a residual.

    Encoder convs ``rebnconv1..height-1`` with 2x max-pooling between them, a dilated bottom
    conv ``rebnconv{height}``, decoder convs ``rebnconv{height-1}d..1d`` on the concatenation
    of the upsampled deeper output and the skip; the result is added to ``rebnconvin``'s output.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.height = height
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        for i in range(1, height - 1):
            setattr(self, f"pool{i}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
            setattr(self, f"rebnconv{i + 1}", REBNCONV(mid_ch, mid_ch))
        setattr(self, f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, dirate=2))
        for i in range(height - 1, 1, -1):
            setattr(self, f"rebnconv{i}d", REBNCONV(mid_ch * 2, mid_ch))
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips = [self.rebnconv1(hxin)]
        for i in range(1, self.height - 1):
            pooled = getattr(self, f"pool{i}")(skips[-1])
            skips.append(getattr(self, f"rebnconv{i + 1}")(pooled))
        hx = getattr(self, f"rebnconv{self.height}")(skips[-1])
        for i in range(self.height - 1, 0, -1):
            hx = getattr(self, f"rebnconv{i}d")(torch.cat((hx, skips[i - 1]), 1))
            if i > 1:
                hx = _upsample_like(hx, skips[i - 2])
        return hx + hxin


class RSU4F(nn.Module):
    """The flat RSU-4F: dilations 1-2-4-8 instead of pooling, for the low-resolution stages."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dirate=2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dirate=4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dirate=8)
        self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, dirate=4)
        self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, dirate=2)
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, dirate=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
        hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
        hx1d = self.rebnconv1d(torch.cat((hx2d, hx1), 1))
        return hx1d + hxin


def _block(height: int, in_ch: int, mid_ch: int, out_ch: int) -> nn.Module:
    return RSU4F(in_ch, mid_ch, out_ch) if height == 0 else RSU(height, in_ch, mid_ch, out_ch)


# (height, in, mid, out) per stage; height 0 = RSU-4F.
_ENC_U2NET = [
    (7, 3, 32, 64),
    (6, 64, 32, 128),
    (5, 128, 64, 256),
    (4, 256, 128, 512),
    (0, 512, 256, 512),
    (0, 512, 256, 512),
]
_DEC_U2NET = [(0, 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128), (6, 256, 32, 64), (7, 128, 16, 64)]
_ENC_U2NETP = [(7, 3, 16, 64), (6, 64, 16, 64), (5, 64, 16, 64), (4, 64, 16, 64), (0, 64, 16, 64), (0, 64, 16, 64)]
_DEC_U2NETP = [(0, 128, 16, 64), (4, 128, 16, 64), (5, 128, 16, 64), (6, 128, 16, 64), (7, 128, 16, 64)]


class _U2Base(nn.Module):
    """Six encoder stages, five decoder stages (``stage5d``..``stage1d``), six side outputs."""

    def _build(self, enc: list[tuple[int, int, int, int]], dec: list[tuple[int, int, int, int]]) -> None:
        for i, spec in enumerate(enc, start=1):
            setattr(self, f"stage{i}", _block(*spec))
            if i < 6:
                setattr(self, f"pool{i}{i + 1}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
        for i, spec in zip(range(5, 0, -1), dec, strict=True):
            setattr(self, f"stage{i}d", _block(*spec))
        side_in = [dec[4][3], dec[3][3], dec[2][3], dec[1][3], dec[0][3], enc[5][3]]
        for i, c in enumerate(side_in, start=1):
            setattr(self, f"side{i}", nn.Conv2d(c, 1, 3, padding=1))

    def _features(self, hx: torch.Tensor) -> list[torch.Tensor]:
        """Decoder outputs hx1d..hx5d and the bottom stage hx6, finest first."""
        enc = []
        for i in range(1, 7):
            hx = getattr(self, f"stage{i}")(hx)
            enc.append(hx)
            if i < 6:
                hx = getattr(self, f"pool{i}{i + 1}")(hx)
        dec = [enc[5]]
        hx = _upsample_like(enc[5], enc[4])
        for i in range(5, 0, -1):
            hx = getattr(self, f"stage{i}d")(torch.cat((hx, enc[i - 1]), 1))
            dec.append(hx)
            if i > 1:
                hx = _upsample_like(hx, enc[i - 2])
        return dec[::-1]  # hx1d, hx2d, hx3d, hx4d, hx5d, hx6

    def _sides(self, feats: list[torch.Tensor], size_ref: torch.Tensor) -> list[torch.Tensor]:
        return [_upsample_like(getattr(self, f"side{i}")(f), size_ref) for i, f in enumerate(feats, start=1)]


@register_arch("u2net")
class U2Net(_U2Base):
    """U2-Net (44M parameters) or, with ``small=True``, U2-Net-p (1.1M); output: the fused ``d0``."""

    def __init__(self, small: bool = False) -> None:
        super().__init__()
        self._build(_ENC_U2NETP if small else _ENC_U2NET, _DEC_U2NETP if small else _DEC_U2NET)
        self.outconv = nn.Conv2d(6, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        feats = self._features(x)
        d1 = self.side1(feats[0])
        sides = [d1] + [_upsample_like(getattr(self, f"side{i}")(f), d1) for i, f in enumerate(feats[1:], start=2)]
        d0 = self.outconv(torch.cat(sides, 1))
        return [d0, *sides] if self.training else d0


@register_arch("isnet")
class ISNet(_U2Base):
    """IS-Net (the DIS general-use network): a stride-2 input conv, then the U2-Net body; output: ``d1``."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        # ``width`` scales every channel count: a narrower IS-Net (0.25 keeps a quarter of each
        # layer) is the shape that structured pruning of the published network leaves.
        enc = [(7, 64, 32, 64), *_ENC_U2NET[1:]]
        if not 0 < width <= 1 or any((c * width) % 1 for spec in (*enc, *_DEC_U2NET) for c in spec[1:]):
            raise ValueError(f"isnet width {width}: must keep every channel count whole (1, 0.5 or 0.25)")

        def scaled(spec: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
            return (spec[0], *(int(c * width) for c in spec[1:]))

        stem = int(64 * width)
        self.conv_in = nn.Conv2d(3, stem, 3, stride=2, padding=1)
        # The published checkpoint has this pooling layer but its forward pass does not use it.
        self.pool_in = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self._build([scaled(e) for e in enc], [scaled(d) for d in _DEC_U2NET])

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        feats = self._features(self.conv_in(x))
        if not self.training:
            # Inference uses d1 only: the five deeper side outputs (each a conv and an upsampling
            # to full size) would be computed for nothing.
            return _upsample_like(self.side1(feats[0]), x)
        return self._sides(feats, x)


_U2_LICENSE = "apache-2.0"

register_model(
    PretrainedCfg(
        name="isnet-general",
        arch="isnet",
        input_size=1024,
        # The reference preprocessing is (v - 128) / 256 on 0-255 values.
        mean=(128 / 255, 128 / 255, 128 / 255),
        std=(256 / 255, 256 / 255, 256 / 255),
        output="sigmoid",
        hf_repo_id="bgcut/isnet-general",
        # v0.1.0 was the fp32 conversion (sha256 67ffe19c...); v0.2.0 is the int8 file shipped inside the package.
        hf_revision="v0.2.0",
        # sha256 of `bgcut models import isnet.onnx --arch isnet --name isnet-general --storage int8`
        # on the reference ONNX (sha256 b6e8497b...): the conversion is deterministic. int8 was chosen
        # by measurement against fp32 (weights/isnet-general/README.md, "Storage").
        sha256="385ba9540429ecd1fa8c3f4c58eb5bef5cb8734d3a07cfe8912cd5921728ff5d",
        license=_U2_LICENSE,
        embedded="isnet-general.safetensors",
        description="the default: IS-Net general use (DIS, Qin et al. 2022), 44M params, 1024 px",
    )
)
register_model(
    PretrainedCfg(
        name="u2net",
        arch="u2net",
        input_size=320,
        output="sigmoid-minmax",
        hf_repo_id="bgcut/u2net",
        hf_revision="v0.1.0",
        sha256=None,
        license=_U2_LICENSE,
        description="U2-Net (Qin et al. 2020), 44M params, 320 px",
    )
)
register_model(
    PretrainedCfg(
        name="u2netp",
        arch="u2net",
        arch_args={"small": True},
        input_size=320,
        output="sigmoid-minmax",
        hf_repo_id="bgcut/u2netp",
        hf_revision="v0.1.0",
        sha256=None,
        license=_U2_LICENSE,
        description="U2-Net-p (Qin et al. 2020), 1.1M params, 320 px",
    )
)
