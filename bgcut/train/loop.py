"""The training loop behind ``bgcut train``.

Decodes the pairs once into memory, trains with AdamW and a warm-up + cosine schedule,
validates each epoch with the same metrics as ``bgcut eval``, checkpoints every epoch
(``last.pt``, resumable) and exports the best epoch as ``model.safetensors`` + ``config.json``.

Each epoch also writes ``state.safetensors``: the validated (EMA) weights with the epoch, step and
CPU time in the file's metadata. It holds no optimiser state and no pickle, so it is small and
safe to commit: a fresh machine goes on from it (``--resume-from``) at the same point of the
learning-rate schedule, where ``--init`` would start the schedule again. A run stopped by its time
limit inside an epoch records how many of that epoch's batches it did (``batches_into_epoch``,
in the state and in ``last.pt``), and the run that goes on does the rest of that epoch, in the
same order, before the next one. A copy of each epoch's state stays in
``epochs/epoch-NNN.safetensors``: the held-out split picks ``best.safetensors``, but photos unlike
the training set can rank the epochs differently, so every epoch stays at hand to be scored on
them (``weights/recipes/relay.py`` does).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..config import PretrainedCfg
from ..devices import pick_device
from ..errors import UsageError
from ..evaluate import MaskMetrics
from ..models import (
    build_arch,
    get_pretrained_cfg,
    load_into,
    read_state_dict,
    save_tensors,
    sha256_file,
)
from ..pipeline.preprocess import normalise, to_masks
from .augment import AugmentOptions, augment
from .coco import coco_samples, decode_coco
from .data import cache_items, cache_pairs, list_pairs, load_backgrounds, split_by_stem, split_pairs
from .ema import Ema
from .losses import deep_supervision_loss, distillation_loss
from .options import TrainConfig
from .teacher import teacher_masks

STATE_FILE = "state.safetensors"
EPOCHS_DIR = "epochs"  # a copy of each epoch's state, named epoch-NNN.safetensors
# Steps over which a run resumed from a state file ramps its learning rate back to the schedule's:
# the optimiser's moment estimates start at zero again, and a full-size first step would jolt
# the weights away from where the committed run left them.
REWARM_STEPS = 100


def epoch_file(out: Path, epoch: int) -> Path:
    return out / EPOCHS_DIR / f"epoch-{epoch:03d}.safetensors"


def save_state(
    module: torch.nn.Module,
    path: Path,
    *,
    epoch: int,
    step: int,
    ema_updates: int,
    cpu_seconds: float,
    batches_into_epoch: int = 0,
) -> None:
    """The weights a fresh machine goes on from, with where the run stood (see the module doc):
    ``epoch`` epochs complete, and ``batches_into_epoch`` batches of the next one done."""
    meta = {"epoch": str(epoch), "step": str(step), "ema_updates": str(ema_updates), "cpu_seconds": str(cpu_seconds),
            "batches_into_epoch": str(batches_into_epoch)}  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    save_tensors({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, tmp, metadata=meta)
    tmp.replace(path)  # a run killed mid-write keeps the previous epoch's state


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Tensors and counters of a file written by ``save_state``; one usage error for anything else."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        numbers = {k: float(meta[k]) for k in ("epoch", "step", "ema_updates", "cpu_seconds")}
        # States written before a stopped epoch was resumable count whole epochs only.
        numbers["batches_into_epoch"] = float(meta.get("batches_into_epoch", 0))
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise UsageError(f"--resume-from {path}: not a training state file ({type(e).__name__}: {e})") from e
    return read_state_dict(path), numbers


def _lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@torch.inference_mode()
def validate(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    cfg: PretrainedCfg,
    device: torch.device,
    batch: int = 32,
) -> dict:
    """Mask metrics of ``model`` on uint8 images at the model's input size, preprocessed and
    post-processed as inference does it (``preprocess``: normalisation and ``cfg.output``)."""
    model.eval()
    metrics = MaskMetrics()
    for i in range(0, len(images), batch):
        x = normalise(images[i : i + batch].to(device).float(), cfg)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)
        pred = to_masks((out[0] if isinstance(out, (list, tuple)) else out).float(), cfg.output)
        pred_u8 = (pred * 255).round().byte().cpu().numpy()[:, 0]
        for p, g in zip(pred_u8, masks[i : i + batch].numpy()[:, 0], strict=True):
            metrics.update(p, g)
    return metrics.compute().to_dict()


def _load_data(cfg: TrainConfig, out: Path, log: Callable[[str], None], interpolation: str) -> tuple:
    """Train and validation tensors (see ``cache_items``) and the held-out pictures' names; photos are
    resized with the model's resampler, as inference does."""
    cache_size = int(round(cfg.size * 1.15))  # room for the random crops
    if cfg.coco is not None:
        samples = coco_samples(
            cfg.coco, cfg.images, cfg.coco_mode, cfg.coco_classes, cfg.coco_min_area, cfg.coco_context
        )
        samples = samples[: cfg.limit] if cfg.limit else samples
        train_s, val_s = split_by_stem(samples, lambda s: s.stem, cfg.val_fraction)
        if not val_s:  # tiny sets: still hold something out so "best" means something
            train_s, val_s = samples[1:], samples[:1]
        decode = partial(decode_coco, interpolation=interpolation)
        tr_img, tr_msk, _ = cache_items(train_s, decode, cache_size, 1, cfg.workers, log)
        va_img, va_msk, _ = cache_items(val_s, decode, cfg.size, 1, cfg.workers, log, kind="held-out (validation)")
        return tr_img, tr_msk, va_img, va_msk, sorted({s.image.name for s in val_s})
    assert cfg.masks is not None  # TrainConfig holds --masks or --coco
    pairs = list_pairs(Path(cfg.images), Path(cfg.masks))
    pairs = pairs[: cfg.limit] if cfg.limit else pairs
    train_pairs, val_pairs = split_pairs(pairs, cfg.val_fraction)
    if not val_pairs:
        train_pairs, val_pairs = pairs[1:], pairs[:1]
    soft = None
    if cfg.teacher:
        images = [p[0] for p in train_pairs]
        soft = teacher_masks(cfg.teacher, images, out / "teacher", cfg.device, cfg.workers, log)
    disk = Path(cfg.cache_dir) if cfg.cache_dir is not None else None
    tr_img, tr_msk = cache_pairs(train_pairs, cache_size, cfg.workers, soft, log, interpolation, disk)
    va_img, va_msk = cache_pairs(
        val_pairs, cfg.size, cfg.workers, log=log, interpolation=interpolation, disk=disk, kind="held-out (validation)"
    )
    return tr_img, tr_msk, va_img, va_msk, [p[0].name for p in val_pairs]


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train and export; returns the path of the exported ``model.safetensors``."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    base_cfg = get_pretrained_cfg(cfg.model)
    arch_args = {**base_cfg.arch_args, **cfg.arch_args}
    # The base model's input contract (size, normalisation, resampler, output rule) is kept;
    # where its weights came from is not.
    model_cfg = replace(
        base_cfg,
        name=cfg.name or cfg.model,
        arch_args=arch_args,
        # The network is exported for the size it was trained at, whatever its base model's.
        input_size=cfg.size,
        hf_repo_id=None,
        hf_revision=None,
        sha256=None,
        embedded=None,
        description="",
    )
    device = pick_device(cfg.device)
    t0 = time.time()
    tr_img, tr_msk, va_img, va_msk, val_names = _load_data(cfg, out, log, model_cfg.interpolation)
    log(f"cached {len(tr_img)} train / {len(va_img)} val pairs in {time.time() - t0:.0f}s")
    (out / "split.json").write_text(json.dumps({"val": val_names}, indent=0))
    distil = tr_msk.shape[1] > 1  # channel 1 holds the teacher's masks
    backgrounds = load_backgrounds(cfg.backgrounds, int(cfg.size * 1.25), log) if cfg.backgrounds else None
    aug = AugmentOptions(blur=cfg.blur, jpeg=cfg.jpeg, paste=cfg.paste if backgrounds else 0.0)

    # Seeded here, not only at the start: how the data was cached (decoded now, in worker processes
    # or in this one, or read from --cache-dir) must not change the initial weights.
    torch.manual_seed(cfg.seed)
    model = build_arch(model_cfg)
    ckpt_path = out / "last.pt"
    resumed_here = cfg.resume and ckpt_path.exists()
    state = None
    if cfg.resume_from is not None and not resumed_here:
        weights, state = read_state(Path(cfg.resume_from))
        if state["epoch"] >= cfg.epochs:
            raise UsageError(
                f"--resume-from {cfg.resume_from} stopped at epoch {int(state['epoch'])}: give --epochs above it"
            )
        load_into(model, weights, cfg.resume_from)
    if cfg.init is not None:
        load_into(model, read_state_dict(Path(cfg.init)), cfg.init)
        log(f"initialised from {cfg.init}")
    if cfg.init_encoder is not None:
        _init_encoder(model, Path(cfg.init_encoder))
        log(f"encoder initialised from {cfg.init_encoder}")
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = Ema(model, cfg.ema) if cfg.ema > 0 else None
    judged = ema.module if ema is not None else model  # what is validated, kept as best and exported
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    steps_per_epoch = max(1, len(tr_img) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = min(300, total // 10 + 1)
    start_epoch, step, best, history = 0, 0, -1.0, []
    # Batches of start_epoch done before a stop: a run stopped by its time limit goes on with the
    # rest of that epoch's order, where it would otherwise skip to the next epoch's.
    skip = 0
    rewarm_from = None  # the step a state file's run went on from, with a fresh optimiser
    cpu_spent = 0.0
    if resumed_here:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ema is not None and "ema" in ckpt:
            ema.load_state_dict(ckpt["ema"])
        start_epoch, step, best = int(ckpt["epoch"]), int(ckpt["step"]), float(ckpt["best"])
        skip = int(ckpt.get("batches_into_epoch", 0))
        history = json.loads((out / "history.json").read_text()) if (out / "history.json").exists() else []
        log(f"resumed from {ckpt_path} at epoch {start_epoch}")
        # CPU time spent by earlier segments of a resumed run counts against the budget too.
        cpu_spent = float(history[-1].get("cpu_seconds", 0.0)) if history else 0.0
    elif state is not None:
        start_epoch, step, cpu_spent = int(state["epoch"]), int(state["step"]), state["cpu_seconds"]
        skip = int(state["batches_into_epoch"])
        if ema is not None:
            ema.updates = int(state["ema_updates"])  # the average goes on at its full decay
        rewarm_from = step
        log(f"resumed from {cfg.resume_from} at epoch {start_epoch}, step {step} (a fresh optimiser)")
    if skip:
        skip = min(skip, steps_per_epoch - 1)  # the same pairs and batch size give the same epochs
        log(f"going on with epoch {start_epoch + 1} after its first {skip} batches")
    gen = torch.Generator().manual_seed(cfg.seed)
    deadline = time.time() + cfg.max_minutes * 60 if cfg.max_minutes else None
    cpu_start = time.process_time()

    def out_of_time() -> bool:
        if deadline and time.time() > deadline:
            return True
        used = cpu_spent + time.process_time() - cpu_start
        return bool(cfg.max_cpu_minutes) and used > cfg.max_cpu_minutes * 60

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        gen.manual_seed(cfg.seed * 1000 + epoch)  # same epoch -> same order, also after resume
        order = torch.randperm(len(tr_img), generator=gen)
        t_ep, loss_sum = time.time(), 0.0
        first = skip if epoch == start_epoch else 0  # below steps_per_epoch: the loop runs at least once
        for b in range(first, steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x, y = augment(tr_img[idx], tr_msk[idx], cfg.size, gen, aug, backgrounds)
            x = normalise(x.to(device, non_blocking=True), model_cfg, scale=1.0)
            x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            lr = _lr_at(step, total, cfg.lr, warmup)
            if rewarm_from is not None:
                lr *= min(1.0, (step - rewarm_from + 1) / REWARM_STEPS)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outputs = model(x)
            outputs = [o.float() for o in outputs] if isinstance(outputs, (list, tuple)) else outputs.float()
            loss = deep_supervision_loss(outputs, y[:, :1], boundary_gain=cfg.boundary_gain)
            if distil:  # channel 1: the teacher's mask, cropped and flipped with the ground truth
                loss = loss + cfg.distill_weight * distillation_loss(outputs, y[:, 1:])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(model)
            loss_sum += float(loss.detach())
            step += 1
            if out_of_time():
                break
        # A stop inside the epoch leaves it to be finished by the run that goes on from here.
        into = 0 if b + 1 >= steps_per_epoch else b + 1
        complete = epoch + 1 if into == 0 else epoch
        val = validate(judged, va_img, va_msk, model_cfg, device)
        row = {
            "epoch": epoch + 1,
            "step": step,
            "loss": loss_sum / (b + 1 - first),
            "seconds": round(time.time() - t_ep, 1),
            "cpu_seconds": round(cpu_spent + time.process_time() - cpu_start, 1),
            **val,
        }
        history.append(row)
        log(json.dumps(row))
        if val["maxF"] - val["mae"] > best:
            best = val["maxF"] - val["mae"]
            save_tensors({k: v.contiguous() for k, v in judged.state_dict().items()}, out / "best.safetensors")
        torch.save(
            {
                "model": model.state_dict(),
                **({"ema": ema.state_dict()} if ema is not None else {}),
                "optimizer": opt.state_dict(),
                "epoch": complete,
                "batches_into_epoch": into,
                "step": step,
                "best": best,
            },
            ckpt_path,
        )
        save_state(
            judged,
            out / STATE_FILE,
            epoch=complete,
            step=step,
            batches_into_epoch=into,
            ema_updates=ema.updates if ema is not None else 0,
            cpu_seconds=row["cpu_seconds"],
        )
        epoch_file(out, epoch + 1).parent.mkdir(exist_ok=True)
        shutil.copyfile(out / STATE_FILE, epoch_file(out, epoch + 1))
        (out / "history.json").write_text(json.dumps(history, indent=1))
        if out_of_time():
            log(f"stopping: the time limit was reached in epoch {epoch + 1}")
            break
    return export(out, model_cfg, history, cfg)


def _init_encoder(model: torch.nn.Module, path: Path) -> None:
    """Load pretrained weights into ``model.encoder``, renamed by the architecture's own rule."""
    rename = getattr(type(model), "encoder_state_from", None)
    if rename is None or not hasattr(model, "encoder"):
        raise UsageError(f"--init-encoder: architecture {type(model).__name__} has no pretrained encoder to load")
    load_into(model.encoder, rename(read_state_dict(path)), path)


def export(out: Path, model_cfg: PretrainedCfg, history: list[dict], cfg: TrainConfig) -> Path:
    best = out / "best.safetensors"
    final = out / "model.safetensors"
    if best.exists():
        shutil.copyfile(best, final)  # keep best.safetensors so a resumed run can still compare
    config = model_cfg.to_json()
    config["sha256"] = sha256_file(final)
    config["training"] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    config["validation"] = max(history, key=lambda r: r["maxF"] - r["mae"]) if history else None
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return final
