"""Mask post-processing and composition on hand-made masks, checked pixel by pixel."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from bgcut.config import OutputOptions, PostOptions, parse_margin
from bgcut.errors import UsageError
from bgcut.pipeline import postprocess as pp
from bgcut.pipeline.target import load_background


def two_blobs() -> np.ndarray:
    m = np.zeros((40, 60), np.uint8)
    m[5:25, 5:35] = 255  # big: 600 px
    m[30:36, 45:55] = 200  # small: 60 px
    return m


def test_keep_largest_drops_small_object() -> None:
    out = pp.refine(two_blobs(), PostOptions(keep="largest"))
    assert out[10, 10] == 255 and out[32, 50] == 0


def test_fill_holes() -> None:
    m = np.zeros((30, 30), np.uint8)
    m[5:25, 5:25] = 255
    m[12:18, 12:18] = 0  # enclosed hole
    m[0:3, 0:3] = 0
    out = pp.refine(m, PostOptions(fill_holes=True))
    assert out[15, 15] == 255 and out[1, 1] == 0


def test_binary_uses_threshold() -> None:
    m = np.array([[0, 100, 127, 128, 200]], np.uint8)
    assert pp.refine(m, PostOptions(binary=True)).tolist() == [[0, 0, 0, 255, 255]]
    assert pp.refine(m, PostOptions(binary=True, threshold=0.3)).tolist() == [[0, 255, 255, 255, 255]]


def test_erode_dilate_feather() -> None:
    m = np.zeros((41, 41), np.uint8)
    m[5:36, 5:36] = 255
    assert pp.refine(m, PostOptions(erode=2))[5, 20] == 0
    assert pp.refine(m, PostOptions(erode=2))[7, 20] == 255
    assert pp.refine(m, PostOptions(dilate=2))[3, 20] == 255
    feathered = pp.refine(m, PostOptions(feather=4))
    assert 0 < feathered[5, 20] < 255 and feathered[20, 20] == 255


def test_input_alpha_multiplies() -> None:
    mask = np.full((1, 3), 255, np.uint8)
    alpha = np.array([[0, 128, 255]], np.uint8)
    assert pp.apply_input_alpha(mask, alpha).tolist() == [[0, 128, 255]]


def test_composite_on_colour_and_photo() -> None:
    rgb = np.full((2, 2, 3), 200, np.uint8)
    alpha = np.array([[255, 0], [128, 0]], np.uint8)
    out = pp.composite(rgb, alpha, load_background("#000000"))
    assert out[0, 0].tolist() == [200, 200, 200] and out[0, 1].tolist() == [0, 0, 0]
    assert out[1, 0, 0] == round(200 * 128 / 255)
    photo = pp.Background(image=np.full((10, 20, 3), 7, np.uint8))
    assert pp.composite(rgb, alpha, photo)[0, 1].tolist() == [7, 7, 7]


def test_blurred_background_keeps_the_subject_out_of_its_halo() -> None:
    """--bg blur: the photo's own background, blurred. Near the subject it is the background's
    colour, not a smear of the subject's (a plain blur puts half of it there), far away it is the
    plain blur of the background, and the subject itself is as it was."""
    h, w = 200, 300
    rng = np.random.default_rng(0)
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = (20, 40, 200)
    rgb[:, :30] = rng.integers(0, 256, (h, 30, 3), dtype=np.uint8)  # a textured strip, far from the subject
    alpha = np.zeros((h, w), np.uint8)
    rgb[70:130, 120:180], alpha[70:130, 120:180] = (230, 20, 20), 255  # a red subject
    out = pp.composite(rgb, alpha, load_background("blur:8"))
    plain = cv2.GaussianBlur(rgb, (0, 0), 8)
    for y, x in ((66, 150), (100, 116), (134, 150), (100, 184)):  # 4 px outside the subject
        assert plain[y, x, 0] >= 70  # what a plain blur does: the red bleeds out
        assert out[y, x].tolist() == [20, 40, 200], (y, x, out[y, x])
    assert (out[70:130, 120:180] == (230, 20, 20)).all()
    strip = out[60:140, 2:20].astype(int) - plain[60:140, 2:20].astype(int)
    assert np.abs(strip).max() <= 12 and strip.std() < np.abs(rgb[60:140, 2:20].astype(int) - 128).std() / 10
    assert load_background("blur").blur == 15.0
    with pytest.raises(UsageError, match=r"--bg 'blur:0': blur:SIGMA takes a sigma from 0.5 to 500 pixels"):
        OutputOptions(bg="blur:0")
    with pytest.raises(UsageError, match=r"--bg 'blur:x'"):
        OutputOptions(bg="blur:x")


@pytest.mark.parametrize("spec", ["notacolour", "1,2", "300,0,0"])
def test_bad_background(spec: str) -> None:
    with pytest.raises(UsageError, match="--bg"):
        OutputOptions(bg=spec)


def test_margin_and_box() -> None:
    m = np.zeros((100, 100), np.uint8)
    m[40:60, 30:50] = 255
    box, share = pp.coverage(m, 0.5)
    assert box == (30, 40, 50, 60) and share == 0.04
    assert pp.expand_box(box, parse_margin("5"), 100, 100) == (25, 35, 55, 65)
    assert pp.expand_box(box, parse_margin("50%"), 100, 100) == (20, 30, 60, 70)
    assert pp.expand_box(box, parse_margin("100"), 100, 100) == (0, 0, 100, 100)
    for bad, words in (
        ("ten", "--margin 'ten': expected pixels like 16 or a percentage like 10%"),
        ("-1", "--margin -1.0: must be at least 0 (pixels, or percent of the box)"),
        ("nan", "--margin nan: must be at least 0"),
        ("inf%", "--margin inf: must be a finite number, at least 0"),
    ):
        with pytest.raises(UsageError, match=re.escape(words)):
            OutputOptions(format="crop", margin=bad)


def test_object_masks_largest_first_and_min_area() -> None:
    objs = pp.object_masks(two_blobs(), 0.5, min_area=10)
    assert [b for b, _ in objs] == [(5, 5, 35, 25), (45, 30, 55, 36)]
    assert objs[0][1][32, 50] == 0 and objs[1][1][32, 50] == 200
    assert len(pp.object_masks(two_blobs(), 0.5, min_area=100)) == 1


def test_render_formats() -> None:
    rgb = np.full((40, 60, 3), 90, np.uint8)
    mask = two_blobs()
    post = PostOptions()

    def render(fmt: str, m: np.ndarray = mask, **kw: object) -> pp.Rendered:
        return pp.render(rgb, None, m, post, OutputOptions(format=fmt, **kw))  # type: ignore[arg-type]

    assert render("mask").images[0][1].tolist() == mask.tolist()
    rgba = render("png-alpha").images[0][1]
    assert rgba.shape == (40, 60, 4) and rgba[10, 10, 3] == 255 and rgba[0, 0, 3] == 0
    assert render("webp").images[0][1].tolist() == rgba.tolist()
    jpg = render("jpg").images[0][1]
    assert jpg.shape == (40, 60, 3) and jpg[0, 0].tolist() == [255, 255, 255]
    crop = render("crop")
    assert crop.images[0][1].shape == (31, 50, 4) and crop.bbox == (5, 5, 55, 36)
    per = render("crop", per_object=True, min_area=10)
    assert [s for s, _ in per.images] == ["_obj00", "_obj01"] and per.images[1][1].shape == (6, 10, 4)
    empty = render("crop", np.zeros((40, 60), np.uint8))
    assert empty.images == [] and empty.bbox is None and empty.fg_fraction == 0.0
    # --bg on a colour format composites; jpg takes it instead of white
    blue = pp.render(rgb, None, mask, post, OutputOptions(format="jpg", bg="0,0,255"), load_background("0,0,255"))
    assert blue.images[0][1][0, 0].tolist() == [0, 0, 255] and blue.images[0][1][10, 10].tolist() == [90, 90, 90]


def test_every_format_is_declared_once() -> None:
    """The table drives the renderer, the encoder, the CLI's choices and its help: a format added
    to config.FORMATS renders, encodes to its extension and is offered by `bgcut remove`."""
    from bgcut.cli.remove import Format
    from bgcut.config import FORMATS, format_help
    from bgcut.pipeline.writer import ENCODERS, encode

    rgb = np.full((40, 60, 3), 90, np.uint8)
    assert [f.value for f in Format] == list(FORMATS)
    for name, spec in FORMATS.items():
        assert f"{name}: {spec.help}" in format_help()
        assert spec.extension in ENCODERS and spec.pixels in ("alpha", "cutout", "flat")
        image = pp.render(rgb, None, two_blobs(), PostOptions(), OutputOptions(format=name)).images[0][1]
        data = encode(image, spec.extension)
        magic = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".webp": b"RIFF"}[spec.extension]
        assert data.startswith(magic), name


def test_cutout_clears_only_invisible_pixels() -> None:
    rgb = np.full((4, 5, 3), 200, np.uint8)
    rgb[:, :, 1] = 90
    alpha = np.array([[0, 1, 128, 255, 0]] * 4, np.uint8)
    out = pp.cutout(rgb[:, 1:], alpha[:, 1:])  # a non-contiguous view, as crops pass
    assert out.shape == (4, 4, 4) and out.dtype == np.uint8
    assert (out[..., 3] == alpha[:, 1:]).all()
    assert (out[:, :3, :3] == [200, 90, 200]).all()  # alpha 1..255: colour untouched (straight alpha)
    assert (out[:, 3, :3] == 0).all()  # alpha 0: RGB cleared


def _shapes(n: int = 600) -> np.ndarray:
    m = np.zeros((n, n), np.uint8)
    cv2.circle(m, (n // 2, n // 2), n // 4, 255, -1)
    cv2.rectangle(m, (20, 20), (n - 20, 22), 255, -1)  # a 3-pixel wire: a dilation must keep it
    cv2.circle(m, (n - 90, n - 90), 60, 160, -1)  # a soft plateau (hair): keeps its level
    return cv2.GaussianBlur(m, (0, 0), 1.5)


@pytest.mark.parametrize("radius", [37, 80, 200])
@pytest.mark.parametrize("dilate", [False, True])
def test_wide_erode_and_dilate_match_the_exact_disk(radius: int, dilate: bool) -> None:
    # Radii over 36 px run shrunk (the cost would grow as r^1.5); the edge stays within a few pixels.
    m = _shapes()
    exact = (cv2.dilate if dilate else cv2.erode)(m, pp._disk(radius))
    fast = pp.morph(m, radius, dilate)
    assert fast.shape == m.shape and fast.dtype == np.uint8
    differ = ((exact >= 128) != (fast >= 128)).mean()
    assert differ < 0.005, differ
    assert np.abs(exact.astype(int) - fast).mean() < 1.5
    assert abs(int((fast >= 128).sum()) - int((exact >= 128).sum())) < 0.003 * m.size  # the same area


def test_small_radii_are_exact() -> None:
    m = _shapes(200)
    for r in (1, 5, 24, 36):
        assert np.array_equal(pp.morph(m, r, False), cv2.erode(m, pp._disk(r)))
        assert np.array_equal(pp.morph(m, r, True), cv2.dilate(m, pp._disk(r)))


def test_a_wide_dilation_keeps_thin_parts_and_soft_levels() -> None:
    m = _shapes()
    out = pp.morph(m, 60, True)
    exact = cv2.dilate(m, pp._disk(60))
    wire, band = m[21, 300], out[21 + 55, 300]  # the wire (its blurred peak) grew into a band
    assert wire > 150 and abs(int(band) - int(exact[21 + 55, 300])) <= 3 and abs(int(band) - int(wire)) <= 3
    beside = out[600 - 90, 600 - 90 - 110]  # within 60 px of the plateau: its level, not steepened to 255
    assert abs(int(beside) - int(exact[600 - 90, 600 - 90 - 110])) <= 3 and 150 <= beside <= 170


def test_a_wide_feather_matches_the_exact_blur() -> None:
    m = _shapes()
    exact = cv2.GaussianBlur(m, (0, 0), sigmaX=100)
    assert np.abs(exact.astype(int) - pp.feather(m, 100)).max() <= 3


def test_composite_in_strips_blends_every_row() -> None:
    rgb = np.full((600, 7, 3), 200, np.uint8)
    alpha = np.tile(np.linspace(0, 255, 600).astype(np.uint8)[:, None], (1, 7))
    out = pp.composite(rgb, alpha, pp.Background(color=(0, 0, 100)))
    a = (alpha / 255.0)[..., None]
    want = np.clip(200 * a + np.array([0, 0, 100]) * (1 - a) + 0.5, 0, 255)
    assert np.array_equal(out, want.astype(np.uint8))


def test_box_and_share_match_the_plain_numpy_answer() -> None:
    """``coverage`` (OpenCV's box and count) against np.nonzero and the mean,
    on random masks: empty, one rectangle, a rectangle and a stray pixel, at four thresholds."""
    from bgcut.pipeline.postprocess import coverage, hard

    rng = np.random.default_rng(0)
    for k in range(300):
        h, w = (int(v) for v in rng.integers(1, 300, 2))
        m = np.zeros((h, w), np.uint8)
        if k % 5:
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            m[y0 : int(rng.integers(y0, h)) + 1, x0 : int(rng.integers(x0, w)) + 1] = rng.integers(0, 256)
            if k % 2:
                m[rng.integers(0, h), rng.integers(0, w)] = rng.integers(0, 256)
        for t in (0.0, 0.1, 0.5, 1.0):
            ys, xs = np.nonzero(hard(m, t))
            want = None if xs.size == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            assert coverage(m, t) == (want, float(hard(m, t).mean())), (k, t)
