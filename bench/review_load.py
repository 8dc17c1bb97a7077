"""How long ``bgcut review``'s page takes to open in headless Chromium on a large run.

    python bench/review_load.py PHOTOS CUTOUTS --entries 2000 [--work /tmp/review-bench]

Builds a run of ``--entries`` rows from the photos and their cut-outs (cycled, each copied under
its own name so every entry has its own thumbnails, with a doubt drawn at random), writes the page
with ``bgcut.review.make_review`` and opens it in Debian's headless Chromium (Selenium), several
times. Prints the seconds the page took to make, and to open: from the request until the entries
are drawn, and until the thumbnails in view have loaded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from bgcut.review import make_review


def build(photos: Path, cutouts: Path, n: int, work: Path) -> tuple[Path, Path]:
    pairs = [
        (p, cutouts / f"{p.stem}.png") for p in sorted(photos.glob("*.jpg")) if (cutouts / f"{p.stem}.png").is_file()
    ]
    rng = np.random.default_rng(0)
    out, src = work / "out", work / "in"
    lines = []
    for i in range(n):
        photo, cut = pairs[i % len(pairs)]
        folder = f"f{i % 4}"
        (out / folder).mkdir(parents=True, exist_ok=True)
        (src / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, src / folder / f"{i:05d}.jpg")
        shutil.copyfile(cut, out / folder / f"{i:05d}.png")
        d = float(rng.random())
        parts = {"unsure": d, "frame": 0.0, "pieces": 0.0, "extent": 0.0}
        row = {"input": str(src / folder / f"{i:05d}.jpg"), "status": "done",
               "outputs": [str(out / folder / f"{i:05d}.png")], "doubt": d, "doubt_parts": parts}  # fmt: skip
        lines.append(json.dumps(row))
    manifest = work / "run.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return out, manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", type=Path)
    ap.add_argument("cutouts", type=Path, help="png-alpha outputs of bgcut for the photos, same stems")
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/review-bench"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    out, manifest = build(args.photos, args.cutouts, args.entries, args.work)
    t = time.perf_counter()
    summary = make_review(out, manifest)
    print(
        f"page made in {time.perf_counter() - t:.1f} s: {summary.entries} entries, {summary.thumbnails_made} thumbnails"
    )

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
    drawn, loaded = [], []
    try:
        for _ in range(args.runs):
            t = time.perf_counter()
            driver.get((out / "review.html").as_uri())
            while driver.execute_script("return document.querySelectorAll('.entry').length") < 200:
                time.sleep(0.01)
            drawn.append(time.perf_counter() - t)
            visible = (
                "return Array.from(document.images).filter(i => i.getBoundingClientRect().top < innerHeight)"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            while not driver.execute_script(visible):
                time.sleep(0.01)
            loaded.append(time.perf_counter() - t)
    finally:
        driver.quit()
    print(f"entries drawn: median {np.median(drawn):.2f} s (min {min(drawn):.2f}, max {max(drawn):.2f})")
    print(f"thumbnails in view loaded: median {np.median(loaded):.2f} s (min {min(loaded):.2f}, max {max(loaded):.2f})")


if __name__ == "__main__":
    main()
