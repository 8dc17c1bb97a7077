"""Fuzz the batch engine: many crafted and mutated image files through the real command.

    python bench/fuzz.py --out /tmp/fuzz [--n 1200] [--seed 0] [-j 2] [-m bgcut-lite]

Makes a folder of good pictures in every format bgcut reads (PNG, JPEG, TIFF raw/LZW/deflate/
JPEG, animated GIF, WebP, BMP, ICO, PPM, TGA, 1x1 ones) and mutations of them (truncations,
header bit flips, overwritten bytes, huge declared sizes) under odd names (spaces, newlines,
non-UTF-8 bytes, a leading dash, 200-byte names). Runs ``bgcut`` over it twice (-j N and
-j 0) with a manifest, and checks what issue 15 promises:

- no traceback and no library noise: every stderr line is one of bgcut's own;
- every input has exactly one manifest row, done or failed, and every failure one error line;
- every unmutated picture is done, and every output decodes;
- the two runs write byte-identical outputs; a rerun skips everything and writes nothing.

Prints one JSON line of counts; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bgcut.config import VIDEO_FORMATS


def pictures(rng: np.random.Generator) -> dict[str, bytes]:
    """Good files, one or more per format: name -> bytes."""
    h, w = 48, 64
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=2).astype(np.uint8)
    base[12:36, 16:48] = 255
    rgba = np.dstack([base, np.where((xx - 32) ** 2 + (yy - 24) ** 2 < 300, 255, 0).astype(np.uint8)])
    im, im_a = Image.fromarray(base), Image.fromarray(rgba)
    out: dict[str, bytes] = {}

    def add(name: str, image: Image.Image, fmt: str, **kw: object) -> None:
        buf = io.BytesIO()
        image.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    add("plain.png", im, "PNG")
    add("alpha.png", im_a, "PNG")
    add("gray16.png", Image.fromarray(base[:, :, 0].astype(np.uint16) * 257), "PNG")
    add("photo.jpg", im, "JPEG", quality=90)
    add("progressive.jpg", im, "JPEG", progressive=True)
    add("raw.tif", im, "TIFF")
    add("lzw.tif", im, "TIFF", compression="tiff_lzw")
    add("deflate.tif", im_a, "TIFF", compression="tiff_adobe_deflate")
    add("jpeg.tif", im, "TIFF", compression="jpeg")
    frames = [Image.fromarray(np.roll(base, k * 7, axis=1)).convert("P") for k in range(3)]
    add("anim.gif", frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    add("lossy.webp", im, "WEBP", quality=80)
    add("lossless.webp", im_a, "WEBP", lossless=True)
    add("plain.bmp", im, "BMP")
    add("icon.ico", im_a, "ICO", sizes=[(32, 32), (48, 48)])
    add("plain.ppm", im, "PPM")
    add("plain.tga", im, "TGA")
    add("one.png", Image.fromarray(base[:1, :1]), "PNG")
    add("one.jpg", Image.fromarray(base[:1, :1]), "JPEG")
    add("one.gif", Image.fromarray(base[:1, :1]).convert("P"), "GIF")
    return out


def huge(name: str, data: bytes) -> bytes | None:
    """The same file claiming an enormous size in its header, where the format makes that easy."""
    b = bytearray(data)
    if name.endswith(".png"):
        struct.pack_into(">II", b, 16, 60000, 60000)  # IHDR width/height (the CRC is now wrong too)
    elif name.endswith(".bmp"):
        struct.pack_into("<ii", b, 18, 50000, 50000)
    elif name.endswith(".gif"):
        struct.pack_into("<HH", b, 6, 65535, 65535)
    else:
        return None
    return bytes(b)


def mutate(data: bytes, rnd: random.Random) -> tuple[str, bytes]:
    kind = rnd.choice(["truncate", "header-bits", "overwrite", "truncate", "overwrite", "zero-tail"])
    b = bytearray(data)
    if kind == "truncate":
        return kind, bytes(b[: rnd.randrange(1, max(2, len(b)))])
    if kind == "header-bits":
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(min(len(b), 64))
            b[i] ^= 1 << rnd.randrange(8)
        return kind, bytes(b)
    if kind == "zero-tail":
        start = rnd.randrange(len(b) // 2, len(b))
        return kind, bytes(b[:start]) + bytes(len(b) - start)
    for _ in range(rnd.randint(1, 8)):
        i = rnd.randrange(len(b))
        b[i] = rnd.randrange(256)
    return kind, bytes(b)


ODD_STEMS = ["with space", "new\nline", "tab\there", "-leading-dash", "ünïcödé", "x" * 200]


def make_corpus(folder: Path, n: int, seed: int) -> dict[str, bool]:
    """Write the corpus; returns {file name: is it an unmutated good picture}."""
    rng, rnd = np.random.default_rng(seed), random.Random(seed)
    good = pictures(rng)
    folder.mkdir(parents=True)
    kinds: dict[str, bool] = {}

    def write(stem: str, ext: str, data: bytes, is_good: bool) -> None:
        name = f"{stem}{ext}"
        (folder / name).write_bytes(data)
        kinds[name] = is_good

    for name, data in good.items():
        stem, ext = os.path.splitext(name)
        write(f"good-{stem}", ext, data, True)
        if (big := huge(name, data)) is not None:
            write(f"huge-{stem}", ext, big, False)
    for i, odd in enumerate(ODD_STEMS):  # odd names on good files: they must be done
        name, data = list(good.items())[i]
        write(f"good-{odd}", os.path.splitext(name)[1], data, True)
    nonutf8 = os.fsdecode(b"good-caf\xe9")
    write(nonutf8, ".png", good["plain.png"], True)
    names = list(good)
    i = 0
    while len(kinds) < n:
        name = names[i % len(names)]
        kind, data = mutate(good[name], rnd)
        stem, ext = os.path.splitext(name)
        write(f"mut{i:05d}-{kind}-{stem}", ext, data, False)
        i += 1
    return kinds


def run(src: Path, out: Path, manifest: Path, workers: int, model: str | None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bgcut", str(src), "-o", str(out), "-j", str(workers), "--manifest", str(manifest)]
    if model:
        cmd += ["-m", model]
    return subprocess.run(cmd, capture_output=True, text=True, errors="surrogateescape")


CLIP_EXTENSIONS = {f.extension for f in VIDEO_FORMATS.values() if f.extension}


def decode_output(path: Path) -> None:
    """Decode one output whole: an image with PIL, a clip (an animated input's) with PyAV."""
    if path.suffix in CLIP_EXTENSIONS:
        import av  # the video extra; only animated inputs make clips

        with av.open(str(path)) as container:
            if not sum(1 for _ in container.decode(container.streams.video[0])):
                raise ValueError("no frames")
        return
    with Image.open(path) as im:
        im.load()


def check(src: Path, out: Path, manifest: Path, proc: subprocess.CompletedProcess[str], kinds: dict[str, bool]) -> dict:
    problems: list[str] = []
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    foreign = [line for line in lines if not line.startswith("bgcut: ")]
    if foreign:
        problems.append(f"{len(foreign)} stderr lines not bgcut's own, e.g. {foreign[0]!r}")
    rows = [json.loads(line) for line in manifest.read_text("utf-8").splitlines()]
    by_name = {}
    for r in rows:
        by_name.setdefault(os.path.basename(r["input"]), []).append(r)
    for name, is_good in kinds.items():
        got = by_name.get(name, [])
        if len(got) != 1:
            problems.append(f"{name!r}: {len(got)} manifest rows")
        elif is_good and got[0]["status"] != "done":
            problems.append(f"{name!r}: a good picture was {got[0]['status']}: {got[0]['error']}")
    failed = [r for r in rows if r["status"] == "failed"]
    errors = [line for line in lines if line.startswith("bgcut: error: ")]
    if len(errors) != len(failed):
        problems.append(f"{len(failed)} failed rows but {len(errors)} error lines")
    for r in rows:
        for o in r["outputs"]:
            try:
                decode_output(Path(o))
            except Exception as e:  # noqa: BLE001
                problems.append(f"output {o!r} does not decode: {e}")
    if any(p.name.endswith(".bgcut-tmp") for p in out.rglob("*")):
        problems.append("temporary files left behind")
    return {
        "rc": proc.returncode,
        "done": sum(r["status"] == "done" for r in rows),
        "empty": sum(r["status"] == "empty" for r in rows),
        "failed": len(failed),
        "warnings": sum(line.startswith("bgcut: warning: ") for line in lines),
        "problems": problems,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="scratch folder (emptied first)")
    ap.add_argument("--n", type=int, default=1200, help="files in the corpus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-j", "--workers", type=int, default=2)
    # The checks are about reading files, not about masks: a small model runs three passes over
    # the corpus in minutes, where the default (isnet-general, about 1 s a file on a CPU) takes half an hour.
    ap.add_argument("-m", "--model", default=None, help="the model to run (default: bgcut's default)")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    src = args.out / "corpus"
    kinds = make_corpus(src, args.n, args.seed)
    report: dict = {"files": len(kinds), "good": sum(kinds.values())}
    a = run(src, args.out / "a", args.out / "a.jsonl", args.workers, args.model)
    report[f"j{args.workers}"] = check(src, args.out / "a", args.out / "a.jsonl", a, kinds)
    b = run(src, args.out / "b", args.out / "b.jsonl", 0, args.model)
    report["j0"] = check(src, args.out / "b", args.out / "b.jsonl", b, kinds)
    files_a = {p.relative_to(args.out / "a"): p.read_bytes() for p in (args.out / "a").rglob("*") if p.is_file()}
    files_b = {p.relative_to(args.out / "b"): p.read_bytes() for p in (args.out / "b").rglob("*") if p.is_file()}
    report["outputs"] = len(files_a)
    report["identical_across_j"] = files_a == files_b
    again = run(src, args.out / "a", args.out / "again.jsonl", args.workers, args.model)
    rows = [json.loads(line) for line in (args.out / "again.jsonl").read_text("utf-8").splitlines()]
    report["rerun_skipped"] = sum(r["status"] == "skipped" for r in rows)
    report["rerun_done"] = sum(r["status"] == "done" for r in rows)
    report["rerun_rc"] = again.returncode
    ok = (
        not report[f"j{args.workers}"]["problems"]
        and not report["j0"]["problems"]
        and report["identical_across_j"]
        and report["rerun_done"] == 0
    )
    print(json.dumps(report, ensure_ascii=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
