"""The doubt score, from masks made by hand: each measure sees what it is meant to, and the
manifest carries it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.pipeline.doubt import measure


def _disc(h: int = 300, w: int = 400, r: int = 80) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (w // 2, h // 2), r, 255, -1)
    return cv2.GaussianBlur(m, (0, 0), 1.5)  # a crisp edge, as a good model draws it


def test_a_clean_subject_is_not_doubted() -> None:
    d = measure(_disc())
    assert d.frame == 0.0 and d.pieces == 0.0 and d.extent == 0.0
    assert d.unsure < 0.1 and d.doubt < 0.05


def test_each_measure_sees_its_failure() -> None:
    clean = measure(_disc()).doubt
    wall = _disc()
    wall[:, :60] = 255  # a kept wall down the left side and across the corners
    wall[:40, :] = 255
    assert measure(wall).frame > 0.3 and measure(wall).doubt > clean
    crowd = _disc(r=40)
    for x in (40, 90, 310, 360):  # a crowd of smaller pieces around the subject
        cv2.circle(crowd, (x, 150), 25, 255, -1)
    assert measure(crowd).pieces > 0.4 and measure(crowd).doubt > clean
    ghost = (_disc().astype(np.float32) * 0.5).astype(np.uint8)  # a hesitant, half-there mask
    ghost[100:200, 50:150] = 90
    assert measure(ghost).unsure > 0.9 and measure(ghost).doubt > clean
    speck = np.zeros((300, 400), np.uint8)
    speck[10:14, 10:14] = 255  # almost nothing found
    assert measure(speck).extent > 0.9
    assert measure(np.zeros((300, 400), np.uint8)).extent == 1.0
    big = np.full((300, 400), 255, np.uint8)  # everything taken
    assert measure(big).extent == 1.0 and measure(big).frame == 1.0
    assert all(0.0 <= measure(m).doubt <= 1.0 for m in (wall, crowd, ghost, speck, big))


def test_doubt_in_the_manifest_and_max_doubt(tmp_path: Path, luma_weights: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    picture = np.full((120, 160, 3), 30, np.uint8)
    cv2.circle(picture, (80, 60), 30, (250, 250, 250), -1)
    cv2.imwrite(str(src / "clean.png"), picture)
    noisy = picture.copy()
    noisy[:, :40] = 250  # a bright wall the brightness model keeps
    for x in (110, 130, 150):
        cv2.circle(noisy, (x, 105), 6, (250, 250, 250), -1)
    cv2.imwrite(str(src / "noisy.png"), noisy)
    manifest = tmp_path / "m.jsonl"
    args = [str(src), "-o", str(tmp_path / "out"), "-w", str(luma_weights), "--manifest", str(manifest)]
    result = CliRunner().invoke(app, [*args, "--max-doubt", "0.1"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["input"]).name: r for r in map(json.loads, manifest.read_text().splitlines())}
    clean, bad = rows["clean.png"], rows["noisy.png"]
    assert set(clean["doubt_parts"]) == {"unsure", "frame", "pieces", "extent"}
    assert bad["doubt"] > clean["doubt"] and bad["doubt_parts"]["frame"] > clean["doubt_parts"]["frame"]
    assert [clean["review"], bad["review"]] == [clean["doubt"] > 0.1, bad["doubt"] > 0.1]
    flagged = sum(r["review"] for r in rows.values())
    assert flagged >= 1 and f"{flagged} to review (doubt above --max-doubt)" in result.output
    # A rerun skips both, and its rows keep their doubt (from the earlier rows); without
    # --max-doubt a row has no "review" key at all.
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    again = [json.loads(line) for line in manifest.read_text().splitlines()[2:]]
    kept = {Path(r["input"]).name: r["doubt"] for r in again}
    assert kept == {"clean.png": clean["doubt"], "noisy.png": bad["doubt"]}
    assert all(r["status"] == "skipped" and "review" not in r for r in again)
    result = CliRunner().invoke(app, [*args, "--max-doubt", "1.5"])
    assert result.exit_code == 2 and "--max-doubt 1.5: must be from 0 to 1" in result.output


def test_review_page_without_a_browser(tmp_path: Path, luma_weights: Path) -> None:
    """bgcut review writes one page holding every cut-out's row, worst first once the page sorts,
    with thumbnails made once; a manifest with nothing to review is one usage error."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        picture = np.full((60, 80, 3), 30, np.uint8)
        cv2.circle(picture, (40, 30), 10 + 5 * i, (250, 250, 250), -1)
        cv2.imwrite(str(src / f"p{i}.png"), picture)
    (src / "broken.png").write_bytes(b"not an image")
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    CliRunner().invoke(app, [str(src), "-o", str(out), "-w", str(luma_weights), "--manifest", str(manifest)])
    result = CliRunner().invoke(app, ["review", str(out), "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    assert "3 cut-outs; thumbnails 6 made, 0 kept" in result.output
    page = (out / "review.html").read_text()
    data = json.loads(page.split('<script id="data" type="application/json">')[1].split("</script>")[0])
    assert sorted(Path(e["input"]).name for e in data) == ["p0.png", "p1.png", "p2.png"]  # not the failed one
    assert all(e["src"].startswith("review_files/") and (out / e["cut"]).is_file() for e in data)
    parts = {"unsure", "frame", "pieces", "extent"}
    assert all(isinstance(e["doubt"], float) and set(e["parts"]) == parts for e in data)
    again = CliRunner().invoke(app, ["review", str(out), "--manifest", str(manifest), "-o", str(tmp_path / "r.html")])
    assert again.exit_code == 0 and "thumbnails 6 made" in again.output  # a new page, its own folder
    only_failed = tmp_path / "failed.jsonl"
    only_failed.write_text(json.dumps({"input": "x.png", "status": "failed"}) + "\n")
    bad = CliRunner().invoke(app, ["review", str(out), "--manifest", str(only_failed)])
    assert bad.exit_code == 2 and f"--manifest {only_failed} holds no done or skipped rows to review" in bad.output
