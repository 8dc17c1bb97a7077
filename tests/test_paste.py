"""bgcut paste: exact visible masks, COCO loading, determinism, resume, bad inputs, YOLO labels."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.paste import PasteOptions, paste_dataset
from bgcut.paste.annotations import decode_mask, mask_polygon

from .conftest import default_sigint

# Solid colours, one per cut-out; the backgrounds use none of them, and with jitter and
# blending off a pixel of a cut-out's colour can only come from that cut-out.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]
EXACT = PasteOptions(per_image=(2, 5), jitter=0.0, blends=("none",), image_format="png", max_occlusion=0.6)


def _shape(k: int) -> np.ndarray:
    a = np.zeros((60, 90), np.uint8)
    if k % 2 == 0:
        cv2.ellipse(a, (45, 30), (40, 25), 0, 0, 360, 255, -1)
        cv2.circle(a, (45, 30), 8, 0, -1)  # a hole: visible masks must keep it
    else:
        cv2.rectangle(a, (4, 4), (85, 55), 255, -1)
        cv2.rectangle(a, (20, 15), (35, 45), 0, -1)
    return cv2.GaussianBlur(a, (5, 5), 1.5)  # soft edges, as real cut-outs have


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("paste-in")
    for k, colour in enumerate(COLOURS):
        folder = root / "cut" / ("disc" if k % 2 == 0 else "box")
        folder.mkdir(parents=True, exist_ok=True)
        rgba = np.dstack([np.full((60, 90, 3), colour, np.uint8), _shape(k)])
        Image.fromarray(rgba).save(folder / f"c{k}.png")
    (root / "bg").mkdir()
    for k in range(3):
        Image.fromarray(np.full((150, 200, 3), (20 + 30 * k, 20, 20), np.uint8)).save(root / "bg" / f"b{k}.png")
    return root / "cut", root / "bg"


def _colour_of(source: str) -> tuple[int, int, int]:
    return COLOURS[int(Path(source).stem[1:])]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_coco_masks_are_exactly_the_visible_pixels(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    cut, bg = inputs
    summary = paste_dataset([str(cut)], str(bg), tmp_path, 12, EXACT, workers=0)
    assert summary.ok and summary.done == 12
    coco = COCO(str(tmp_path / "annotations.json"))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["box", "disc"]
    checked = 0
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        image = np.asarray(Image.open(tmp_path / info["file_name"]).convert("RGB"))
        assert image.shape[:2] == (info["height"], info["width"])
        record = json.loads((tmp_path / "records" / (Path(info["file_name"]).stem + ".json")).read_text())
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(anns) == len(record["objects"]) >= 1
        union: dict[tuple[int, int, int], np.ndarray] = {}
        taken = np.zeros(image.shape[:2], bool)
        for ann, obj in zip(anns, record["objects"], strict=True):
            mask = coco.annToMask(ann).astype(bool)
            assert mask.any()
            assert not (mask & taken).any(), "two annotations claim the same pixel"
            taken |= mask
            assert ann["area"] == int(mask.sum())
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert coco.loadCats(ann["category_id"])[0]["name"] == obj["category"]
            assert obj["occluded"] <= EXACT.max_occlusion + 1e-6
            colour = _colour_of(obj["source"])
            union[colour] = union.get(colour, np.zeros_like(mask)) | mask
            checked += 1
        for colour in COLOURS:
            painted = (image == colour).all(axis=2)
            np.testing.assert_array_equal(union.get(colour, np.zeros_like(painted)), painted)
    assert checked >= 24


def test_blending_changes_pixels_never_masks(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    cut, bg = inputs
    masks = {}
    for blend in ("none", "gaussian", "poisson", "motion", "none,gaussian,poisson,motion"):
        # Jitter, and how many blend modes there are to draw from, must not move anything either.
        blends, jitter = tuple(blend.split(",")), 0.0 if blend == "none" else 0.3
        opt = PasteOptions(per_image=(2, 4), jitter=jitter, blends=blends, image_format="png", seed=3)
        out = tmp_path / blend
        assert paste_dataset([str(cut)], str(bg), out, 4, opt, workers=0).ok
        recs = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
        masks[blend] = [[o["segmentation"] for o in r["objects"]] for r in recs]
        if blend != "none":
            a = np.asarray(Image.open(out / "images/000000.png"))
            b = np.asarray(Image.open(tmp_path / "none/images/000000.png"))
            assert (a != b).any()
    assert masks["none"] == masks["gaussian"] == masks["poisson"] == masks["motion"]
    assert masks["none"] == masks["none,gaussian,poisson,motion"]


def test_same_seed_byte_identical_whatever_the_workers(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    cut, bg = inputs
    opt = PasteOptions(seed=7, size=(160, 120), yolo=True)
    paste_dataset([str(cut)], str(bg), tmp_path / "a", 8, opt, workers=0)
    paste_dataset([str(cut)], str(bg), tmp_path / "b", 8, opt, workers=2)
    paste_dataset([str(cut)], str(bg), tmp_path / "c", 8, PasteOptions(seed=8, size=(160, 120), yolo=True), workers=0)
    a, b, c = (_files(tmp_path / x) for x in "abc")
    for files in (a, b, c):
        files.pop("data.yaml")  # it names its own folder
    assert a == b
    assert a["images/000000.jpg"] != c["images/000000.jpg"]
    assert Image.open(tmp_path / "a/images/000000.jpg").size == (160, 120)


def test_resume_and_growing_count(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    cut, bg = inputs
    first = paste_dataset([str(cut)], str(bg), tmp_path / "r", 3, EXACT, workers=0)
    assert (first.done, first.skipped) == (3, 0)
    again = paste_dataset([str(cut)], str(bg), tmp_path / "r", 5, EXACT, workers=0)
    assert (again.done, again.skipped) == (2, 3)
    paste_dataset([str(cut)], str(bg), tmp_path / "fresh", 5, EXACT, workers=0)
    assert _files(tmp_path / "r") == _files(tmp_path / "fresh")
    assert len(json.loads((tmp_path / "r/annotations.json").read_text())["images"]) == 5


def test_other_settings_refused_then_overwrite(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    cut, bg = inputs
    runner = CliRunner()
    args = ["paste", str(cut), "--backgrounds", str(bg), "-o", str(tmp_path), "-n", "2", "--no-progress", "-j", "0"]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, [*args, "--seed", "1"])
    assert res.exit_code == 2
    assert "other settings (options differ)" in res.output and "--overwrite" in res.output
    res = runner.invoke(app, [*args, "--seed", "1", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert "2 made, 0 skipped" in res.output


def test_bad_cutouts_reported_rest_still_made(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    cut, bg = inputs
    bad = tmp_path / "cut"
    for p in cut.rglob("*.png"):
        (bad / p.parent.name).mkdir(parents=True, exist_ok=True)
        (bad / p.parent.name / p.name).write_bytes(p.read_bytes())
    (bad / "disc" / "notes.png").write_text("not an image")
    Image.new("RGB", (40, 40), "white").save(bad / "box" / "opaque.png")
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(bad / "box" / "clear.png")
    res = CliRunner().invoke(
        app, ["paste", str(bad), "--backgrounds", str(bg), "-o", str(tmp_path / "o"), "-n", "30", "--no-progress"]
    )
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert f"bgcut: error: {bad / 'disc' / 'notes.png'}: not an image, or a format PIL cannot identify" in lines
    no_alpha = (
        "no alpha channel, so nothing to cut by: make cut-outs with `bgcut PHOTOS -o CUTOUTS --format crop` "
        "(or --format png-alpha)"
    )
    assert f"bgcut: error: {bad / 'box' / 'opaque.png'}: {no_alpha}" in lines
    assert f"bgcut: error: {bad / 'box' / 'clear.png'}: fully transparent: nothing to paste" in lines
    assert sum("notes.png" in line for line in lines) == 1  # once, however often it was drawn
    assert "30 made, 0 skipped, 0 failed" in res.output
    coco = json.loads((tmp_path / "o/annotations.json").read_text())
    assert len(coco["images"]) == 30 and coco["annotations"]
    assert not list((tmp_path / "o").rglob("*.bgcut-tmp"))


def test_plain_photos_are_refused_up_front(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    """JPEGs (no alpha) given as cut-outs: before, 3 pictures with 0 annotations were reported as made."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (200, 50, 50)).save(photos / f"p{i}.jpg")
    res = CliRunner().invoke(
        app, ["paste", str(photos), "--backgrounds", str(inputs[1]), "-o", str(tmp_path / "o"), "-n", "3"]
    )
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"bgcut: error: none of the 3 image(s) in {photos} has an alpha channel to cut by: make cut-outs with "
        "`bgcut PHOTOS -o CUTOUTS --format crop` (or --format png-alpha)"
    ]
    assert not (tmp_path / "o").exists()


def test_quiet_means_what_it_means_in_remove(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """-q/--quiet: no bar, no summary, no annotations line; errors are still printed, exit status unchanged."""
    cut, bg = tmp_path / "cut", inputs[1]
    shutil.copytree(inputs[0], cut)  # the fixture is shared: the broken file goes into a copy
    args = ["paste", str(cut), "--backgrounds", str(bg), "-n", "2", "-j", "0"]
    res = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 0 and res.output == ""
    assert len(list((tmp_path / "o" / "images").glob("*.jpg"))) == 2
    (cut / "disc" / "notes.png").write_text("not an image")
    res = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "o2"), "--quiet", "-n", "30"])
    assert res.exit_code == 1
    assert (
        res.output.splitlines()[0]
        == f"bgcut: error: {cut / 'disc' / 'notes.png'}: not an image, or a format PIL cannot identify"
    )
    assert "30 made" not in res.output and "annotations in" not in res.output
    assert res.output.splitlines()[-1] == "bgcut: error: 1 input(s) could not be read, 0 picture(s) not made"


def test_usage_errors(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    cut, bg = inputs
    runner = CliRunner()
    base = ["paste", str(cut), "--backgrounds", str(bg), "-o", str(tmp_path), "-n", "2"]
    res = runner.invoke(app, [*base, "--blend", "none,smudge"])
    assert res.exit_code == 2 and "--blend: unknown mode 'smudge'" in res.output
    res = runner.invoke(app, [*base, "--per-image", "5-2"])
    assert res.exit_code == 2 and "--per-image: need 0 <= MIN <= MAX, got 5-2" in res.output
    for flag, value, words in (
        ("--jitter", "-0.1", "--jitter -0.1: must be at least 0"),
        ("--rotation", "nan", "--rotation nan: must be at least 0"),
        ("--rotation", "inf", "--rotation inf: must be a finite number, at least 0"),  # numpy raised in a composer
        ("--jitter", "inf", "--jitter inf: must be a finite number, at least 0"),
        ("--max-occlusion", "1.5", "--max-occlusion 1.5: must be from 0 to 1"),
    ):
        res = runner.invoke(app, [*base, flag, value])
        assert res.exit_code == 2 and f"bgcut: error: {words}\n" in res.output, res.output
    res = runner.invoke(app, ["paste", str(tmp_path), "--backgrounds", str(bg), "-o", str(tmp_path / "o"), "-n", "1"])
    assert res.exit_code == 2 and "no cut-outs found" in res.output


def test_classes_mapping(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    cut, bg = inputs
    opt = PasteOptions(classes={"*c0.png": "zero", "*c1.png": "one"})
    paste_dataset([str(cut)], str(bg), tmp_path, 6, opt, workers=0)
    names = {c["name"] for c in json.loads((tmp_path / "annotations.json").read_text())["categories"]}
    assert names == {"zero", "one", "box", "disc"}


def test_yolo_labels_trace_the_masks(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    cut, bg = inputs
    opt = PasteOptions(per_image=(3, 5), yolo=True, image_format="png", seed=2)
    paste_dataset([str(cut)], str(bg), tmp_path, 4, opt, workers=0)
    assert 'names:\n  0: "box"\n  1: "disc"\n' in (tmp_path / "data.yaml").read_text()
    for rec_path in sorted((tmp_path / "records").glob("*.json")):
        rec = json.loads(rec_path.read_text())
        lines = (tmp_path / "labels" / (rec_path.stem + ".txt")).read_text().splitlines()
        assert len(lines) == len(rec["objects"])
        for line, obj in zip(lines, rec["objects"], strict=True):
            cls, *coords = line.split()
            assert int(cls) == ["box", "disc"].index(obj["category"])
            xy = np.array(coords, float).reshape(-1, 2)
            assert ((xy >= 0) & (xy <= 1)).all()
            filled = np.zeros((rec["height"], rec["width"]), np.uint8)
            pts = np.rint(xy * [rec["width"], rec["height"]]).astype(np.int32)
            cv2.fillPoly(filled, [pts], 1)
            mask = decode_mask(obj["segmentation"])
            outline = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            inner = mask & ~outline
            # Polygons cannot hold holes; apart from the hole, the outline's width decides the overlap.
            assert (filled.astype(bool) & inner).sum() / inner.sum() > 0.9


def test_polygon_joins_separate_pieces() -> None:
    mask = np.zeros((40, 60), bool)
    mask[5:15, 5:20] = True
    mask[25:35, 35:55] = True
    poly = mask_polygon(mask)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(filled, [poly.astype(np.int32)], 1)
    assert filled[10, 10] and filled[30, 45]  # both pieces inside the one polygon
    assert not filled[10, 50] and not filled[30, 10]  # nor the space around them
    assert filled.sum() - mask.sum() < 25  # the bridge is a line: a pixel wide


def test_sigint_mid_run_then_resume(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    cut, bg = inputs
    out = tmp_path / "o"
    n = 150
    cmd = [sys.executable, "-m", "bgcut", "paste", str(cut), "--backgrounds", str(bg), "-o", str(out)]
    cmd += ["-n", str(n), "-j", "2", "--size", "640x480", "--blend", "poisson", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "records").glob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "(interrupted)" in err
    done = sorted((out / "records").glob("*.json"))
    assert 0 < len(done) < n
    assert not list(out.rglob(".*.bgcut-tmp")), "temporary files left behind"
    assert not (out / "annotations.json").exists()  # never a partial annotation file
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n - len(done)} made, {len(done)} skipped, 0 failed" in rerun.stderr
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == n


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _workers_of(main: int) -> list[int]:
    """The paste workers: children of the fork server, which is a child of the main process."""
    return [w for server in _children(main) for w in _children(server)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc for the worker processes")
def test_a_worker_killed_mid_run_costs_no_picture_and_the_pictures_are_the_same(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    """multiprocessing.Pool waited forever for the picture a killed worker held: 599 of 600 made, then a hang."""
    import signal
    import subprocess
    import sys
    import time

    cut, bg = inputs
    n = 120
    cmd = [
        sys.executable,
        "-m",
        "bgcut",
        "paste",
        str(cut),
        "--backgrounds",
        str(bg),
        "-n",
        str(n),
        "--size",
        "640x480",
    ]
    proc = subprocess.Popen([*cmd, "-o", str(tmp_path / "o"), "-j", "2"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((tmp_path / "o" / "records").glob("*.json"))) < 3:
        time.sleep(0.02)
    workers = _workers_of(proc.pid)
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"bgcut paste: {n} made, 0 skipped, 0 failed" in err
    assert any(line.startswith("bgcut: warning: a worker process died; its ") for line in err.splitlines()), err
    alone = subprocess.run([*cmd, "-o", str(tmp_path / "j0"), "-j", "0"], capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0, alone.stderr
    made, reference = _files(tmp_path / "o"), _files(tmp_path / "j0")
    assert {k: v for k, v in made.items() if k != "paste.json"} == {
        k: v for k, v in reference.items() if k != "paste.json"
    }


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc for the worker processes")
def test_workers_end_when_the_main_process_is_killed(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """A pool's workers waited for work forever once kill -9 had taken the main process."""
    import signal
    import subprocess
    import sys
    import time

    cut, bg = inputs
    cmd = [sys.executable, "-m", "bgcut", "paste", str(cut), "--backgrounds", str(bg), "-o", str(tmp_path / "o")]
    proc = subprocess.Popen([*cmd, "-n", "100000", "-j", "2"], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((tmp_path / "o" / "records").glob("*.json"))) < 3:
        time.sleep(0.02)
    workers = _workers_of(proc.pid)
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "workers outlived the main process"


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_plain_script_without_main_guard(inputs: tuple[Path, Path], tmp_path: Path, how: str) -> None:
    """``paste_dataset`` from a script with no ``if __name__ == "__main__":`` guard, run as a file or
    piped into ``python -``: its worker processes must not run the script again."""
    from .conftest import run_plain_script

    cut, bg = inputs
    script = (
        "from bgcut.paste import paste_dataset\n"
        f"s = paste_dataset([{str(cut)!r}], {str(bg)!r}, {str(tmp_path / 'out')!r}, 6, workers=2)\n"
        "print('made', s.done, s.failed)\n"
    )
    result = run_plain_script(script, how, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["made", "6", "0"], result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len(list((tmp_path / "out" / "images").glob("*.jpg"))) == 6
