"""Issue 13's accelerator run: the data packed to travel, then training in resumable segments.

Here, once (needs ../shared; writes an ignored folder):

    python weights/recipes/accelerator_train.py pack --out .carry/train [--side 384] [--max-mb 60]
    python bench/carry.py split isnet-general .carry/teacher --fp16          # the teacher, in 2 parts

On the accelerator machine, in calls of at most 10 minutes while it stays warm: carry each shard
folder in turn (one call each; ``carry`` keeps what earlier calls brought), then run the same
segment command as many times as the device minutes allow. Each call trains for ``--minutes`` and
then writes the exported weights (and its last checkpoint, when under 16 MiB) to ``--out`` ($OUT),
so a machine taken back costs one segment, not the run:

    python weights/recipes/accelerator_train.py segment --shards .carry/train/* \\
        --work /tmp/bgcut-train --out $OUT --minutes 8 [--teacher /tmp/isnet-general]

The same segment command with ``--tiny`` (24 pairs, 64 px, a few steps, 0 workers) runs on this
CPU through the identical code path; ``tests/test_accelerator_recipe.py`` does.

The student is ``unet_lite`` widened to 5.7M parameters (``STUDENT``; bgcut-lite is 0.74M), trained
at 384 px with deep supervision, BCE + IoU with a boundary term, cut-and-paste onto the background
photos, EMA, and the teacher's soft masks beside the ground truth when ``--teacher`` is given. The
width and input size are a starting point to be measured on the accelerator, not a result.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
import time
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent.parent / "shared" / "data"
STUDENT = {"widths": [32, 48, 96, 192, 384], "depths": [2, 3, 4, 4], "decoder_widths": [192, 96, 64, 48]}
CHECKPOINT_LIMIT = 16 << 20  # the largest file that comes back from the device machine


def _shrunk(path: Path, side: int, mode: str) -> Image.Image:
    im = Image.open(path)
    im = im.convert(mode)
    scale = side / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    return im


def _tar_size(members: int) -> int:
    """A tar file's size on disk: its members, two closing blocks, rounded up to 10 KiB records."""
    return -(-(members + 1024) // 10240) * 10240


class _Shards:
    """Tar files of at most ``max_bytes`` each, named ``PREFIX-000.tar``...; each in its own folder,
    so that one call can carry exactly one of them."""

    def __init__(self, out: Path, prefix: str, max_bytes: int) -> None:
        self.out, self.prefix, self.max_bytes = out, prefix, max_bytes
        self.n, self.size, self.tar = 0, 0, None

    def add(self, name: str, data: bytes) -> None:
        member = 512 + -(-len(data) // 512) * 512  # a header block, then the data in whole blocks
        if self.tar is None or _tar_size(self.size + member) > self.max_bytes:
            self.close()
            folder = self.out / f"{self.prefix}-{self.n:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            self.tar = tarfile.open(folder / f"{self.prefix}-{self.n:03d}.tar", "w")  # noqa: SIM115 - open across add()s
            self.n, self.size = self.n + 1, 0
        info = tarfile.TarInfo(name)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))
        self.size += member

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None


def _encoded(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def pack(duts: Path, backgrounds: Path, out: Path, side: int, max_mb: float, limit: int | None) -> dict:
    """DUTS pairs shrunk to ``side`` px on their long side (images JPEG, masks PNG) and the
    background photos, into shards of at most ``max_mb``."""
    if out.exists():
        shutil.rmtree(out)
    shards = _Shards(out, "data", int(max_mb * (1 << 20)))
    masks = {p.stem: p for p in (duts / "masks").iterdir()}
    pairs = [(p, masks[p.stem]) for p in sorted((duts / "images").iterdir()) if p.stem in masks][:limit]
    for image, mask in pairs:
        shards.add(f"images/{image.stem}.jpg", _encoded(_shrunk(image, side, "RGB"), "JPEG"))
        shards.add(f"masks/{image.stem}.png", _encoded(_shrunk(mask, side, "L"), "PNG"))
    photos = sorted(backgrounds.iterdir())[:limit]
    for photo in photos:
        shards.add(f"backgrounds/{photo.stem}.jpg", _encoded(_shrunk(photo, 2 * side, "RGB"), "JPEG"))
    shards.close()
    summary = {"pairs": len(pairs), "backgrounds": len(photos), "side": side, "shards": shards.n}
    (out / "manifest.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def unpack(shard_dirs: list[Path], data: Path) -> int:
    """Every shard that has arrived, unpacked once (a later call's segment finds them done)."""
    data.mkdir(parents=True, exist_ok=True)
    done_file = data / ".unpacked"
    done = set(done_file.read_text().split()) if done_file.exists() else set()
    for tar_path in sorted(p for d in shard_dirs for p in (d.glob("*.tar") if d.is_dir() else [d])):
        if tar_path.name in done:
            continue
        with tarfile.open(tar_path) as tar:
            tar.extractall(data, filter="data")
        done.add(tar_path.name)
        done_file.write_text("\n".join(sorted(done)) + "\n")
    return len(done)


def segment(args: argparse.Namespace) -> Path:
    from bgcut.train.loop import train
    from bgcut.train.options import TrainConfig

    work, out = args.work, args.out
    data = work / "data"
    unpack(args.shards, data)
    run = work / "run"
    tiny = args.tiny
    cfg = TrainConfig(
        images=data / "images",
        masks=data / "masks",
        output=run,
        model="bgcut-lite",  # its input contract (normalisation, resampler, output rule); STUDENT's widths
        name="bgcut-base",
        size=64 if tiny else args.size,
        epochs=1 if tiny else args.epochs,
        batch_size=4 if tiny else args.batch_size,
        lr=2e-3,
        workers=0 if tiny else args.workers,
        device="cpu" if tiny else "auto",
        max_minutes=args.minutes,
        resume=(run / "last.pt").exists(),
        limit=24 if tiny else None,
        ema=0.999,
        boundary_gain=4.0,
        teacher=str(args.teacher) if args.teacher else None,
        backgrounds=data / "backgrounds" if (data / "backgrounds").is_dir() else None,
        paste=0.5,
        arch_args={k: list(v) for k, v in STUDENT.items()} if not tiny else {"widths": [8, 12, 16, 24, 32]},
    )
    started = time.time()
    exported = train(cfg, log=lambda m: print(m, flush=True))
    out.mkdir(parents=True, exist_ok=True)
    for f in (exported, exported.parent / "config.json", run / "history.json", run / "last.pt"):
        if f.exists() and f.stat().st_size <= CHECKPOINT_LIMIT:
            shutil.copy(f, out / f.name)
    print(json.dumps({"segment_seconds": round(time.time() - started, 1), "out": str(out)}), flush=True)
    return exported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--duts", type=Path, default=SHARED / "duts-tr")
    p.add_argument("--backgrounds", type=Path, default=SHARED / "backgrounds")
    p.add_argument("--side", type=int, default=384)
    p.add_argument("--max-mb", type=float, default=60)
    p.add_argument("--limit", type=int, default=None)
    s = sub.add_parser("segment")
    s.add_argument("--shards", type=Path, nargs="+", required=True)
    s.add_argument("--work", type=Path, default=Path("/tmp/bgcut-train"))
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--minutes", type=float, default=8.0)
    s.add_argument("--teacher", type=Path, default=None, help="isnet-general's weights folder (bench/carry.py join)")
    s.add_argument("--size", type=int, default=384)
    s.add_argument("--epochs", type=int, default=40)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--workers", type=int, default=12)
    s.add_argument("--tiny", action="store_true", help="24 pairs, 64 px, one epoch on CPU: the same code path")
    args = parser.parse_args()
    if args.cmd == "pack":
        print(json.dumps(pack(args.duts, args.backgrounds, args.out, args.side, args.max_mb, args.limit)))
    else:
        segment(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
