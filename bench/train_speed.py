"""Training images/s of a registered architecture on this CPU: forward, loss, backward and AdamW step.

    OMP_NUM_THREADS=1 python bench/train_speed.py bgcut-s --size 384 --threads 1
    python bench/train_speed.py isnet-general --arch-args '{"width": 0.25}' --size 384 --threads 1

Random inputs and masks (the speed does not depend on them), batch ``-b``, channels_last as
``bgcut train`` runs; times ``--steps`` steps after two warm-up steps and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from bgcut.models import build_arch, get_pretrained_cfg
from bgcut.train.losses import deep_supervision_loss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--arch-args", default="{}")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("-b", "--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = get_pretrained_cfg(args.model)
    model = build_arch(replace(cfg, arch_args={**cfg.arch_args, **json.loads(args.arch_args)})).train()
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(args.batch, 1, args.size, args.size) > 0.5).float()
    for step in range(args.steps + 2):
        if step == 2:
            start = time.perf_counter()
        loss = deep_supervision_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    rate = args.steps * args.batch / (time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    print(
        json.dumps(
            {
                "model": args.model,
                "arch_args": json.loads(args.arch_args),
                "size": args.size,
                "batch": args.batch,
                "threads": args.threads,
                "params": params,
                "images_per_s": round(rate, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
