"""A narrower IS-Net cut from ``isnet-general`` by importance-based structured pruning: one of the
starts that issue 32's step 1 compares (weights/bgcut-s/README.md).

    pip install torch-pruning==1.6.1          # training-time only, never a dependency of bgcut
    python weights/recipes/prune_isnet.py --width 0.25 -o runs/isnet-q-init.safetensors

Each layer keeps the channels whose removal would change the loss least, estimated to first
order (Taylor: |weight x gradient|, summed over every layer that a channel group ties
together: a residual add, a concatenation). The gradients come from ``--pairs`` DUTS-TR
training pairs at ``--size`` px: the six side outputs against the ground truth, with batch norm
in eval mode (the imported network's batch norms are identities). Every group keeps the same
share of its channels, so the result is exactly ``ISNet(width=W)`` and loads by name.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bgcut.models import build_arch, create_model, get_pretrained_cfg, load_into, save_tensors
from bgcut.pipeline.preprocess import normalise
from bgcut.train.data import decode_pair, list_pairs, split_pairs

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "duts-tr"


def _batch(pairs: list[tuple[Path, Path]], size: int, interpolation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs decoded as training decodes them (``train.data.decode_pair``: the model's resampler)."""
    decoded = [decode_pair((image, mask, None), size, interpolation) for image, mask in pairs]
    x = torch.from_numpy(np.stack([rgb for rgb, _ in decoded])).permute(0, 3, 1, 2).float()
    y = torch.from_numpy(np.stack([m for _, m in decoded])).float() / 255.0
    return x, y


def _all_sides(model: torch.nn.Module) -> torch.nn.Module:
    """Training mode (the forward pass returns all six side outputs) with batch norm in eval
    mode: the running statistics, as the network infers, not the batch's."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import torch_pruning as tp

    torch.manual_seed(0)
    teacher = create_model("isnet-general")
    model, cfg = teacher.module, teacher.cfg
    pruner = tp.pruner.MetaPruner(
        model,
        torch.zeros(1, 3, 64, 64),
        # Traced with all six side outputs: inference computes only the first, and the layers
        # feeding the other five would be missing from the graph and keep their width.
        forward_fn=lambda m, x: _all_sides(m)(x),
        importance=tp.importance.GroupTaylorImportance(),
        pruning_ratio=1 - args.width,
        # No layer is ignored: a side output's one channel is never cut (a quarter of 1 rounds to 0),
        # while ignoring it would also freeze the decoder channels that feed it.
        global_pruning=False,  # the same share everywhere: the result is ISNet(width)
    )
    _all_sides(model)  # the pruner's tracing leaves the model in eval mode
    train_pairs, _ = split_pairs(list_pairs(args.data / "images", args.data / "masks"), 0.1)
    pick = np.random.default_rng(0).choice(len(train_pairs), size=args.pairs, replace=False)
    chosen = [train_pairs[i] for i in pick]
    model.zero_grad()
    for i in range(0, len(chosen), 4):
        x, y = _batch(chosen[i : i + 4], args.size, cfg.interpolation)
        outs = model(normalise(x, cfg, scale=255.0))
        loss = sum(F.binary_cross_entropy_with_logits(o, y) for o in outs)
        loss.backward()
        print(f"gradients: {i + len(x)}/{len(chosen)} pairs, loss {float(loss):.3f}", file=sys.stderr)
    pruner.step()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    narrow = build_arch(replace(get_pretrained_cfg("isnet-general"), arch_args={"width": args.width}))
    load_into(narrow, state, "the pruned network")  # every shape is that of ISNet(width)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(state, args.out)
    params = sum(p.numel() for p in narrow.parameters())
    print(f"wrote {args.out}: ISNet(width={args.width}), {params / 1e6:.2f}M parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
