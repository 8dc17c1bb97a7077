"""EffUNet: an EfficientNet-Lite0 encoder with a light UNet decoder, the student of the CPU relay.

The encoder is EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variants drop squeeze-excitation,
use ReLU6 and fix the stem and head widths, which suits CPUs and int8). It is written here from
the architecture's description, with TensorFlow's "SAME" padding on the stride-2 convolutions
and batch norm eps 1e-3, so that ImageNet weights trained in TensorFlow mean the same thing
here; ``encoder_state_from`` renames the tensors of the ``efficientnet_pytorch`` layout
(``_blocks.3._depthwise_conv.weight``) that the offline ImageNet file uses. The classifier
head is not part of the network.

The decoder is LiteUNet's (``unet_lite``): at each scale, upsample, concatenate the skip, a 1x1
fuse and a depthwise-separable 3x3, with image-level context on the deepest features. It
predicts at 1/2 resolution; training mode also returns deep-supervision logits of the three
coarser decoder stages.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedCfg
from ._registry import register_arch, register_model
from .unet_lite import UNetDecoding

# (expansion, kernel, stride, output channels, repeats) per stage of EfficientNet-Lite0.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM = 32
BN_EPS = 1e-3  # TensorFlow's default, which the ImageNet weights were trained with


class SamePad(nn.Module):
    """TensorFlow's "SAME" padding for a strided convolution: the extra pixel goes right and bottom.

    PyTorch's symmetric padding would shift every stride-2 feature map by half a pixel against
    what the pretrained weights expect.
    """

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


def conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Convolution, batch norm (eps 1e-3) and ReLU6, as named children (``conv``, ``bn``) that
    ``fuse_conv_bn`` folds for inference."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if stride > 1:
        layers["pad"] = SamePad(kernel, stride)
    padding = kernel // 2 if stride == 1 else 0
    layers["conv"] = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
    layers["bn"] = nn.BatchNorm2d(cout, eps=BN_EPS)
    if act:
        layers["act"] = nn.ReLU6(inplace=True)
    return nn.Sequential(layers)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation: 1x1 expand, kxk depthwise, 1x1 project."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = conv_bn(cin, hidden) if expand != 1 else nn.Identity()
        self.dw = conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = conv_bn(hidden, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """The encoder: the stem and the MBConv blocks; ``forward`` returns the last feature map of
    each scale, 1/2 to 1/32 (Lite0: 16, 24, 40, 112 and 320 channels)."""

    def __init__(self, stages: Sequence[tuple[int, int, int, int, int]] = LITE0_STAGES) -> None:
        super().__init__()
        self.stem = conv_bn(3, STEM, 3, 2)
        blocks: list[nn.Module] = []
        self.taps: list[int] = []  # index of the last block before each downsampling, and the last one
        cin = STEM
        for expand, kernel, stride, cout, repeats in stages:
            if stride > 1 and blocks:
                self.taps.append(len(blocks) - 1)
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self.taps.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.channels = [self.blocks[i].project.conv.out_channels for i in self.taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        return feats


# efficientnet_pytorch names -> ours, for the encoder (the head and classifier are dropped).
_RENAMES = (
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.dw.conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.dw.bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
)
_DROPPED = re.compile(r"^(_conv_head|_bn1|_fc)\.")


@register_arch("effnet_unet")
class EffUNet(UNetDecoding):
    def __init__(self, decoder_widths: Sequence[int] = (96, 64, 40, 24)) -> None:
        super().__init__()
        if len(decoder_widths) != 4:
            raise ValueError("effnet_unet needs 4 decoder widths")
        self.encoder = EfficientNetLite()
        self._build_decoder(self.encoder.channels, decoder_widths)

    @staticmethod
    def encoder_state_from(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's tensors from an ``efficientnet_pytorch``-style EfficientNet-Lite0 state dict."""
        out = {}
        for key, tensor in state.items():
            if _DROPPED.match(key):
                continue
            new = key
            for pattern, repl in _RENAMES:
                new = re.sub(pattern, repl, new)
            out[new] = tensor
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self._decode(self.encoder(x), x.shape[-2:])


register_model(
    PretrainedCfg(
        name="bgcut-s",
        arch="effnet_unet",
        input_size=384,
        # The ImageNet weights were trained on (v - 127) / 128 of 0-255 values.
        mean=(127 / 255, 127 / 255, 127 / 255),
        std=(128 / 255, 128 / 255, 128 / 255),
        hf_repo_id="bgcut/bgcut-s",
        hf_revision="v0.1.0",
        # The relay's best weights so far, in fp16 (weights/bgcut-s/README.md); each session that
        # improves them ships them with this line.
        sha256="229bfdd14908bac88ef0f2eb56592cefc022803c851aeff8ffa8ba545a1f7421",  # set by weights/recipes/relay.py
        license="apache-2.0",
        embedded="bgcut-s.safetensors",
        description="ours, in training: EfficientNet-Lite0 encoder + light UNet decoder (3M params), 384 px",
    )
)
