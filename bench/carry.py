"""Weights too large for one call to the accelerator machine, carried in parts.

    python bench/carry.py split isnet-general .carry/isnet-general [--max-mb 60] [--fp16]
    python bench/carry.py join .carry/isnet-general /tmp/isnet-general     # on the device machine

One call carries at most 64 MiB. isnet-general is 44M parameters: 176 MB in fp32 and 88 MB in
fp16, so it must travel in parts. ``split`` resolves a registered model's weights (embedded,
imported or cached; never downloaded), optionally stores its float tensors as fp16 (the model
computes in fp32 or autocast either way), and cuts the safetensors file into parts of at most
``--max-mb``. It writes a ``manifest.json`` beside them with each part's sha256 and the whole
file's, and the model's ``config.json``. Carry one part per call, each in its own ignored
folder (``carry`` keeps, on a warm machine, what an earlier call brought). ``join`` checks each
part and the whole, and writes a folder that ``--weights`` takes (``model.safetensors`` +
``config.json``), so the model loads through the same checked path as any local weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import torch

from bgcut.errors import ChecksumError
from bgcut.models import get_pretrained_cfg, read_state_dict, resolve_weights, save_tensors

MB = 1 << 20


def split(model: str, dest: Path, max_mb: float, fp16: bool) -> list[Path]:
    cfg = get_pretrained_cfg(model)
    path, _sha = resolve_weights(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        source = path
        if fp16:
            state = {k: (v.half() if v.is_floating_point() else v) for k, v in read_state_dict(path).items()}
            source = Path(tmp) / "model.safetensors"
            save_tensors(state, source)
        data = source.read_bytes()
    dest.mkdir(parents=True, exist_ok=True)
    size = int(max_mb * MB)
    parts = []
    for n, start in enumerate(range(0, len(data), size)):
        part = dest / f"part-{n:03d}.bin"
        part.write_bytes(data[start : start + size])
        parts.append({"file": part.name, "sha256": hashlib.sha256(data[start : start + size]).hexdigest()})
    manifest = {
        "model": model,
        "fp16": fp16,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "parts": parts,
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (dest / "config.json").write_text(json.dumps(cfg.to_json(), indent=1) + "\n")
    return [dest / p["file"] for p in parts]


def join(folder: Path, out: Path, parts_from: list[Path] | None = None) -> Path:
    """The parts (found in ``folder`` or in ``parts_from``, where each call's carry put them)
    joined and checked into ``out/model.safetensors`` + ``out/config.json``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    where = {p.name: p for d in (parts_from or [folder]) for p in d.glob("part-*.bin")}
    out.mkdir(parents=True, exist_ok=True)
    whole, partial = out / "model.safetensors", out / ".model.safetensors.joining"
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as f:
            for part in manifest["parts"]:
                if part["file"] not in where:
                    raise FileNotFoundError(f"{part['file']} has not arrived (carry it in a call of its own)")
                data = where[part["file"]].read_bytes()
                if hashlib.sha256(data).hexdigest() != part["sha256"]:
                    raise ChecksumError(f"{part['file']}: sha256 differs from the manifest's")
                digest.update(data)
                f.write(data)
        if digest.hexdigest() != manifest["sha256"]:  # the bytes written, hashed as they went
            raise ChecksumError(f"{whole}: the joined parts do not give the split file")
        partial.replace(whole)  # only a whole, checked file ever has the name --weights loads
    finally:
        partial.unlink(missing_ok=True)
    (out / "config.json").write_text((folder / "config.json").read_text())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("model")
    s.add_argument("dest", type=Path)
    s.add_argument("--max-mb", type=float, default=60)
    s.add_argument("--fp16", action="store_true")
    j = sub.add_parser("join")
    j.add_argument("folder", type=Path, help="the folder with manifest.json (and the parts, unless --parts)")
    j.add_argument("out", type=Path)
    j.add_argument("--parts", type=Path, nargs="*", help="folders the parts arrived in, if not beside the manifest")
    args = parser.parse_args()
    if args.cmd == "split":
        for p in split(args.model, args.dest, args.max_mb, args.fp16):
            print(p, p.stat().st_size)
    else:
        print(join(args.folder, args.out, args.parts))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
