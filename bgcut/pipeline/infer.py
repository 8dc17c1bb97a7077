"""Inference: batches of uint8 model inputs -> soft masks, on the device, with no gradient.

Normalisation happens on the device (uint8 crosses the bus, 4x less than float), the
model runs in channels_last (faster convolutions on CPU and on tensor cores), and the
mask is upsampled to each photo's own size on the device before it comes back as uint8.

A batch that runs out of device memory never ends a run: it is split in half and retried,
down to one image, and the batch size stays lowered for the rest of the run (one warning line
says so). An image that does not fit even alone fails like a bad file (``DeviceMemoryError``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from ..config import PretrainedCfg, RunOptions
from ..cpu.heap import retained_heap
from ..devices import pick_device, pick_dtype
from ..errors import DeviceMemoryError
from ..models import LoadedModel, create_model, fuse_conv_bn
from .model_step import ClusterModel, ModelFacts, ModelStep
from .preprocess import normalise, resize_for_model, to_masks


def default_batch_size(device: torch.device, size: int) -> int:
    """Images per forward pass when the user gives none: 8 on an accelerator.

    On a CPU a batch helps only while its activations fit the caches: IS-Net at 1024 px ran
    2.30 s per image at batch 1 and 2.91 s at batch 8 on 2 cores (bench/RESULTS.md), while the
    256 px bgcut-lite gained from batches up to 8. So a CPU batch holds at most about one
    megapixel of model input.
    """
    if device.type != "cpu":
        return 8
    return max(1, min(8, (1 << 20) // (size * size)))


def input_and_batch(
    size: int | None, batch_size: int | None, cfg: PretrainedCfg, device: torch.device
) -> tuple[int, int]:
    """The model input size and the images per forward pass that a run uses: the ones asked for
    (``--size``, ``--batch-size``), else the model's own size and ``default_batch_size``. The one
    place these fall back, for the predictor and for the Ray engine's batches."""
    size = size or cfg.input_size
    return size, batch_size or default_batch_size(device, size)


class Predictor:
    """One loaded model on one device, and the one batch step every engine runs.

    ``from_options`` is the one set-up (device, precision, weights, batch size) that the Ray
    actors, the server and the Python API share (``bgcut/run.py`` chooses the device once and
    calls ``load``); ``masks`` maps model inputs to full-size masks; ``step`` hands that to the
    engines with the model's facts; ``__call__`` is the forward pass alone.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        device: torch.device,
        dtype: torch.dtype,
        size: int | None = None,
        batch_size: int | None = None,
        pad: bool = True,
    ) -> None:
        self.cfg = loaded.cfg
        self.model_name, self.sha256 = loaded.cfg.name, loaded.sha256
        self.device, self.dtype = device, dtype
        # Every forward runs at this batch size, a short batch padded with blank images: the
        # convolution kernels chosen (and so the last bit of the result) depend on the batch
        # shape, and a mask must not change with the other files of its batch (errors, resume).
        self.size, self.batch_size = input_and_batch(size, batch_size, loaded.cfg, device)
        # A server (bgcut serve) turns padding off: a lone request must not pay for a full batch,
        # and its masks may then differ in the last bit with the requests they shared a batch with.
        self.pad = pad
        # Told when out-of-memory lowers the batch size (the engine prints it as a warning).
        self.warn: Callable[[str], None] | None = None
        # Batch norm folded into the convolutions, channels_last memory: both measured faster on
        # CPU and GPU, and neither changes the result beyond float rounding.
        module = fuse_conv_bn(loaded.module.eval())
        self.model = module.to(device).to(memory_format=torch.channels_last)

    @classmethod
    def from_options(cls, run: RunOptions, pad: bool = True) -> Predictor:
        """The model, device, precision and batch size that ``run`` asks for.

        Raises UsageError for a device or precision this machine lacks, and the model errors
        of ``create_model``.
        """
        device = pick_device(run.device)
        return cls.load(run, device, pick_dtype(run.precision, device), pad)

    @classmethod
    def load(cls, run: RunOptions, device: torch.device, dtype: torch.dtype, pad: bool = True) -> Predictor:
        """``run``'s model on a device and precision already chosen (``bgcut.devices``): the
        wiring module chooses them once, before any work, and hands them on."""
        loaded = create_model(run.model, run.weights, device="cpu")
        return cls(loaded, device, dtype, run.size, run.batch_size, pad)

    def step(self) -> ModelStep:
        """This model as the engines take it (``model_step``): its facts, and ``masks`` with each
        input that does not fit in device memory handed on as its error, so that an engine can
        fail that input alone."""
        facts = ModelFacts(self.model_name, self.sha256, self.size)
        return ModelStep(facts, self.batch_size, self.cfg.interpolation, partial(self.masks, failures="yield"))

    def prepare(self, rgb: np.ndarray) -> torch.Tensor:
        """A photo (H x W x 3 uint8) -> this model's input; decode workers call ``images.model_input``
        with ``size`` and ``cfg.interpolation`` themselves, which is the same."""
        return resize_for_model(rgb, self.size, self.cfg.interpolation)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 -> (B, 1, S, S) float32 in [0, 1], on the device."""
        n = batch.shape[0]
        if self.pad and n < self.batch_size:
            batch = torch.cat([batch, batch.new_zeros((self.batch_size - n, *batch.shape[1:]))])
        x = batch.to(self.device, non_blocking=True).float()
        x = normalise(x, self.cfg).contiguous(memory_format=torch.channels_last)
        # On CPU the feature maps live in host memory: reuse freed ones instead of faulting in
        # fresh pages for each (see cpu/heap.py). A no-op inside a run, which already holds it.
        with (
            retained_heap(self.device.type),
            torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32),
        ):
            out = self.model(x)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return to_masks(out[:n].float(), self.cfg.output)

    def masks(
        self,
        inputs: Sequence[torch.Tensor | np.ndarray],
        sizes: Sequence[tuple[int, int]],
        *,
        failures: str = "raise",
    ) -> Iterator[np.ndarray | DeviceMemoryError]:
        """The batch step: model inputs (3 x S x S uint8, from ``prepare`` or a decode worker) -> each photo's mask at
        its own size (``sizes``: height, width), uint8, in forward passes of ``batch_size``.

        A generator: each mask is handed on as soon as it is upsampled, so the local engine's
        writer threads start on the first photo while the rest of the batch is upsampled.
        An image that does not fit in device memory even alone raises ``DeviceMemoryError``, or
        with ``failures="yield"`` is handed on as that error in its mask's place, so an engine
        can fail that one input and go on.
        """
        i = 0
        while i < len(inputs):
            n = self.batch_size  # may be lowered by _fitting, for this batch and the ones after
            chunk = list(inputs[i : i + n])
            for m, (h, w) in zip(self._fitting(chunk), sizes[i : i + len(chunk)], strict=True):
                if isinstance(m, DeviceMemoryError):
                    if failures != "yield":
                        raise m
                    yield m
                else:
                    yield upsample_mask(m, h, w)
            i += len(chunk)

    def _stacked(self, chunk: list[torch.Tensor | np.ndarray]) -> torch.Tensor:
        """One (B, 3, S, S) uint8 batch of model inputs: tensors (``prepare``) or the decode
        workers' arrays, which for CUDA are stacked straight into page-locked memory, so that
        the copy to the device runs without blocking and no separate pinning copy is made."""
        if not all(isinstance(c, np.ndarray) for c in chunk):
            return torch.stack([torch.as_tensor(c) for c in chunk])
        if self.device.type == "cuda":
            out = torch.empty((len(chunk), *chunk[0].shape), dtype=torch.uint8, pin_memory=True)
            np.stack(chunk, out=out.numpy())
            return out
        return torch.from_numpy(np.stack(chunk))

    def _fitting(self, chunk: list[torch.Tensor | np.ndarray]) -> list[torch.Tensor | DeviceMemoryError]:
        """The forward pass of ``chunk``, halved and retried while the device runs out of memory."""
        try:
            return list(self(self._stacked(chunk)))
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # the failed attempt's blocks, back for the retry
        if len(chunk) == 1:
            return [
                DeviceMemoryError(
                    f"out of {self.device.type} memory even alone at {self.size} px "
                    "(try a smaller --size, or --device cpu)"
                )
            ]
        half = (len(chunk) + 1) // 2
        if half < self.batch_size:
            if self.warn is not None:
                self.warn(f"out of {self.device.type} memory at batch size {len(chunk)}; lowered to {half}")
            self.batch_size = half  # padding (``__call__``) follows, or the retry would not be smaller
        return self._fitting(chunk[:half]) + self._fitting(chunk[half:])


def cluster_model(run: RunOptions) -> ClusterModel:
    """``run``'s model for the Ray engine. The weights are found and checked here, on the driver,
    before anything is written; each actor then loads them on its own device (``step_for``)."""
    cfg = create_model(run.model, run.weights, device="cpu").cfg
    return ClusterModel(
        cfg.interpolation, partial(input_and_batch, run.size, run.batch_size, cfg), partial(step_for, run)
    )


def step_for(run: RunOptions) -> ModelStep:
    """``run``'s model loaded on this machine, as an engine takes it (on a Ray actor)."""
    return Predictor.from_options(run).step()


@torch.inference_mode()
def upsample_mask(mask: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(1, S, S) [0, 1] mask on the device -> (H, W) uint8 on the CPU, bilinear.

    When the photo is smaller than the model's input (a 1024 px model on a 854x480 frame),
    the mask is low-pass filtered while shrinking (``antialias``, PIL's bilinear filter), so
    thin structures are averaged instead of sampled and do not alias into broken lines.
    """
    shrink = height < mask.shape[-2] or width < mask.shape[-1]
    full = F.interpolate(mask[None], size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)[0, 0]
    return full.mul_(255).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()  # in place: one full-size float plane
