"""Video: mask quality and flicker on the DAVIS sequences, with ``--steady`` off and on; codec costs.

    python bench/video.py quality [--model bgcut-lite] [--steady 0,0.3,0.5,0.7,0.9]
    python bench/video.py codecs

``quality`` makes a 24 fps H.264 clip (CRF 18) of each whole sequence in ../shared/data/video
(blackswan 50 frames, car-shadow 40, libby 49; 854x480), runs it through bgcut once with
``--video-format frames --format mask`` (the raw masks, exactly as a video run makes them), then
applies ``video.stability.Steady`` at each strength to that mask sequence and scores every frame
against its ground-truth mask:

- MAE, maxF and mIoU per frame, averaged over all frames (``bgcut.evaluate.MaskMetrics``);
- flicker: the mean absolute change of the mask between consecutive frames (in [0, 1]), over the
  pixels whose ground truth is the same in both frames (both object or both background), so the
  object's real motion is left out; averaged over all consecutive pairs.

One strength is also run through the real pipeline (``--steady``) and must give the same files as
the offline blend, so the table is what the option does. ``codecs`` times decoding alone and
encoding alone (each output kind) on the blackswan clip. Clips and masks go to bench/data/video
(ignored). Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from bgcut.config import VIDEO_FORMATS, OutputOptions, RunOptions, VideoOptions
from bgcut.evaluate import MaskMetrics
from bgcut.run import remove_backgrounds
from bgcut.video.decode import VideoReader
from bgcut.video.encode import VideoSink
from bgcut.video.stability import Steady

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "video"
DATA = HERE / "data" / "video"
SEQUENCES = ("blackswan", "car-shadow", "libby")


def make_clip(sequence: str) -> Path:
    import av

    clip = DATA / "clips" / f"{sequence}.mp4"
    if clip.exists():
        return clip
    clip.parent.mkdir(parents=True, exist_ok=True)
    frames = sorted((SHARED / sequence / "frames").glob("*.jpg"))
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.pix_fmt, stream.codec_context.options = "yuv420p", {"crf": "18"}
        for i, path in enumerate(frames):
            rgb = np.asarray(Image.open(path).convert("RGB"))
            if i == 0:
                stream.width, stream.height = rgb.shape[1], rgb.shape[0]
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return clip


def raw_masks(clip: Path, model: str, steady: float = 0.0) -> Path:
    out = DATA / f"masks-{model}-steady{steady}"
    summary = remove_backgrounds(
        [str(clip)],
        out,
        RunOptions(model=model),
        OutputOptions(format="mask"),
        video=VideoOptions(format="frames", steady=steady),
        log=lambda m: print(m, file=sys.stderr),
    )
    assert summary.ok, summary.rows
    return out / clip.stem


def _gt(sequence: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("L")) >= 128 for p in sorted((SHARED / sequence / "masks").glob("*.png"))]


def score(masks: list[np.ndarray], gts: list[np.ndarray]) -> dict[str, float]:
    metrics = MaskMetrics()
    for m, g in zip(masks, gts, strict=True):
        metrics.update(m, g)
    result = metrics.compute()
    flicker = [
        float(np.abs(a.astype(np.float32) - b.astype(np.float32))[ga == gb].mean() / 255)
        for a, b, ga, gb in zip(masks, masks[1:], gts, gts[1:], strict=False)
    ]
    return {"mae": result.mae, "maxF": result.maxF, "mIoU": result.mIoU, "flicker": float(np.mean(flicker))}


def quality(args: argparse.Namespace) -> None:
    strengths = [float(s) for s in args.steady.split(",")]
    per: dict[float, list[dict[str, float]]] = {s: [] for s in strengths}
    frames_total = 0
    for sequence in SEQUENCES:
        clip = make_clip(sequence)
        folder = raw_masks(clip, args.model)
        raw = [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]
        gts = _gt(sequence)
        frames_total += len(raw)
        for s in strengths:
            steady = Steady(s)
            got = score([steady(m) for m in raw], gts)
            per[s].append({**got, "frames": len(raw)})
            print(json.dumps({"model": args.model, "sequence": sequence, "steady": s, **got}), flush=True)
        if sequence == SEQUENCES[0] and args.check is not None:
            # The option in the pipeline writes what the offline blend above computes.
            check = raw_masks(clip, args.model, args.check)
            steady = Steady(args.check)
            expected = [steady(m) for m in raw]
            same = all(
                np.array_equal(np.asarray(Image.open(p)), e)
                for p, e in zip(sorted(check.glob("*.png")), expected, strict=True)
            )
            print(json.dumps({"check": f"--steady {args.check} in the pipeline = the offline blend", "same": same}))
            assert same
    for s in strengths:
        rows = per[s]
        weights = np.array([r["frames"] for r in rows], np.float64)
        mean = {k: float(np.average([r[k] for r in rows], weights=weights)) for k in ("mae", "maxF", "mIoU", "flicker")}
        print(json.dumps({"model": args.model, "sequence": "all", "frames": frames_total, "steady": s, **mean}))


def codecs(args: argparse.Namespace) -> None:
    clip = make_clip("blackswan")
    t = time.perf_counter()
    with VideoReader(clip) as reader:
        frames = [f.rgb for f in reader.frames()]
        info = reader.info
    decode_s = time.perf_counter() - t
    print(json.dumps({"step": "decode", "frames": len(frames), "fps": round(len(frames) / decode_s, 1)}), flush=True)
    mask = np.zeros(frames[0].shape[:2], np.uint8)
    mask[100:400, 200:600] = 255
    rgba = [np.dstack([f, mask]) for f in frames]
    tmp = DATA / "codec-out"
    for kind, spec in VIDEO_FORMATS.items():
        if spec.codec is None:
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        pixels = {"cutout": rgba, "alpha": [mask] * len(frames), "flat": frames}[spec.pixels]
        t = time.perf_counter()
        sink = VideoSink(tmp / f"out{spec.extension}", spec, info.width, info.height, Fraction(24), info.time_base, 20)
        for i, p in enumerate(pixels):
            sink.write(p, i * int(1 / (24 * info.time_base)), i)
        sink.close()
        took = time.perf_counter() - t
        size = (tmp / f"out{spec.extension}").stat().st_size
        print(json.dumps({"step": f"encode {kind}", "fps": round(len(frames) / took, 1), "bytes": size}), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--model", default="bgcut-lite")
    q.add_argument("--steady", default="0,0.3,0.5,0.7,0.9")
    q.add_argument("--check", type=float, default=0.5, help="a strength to run through the pipeline too")
    sub.add_parser("codecs")
    args = parser.parse_args()
    {"quality": quality, "codecs": codecs}[args.cmd](args)


if __name__ == "__main__":
    main()
