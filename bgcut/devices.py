"""Which device and precision a run uses: ``--device`` and ``--precision`` turned into torch's,
or one usage error saying what this machine lacks. Inference, training and evaluation share it.
"""

from __future__ import annotations

import torch

from .errors import UsageError


def pick_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"--device {spec!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {spec}: CUDA is not available on this machine (torch {torch.__version__})")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: Apple MPS is not available on this machine")
    return device


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``RunOptions.precision`` (already checked to be one of ``PRECISIONS``) on ``device``."""
    if precision == "auto":
        # Half precision only where it is fast; CPU half-precision convolutions are slower than fp32.
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("--precision fp16 is not supported on CPU; use fp32 or bf16")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
