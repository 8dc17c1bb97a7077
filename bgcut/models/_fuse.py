"""Inference-time graph simplification: fold batch norm into the convolution before it.

An eval-mode BatchNorm2d is a per-channel affine map, so it can be absorbed into the
preceding convolution's weights and bias. That removes one full pass over every feature
map per block, which is most of the non-convolution time on a CPU.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold each BatchNorm2d that directly follows a Conv2d (in place; the model must be in eval mode).

    Two layouts are recognised: consecutive children of an ``nn.Sequential`` (conv, bn, ...)
    and the U2-Net family's ``conv_s1``/``bn_s1`` pairs.
    """
    if model.training:
        raise ValueError("fuse_conv_bn needs an eval-mode model (batch norm must use its running statistics)")
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:], strict=False):
                conv, bn = module._modules[first], module._modules[second]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[first] = fuse_conv_bn_eval(conv, bn)
                    module._modules[second] = nn.Identity()
        conv, bn = getattr(module, "conv_s1", None), getattr(module, "bn_s1", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv_s1 = fuse_conv_bn_eval(conv, bn)
            module.bn_s1 = nn.Identity()
    return model
