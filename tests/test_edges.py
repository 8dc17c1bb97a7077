"""Edges at full resolution (--refine) and foreground colours (--decontaminate), on pictures whose
true edge and true colours are known."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.config import OutputOptions, PostOptions
from bgcut.errors import UsageError
from bgcut.pipeline import edges
from bgcut.pipeline.matting import closed_form_alpha, trimap
from bgcut.pipeline.postprocess import render
from bgcut.pipeline.target import load_background

EDGE = 50  # the photo's true edge: x < EDGE is the object
RED, BLUE = (220, 30, 30), (20, 40, 230)


def two_halves(h: int = 40, w: int = 100) -> np.ndarray:
    photo = np.zeros((h, w, 3), np.uint8)
    photo[:, :EDGE], photo[:, EDGE:] = RED, BLUE
    return photo


def ramp(h: int = 40, w: int = 100, lo: int = 40, hi: int = 60) -> np.ndarray:
    """What an upsampled low-resolution mask looks like: 255 left of ``lo``, 0 right of ``hi``, a ramp between."""
    x = np.arange(w)
    return np.tile((np.clip((hi - x) / (hi - lo), 0, 1) * 255).round().astype(np.uint8), (h, 1))


def edge_error(mask: np.ndarray) -> float:
    truth = np.zeros(mask.shape, np.float32)
    truth[:, :EDGE] = 255
    return float(np.abs(mask.astype(np.float32) - truth).mean())


def test_guided_filter_moves_the_soft_edge_onto_the_photos_edge() -> None:
    # A low-resolution mask misplaced by 5 px: its 0.5 crossing is at x = 55, the photo's edge at 50.
    mask = ramp(lo=45, hi=65)
    assert (mask[20] >= 128).sum() == 56
    refined = edges.guided_filter(two_halves(), mask, radius=12, eps=1e-3)
    row = refined[20].astype(int)
    assert (refined >= 128).sum(axis=1).tolist() == [EDGE] * 40  # the crossing is on the edge, every row
    assert row[EDGE - 1] - row[EDGE] > 100 and abs(int(mask[20, EDGE - 1]) - int(mask[20, EDGE])) <= 13
    # Far from any edge the mask is left as it was.
    assert (refined[:, :30] >= 250).all() and (refined[:, 80:] <= 5).all()


def test_guided_filter_keeps_a_mask_that_is_already_on_the_edge() -> None:
    hard = np.zeros((40, 100), np.uint8)
    hard[:, :EDGE] = 255
    assert np.abs(edges.guided_filter(two_halves(), hard, 8, 1e-3).astype(int) - hard).max() <= 2


def test_fast_guided_filter_matches_the_full_one_closely() -> None:
    mask, photo = ramp(80, 200, 80, 120), two_halves(80, 200)
    photo[:, 100:] = BLUE  # the edge at x = 100, inside the ramp
    photo[:, :100] = RED
    full = edges.guided_filter(photo, mask, 8, 1e-3, factor=1).astype(int)
    fast = edges.guided_filter(photo, mask, 8, 1e-3, factor=2).astype(int)
    assert np.abs(full - fast).mean() < 3


def test_refine_edges_scales_with_how_far_the_mask_was_stretched() -> None:
    photo, mask = two_halves(), ramp()
    assert edges.refine_edges(photo, mask, 256, "none", 1e-3) is mask
    # A 25 px model stretched to 100 px: 4 photo px per model px, radius GUIDED_RADIUS * 4 = 8, the
    # coefficients on 2 x 2 blocks; computed only in a box around the edge, with the same result.
    expected = edges.guided_filter(photo, mask, 8, 1e-3, factor=2)
    assert np.array_equal(edges.refine_edges(photo, mask, 25, "guided", 1e-3), expected)
    # A mask far larger than its edge: outside the box around the edge nothing is touched.
    wide = np.zeros((40, 400), np.uint8)
    wide[:, :300] = 255
    wide[:, 290:310] = ramp(40, 20, 0, 20)
    photo = np.zeros((40, 400, 3), np.uint8)
    photo[:, :300] = RED
    photo[:, 300:] = BLUE
    refined = edges.refine_edges(photo, wide, 100, "guided", 1e-3)
    assert np.array_equal(refined[:, :250], wide[:, :250])
    assert (refined[:, 300] < 128).all() and (refined[:, 299] >= 128).all()


def composite(alpha: np.ndarray, fg: tuple[int, int, int], bg: tuple[int, int, int]) -> np.ndarray:
    a = alpha.astype(np.float32)[:, :, None] / 255
    return (a * np.array(fg, np.float32) + (1 - a) * np.array(bg, np.float32) + 0.5).astype(np.uint8)


def test_foreground_colour_is_recovered_where_alpha_is_partial() -> None:
    alpha = ramp()
    fg, bg = (200, 120, 40), (0, 0, 255)
    photo = composite(alpha, fg, bg)
    est = edges.estimate_foreground(photo, alpha, radii=(90, 6))  # the published radii, wider than the ramp
    partial = (alpha > 25) & (alpha < 230)
    kept_error = np.abs(photo[partial].astype(int) - fg).mean()
    est_error = np.abs(est[partial].astype(int) - fg).mean()
    assert kept_error > 40 and est_error < 10, (kept_error, est_error)
    # Opaque and transparent pixels keep the photo's colour exactly.
    solid = (alpha == 0) | (alpha == 255)
    assert np.array_equal(est[solid], photo[solid])
    # A hard mask: nothing to estimate, and nothing is computed.
    hard = np.where(alpha > 127, 255, 0).astype(np.uint8)
    assert edges.estimate_foreground(photo, hard) is photo
    # Too narrow a first pass sees no pure colour inside the ramp: decontaminate() widens it with the stretch.
    assert np.abs(edges.estimate_foreground(photo, alpha, radii=(5, 3))[partial].astype(int) - fg).mean() > 20


def test_decontaminate_changes_colour_outputs_only_and_never_the_alpha() -> None:
    alpha = ramp()
    photo = composite(alpha, (200, 120, 40), (0, 0, 255))
    # A 25 px model's mask stretched 4x: colours are estimated up to 16 px from the outline.
    plain = render(photo, None, alpha, PostOptions(), OutputOptions(), model_size=25).images[0][1]
    clean = render(photo, None, alpha, PostOptions(decontaminate=True), OutputOptions(), model_size=25).images[0][1]
    assert np.array_equal(plain[:, :, 3], clean[:, :, 3])
    partial = (alpha > 25) & (alpha < 230)
    kept = np.abs(plain[partial][:, :3].astype(int) - (200, 120, 40)).mean()
    assert np.abs(clean[partial][:, :3].astype(int) - (200, 120, 40)).mean() < 0.25 * kept
    mask = render(photo, None, alpha, PostOptions(decontaminate=True), OutputOptions(format="mask")).images[0][1]
    assert np.array_equal(mask, alpha)
    # On a new background the halo is gone: pasted on green, the partial pixels hold no blue.
    green, on = load_background("0,255,0"), OutputOptions(format="jpg", bg="0,255,0")
    on_green = render(photo, None, alpha, PostOptions(decontaminate=True), on, green, 25).images[0][1]
    plain_green = render(photo, None, alpha, PostOptions(), on, green, 25).images[0][1]
    # What should be there: the true foreground (200, 120, 40) over green.
    a = alpha[partial].astype(np.float32)[:, None] / 255
    want = a * np.array((200, 120, 40)) + (1 - a) * np.array((0, 255, 0))
    assert np.abs(on_green[partial] - want).mean() < 0.25 * np.abs(plain_green[partial] - want).mean()


def test_decontaminate_keeps_the_colours_of_regions_the_model_is_unsure_of() -> None:
    """Partial alpha far from the outline (a whole shirt at alpha 0.6) is the model's doubt, not a
    halo: its colours stay; only the band along the outline is recoloured."""
    photo = np.zeros((40, 200, 3), np.uint8)
    photo[:, :40], photo[:, 40:] = RED, BLUE
    alpha = np.zeros((40, 200), np.uint8)
    alpha[:, :100] = 100  # unsure over a wide region, outside the outline
    alpha[:, :40] = 255
    est = edges.estimate_foreground(photo, alpha, near=4)
    assert np.array_equal(est[:, 45:95], photo[:, 45:95])  # more than 4 px from the outline at x = 40
    assert not np.array_equal(est[:, 40:44], photo[:, 40:44])


def test_matting_solves_the_band_on_a_known_edge() -> None:
    mask = ramp()
    tri = trimap(mask, band=3)
    assert set(np.unique(tri)) == {0.0, 0.5, 1.0} and tri[20, 30] == 1.0 and tri[20, 70] == 0.0
    solved, note = closed_form_alpha(two_halves(), mask, band=3)
    assert note is None
    assert (solved[:, :EDGE] >= 250).all() and (solved[:, EDGE:] <= 5).all()
    assert edge_error(solved) < 0.1 * edge_error(mask)
    unsure = np.full((40, 100), 128, np.uint8)  # no sure foreground to solve from: left as it is
    assert np.array_equal(closed_form_alpha(two_halves(), unsure, band=3)[0], unsure)


def test_matting_in_tiles_matches_one_solve_and_refuses_a_wide_band(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded on large photos because the band is solved in tiles with context around
    each: they must give what one solve gives. A band over the limit is left as the model made it."""
    from bgcut.pipeline import matting

    photo, mask = np.tile(two_halves(), (3, 1, 1)), np.tile(ramp(), (3, 1))  # 120 x 100
    whole, _ = closed_form_alpha(photo, mask, band=3)
    monkeypatch.setattr(matting, "TILE", 32)
    monkeypatch.setattr(matting, "MARGIN", 16)
    tiled, note = closed_form_alpha(photo, mask, band=3)
    assert note is None and np.abs(tiled.astype(int) - whole.astype(int)).max() <= 2
    assert edge_error(tiled) < 0.1 * edge_error(mask)
    monkeypatch.setattr(matting, "MAX_BAND_PIXELS", 100)
    kept, note = closed_form_alpha(photo, mask, band=3)
    assert np.array_equal(kept, mask)
    band = int((trimap(mask, 3) == 0.5).sum())
    assert note == (
        f"--refine matting left out: the mask's uncertain band holds {band:,} pixels, over the limit of 100; "
        "the model's mask is kept"
    )


def test_pymatting_prints_become_one_warning(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """pymatting prints a multi-line warning to stdout, which with `-o -` is the image itself."""
    import pymatting

    def noisy(image: np.ndarray, tri: np.ndarray) -> np.ndarray:
        print("PERFORMANCE WARNING:\nThresholded incomplete Cholesky decomposition failed ...\n")
        return np.clip(tri, 0, 1)

    monkeypatch.setattr(pymatting, "estimate_alpha_cf", noisy)
    _, note = closed_form_alpha(two_halves(), ramp(), band=3)
    assert capsys.readouterr().out == ""
    assert note == (
        "--refine matting: the solver's preconditioner needed a larger shift in 1 tile(s) "
        "(pymatting's performance warning): slower, same result"
    )


def test_matting_warns_on_large_photos() -> None:
    photo = np.zeros((1500, 1500, 3), np.uint8)
    mask = np.zeros((1500, 1500), np.uint8)  # nothing to solve: fast, but still 2.25 MP
    result = render(photo, None, mask, PostOptions(refine="matting"), OutputOptions(format="mask"))
    assert result.warning == (
        "--refine matting on a 2.2 MP image: closed-form matting takes seconds to minutes per megapixel"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--refine", "blur"],
            "Invalid value for '--refine': Value error, 'blur' is not one of 'none', 'guided', 'matting'.",
        ),  # noqa: E501
        (["--refine-eps", "0"], "--refine-eps 0.0: must be above 0 and at most 1"),
    ],
)
def test_bad_edge_options_are_one_line(tmp_path: Path, extra: list[str], message: str, luma_weights: Path) -> None:
    Image.fromarray(two_halves()).save(tmp_path / "in.png")
    cmd = [
        sys.executable,
        "-m",
        "bgcut",
        str(tmp_path / "in.png"),
        "-o",
        str(tmp_path / "out"),
        "-w",
        str(luma_weights),
    ]
    done = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"bgcut: error: {message}" + (" (see `bgcut remove --help`)" if "Invalid" in message else "")
    ]
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="--refine 'blur'"):
        PostOptions(refine="blur")


def test_a_folder_from_before_the_edge_options_still_resumes(tmp_path: Path, luma_weights: Path) -> None:
    Image.fromarray(two_halves()).save(tmp_path / "in.png")
    args = [str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "-w", str(luma_weights), "--refine", "none"]
    assert CliRunner().invoke(app, [*args, "--no-decontaminate"]).exit_code == 0
    settings = tmp_path / "out" / ".bgcut-settings.json"
    old = {
        k: v
        for k, v in json.loads(settings.read_text()).items()
        if k not in ("--refine", "--refine-eps", "--decontaminate")
    }
    settings.write_text(json.dumps(old))  # as the version before these options wrote it
    res = CliRunner().invoke(app, [*args, "--no-decontaminate"])
    assert res.exit_code == 0 and "0 done, 1 skipped" in res.output
    res = CliRunner().invoke(app, [*args, "--decontaminate"])
    assert res.exit_code == 2 and "--decontaminate False (now True)" in res.output


def test_a_slow_pymatting_import_is_said(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, luma_weights: Path) -> None:
    """numba compiles pymatting's kernels on its first import on a machine: 45 s that looked like a hang."""
    from bgcut.pipeline import matting

    monkeypatch.setattr(matting, "SLOW_IMPORT_S", -1.0)  # any import counts as slow
    Image.fromarray(two_halves()).save(tmp_path / "p.png")
    result = CliRunner().invoke(app, [str(tmp_path / "p.png"), "-o", str(tmp_path / "o"), "-w", str(luma_weights),
                                      "--refine", "matting"])  # fmt: skip
    assert result.exit_code == 0, result.output
    note = result.output.splitlines()[0]
    assert note.startswith("bgcut: note: --refine matting: pymatting took ") and note.endswith(
        "s to load (numba compiles its kernels once per machine)"
    )


def test_foreground_in_strips_is_the_whole_picture_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Strips bound the float planes' memory; each has the passes' reach of context, so the seams vanish.
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (700, 90, 3), dtype=np.uint8)
    alpha = cv2.GaussianBlur((rng.random((700, 90)) > 0.5).astype(np.uint8) * 255, (0, 0), 3)
    strips = edges.estimate_foreground(photo, alpha, radii=(20, 3), near=40)
    monkeypatch.setattr(edges, "STRIP_ROWS", 10_000)
    whole = edges.estimate_foreground(photo, alpha, radii=(20, 3), near=40)
    assert np.abs(strips.astype(int) - whole).max() <= 1
    assert (strips != photo).any()  # it recoloured something
