"""Video inputs: each output kind, timestamps, rotation, audio, resume and broken files.

Every clip is made here with PyAV: a white square moving across black, so the luma test model's
mask is known in every frame. Nothing reads ../shared.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.config import OutputOptions, RunOptions, VideoOptions
from bgcut.run import remove_backgrounds
from bgcut.video.stability import Steady

av = pytest.importorskip("av")

W, H, N = 64, 48, 8


def square_frame(i: int, w: int = W, h: int = H, top: int = 12) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    x = 4 + 4 * i
    img[top : top + 24, x : x + 20] = 255
    return img


def make_clip(
    path: Path,
    n: int = N,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
    rotation: int | None = None,
    audio: str | None = None,
    w: int = W,
    h: int = H,
    top: int = 12,
) -> Path:
    """A clip of ``n`` square frames at 24 fps (or at the given ``pts``, in 1/24 s units... of 1/96 s)."""
    out = av.open(str(path), "w")
    stream = out.add_stream(codec, rate=24)
    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
    stream.codec_context.options = {"crf": "0"} if codec == "libx264" else {}
    if pts is not None:
        stream.codec_context.time_base = Fraction(1, 96)
    if rotation is not None:
        stream.set_display_rotation(rotation)
    sound = None
    if audio is not None:
        sound = out.add_stream(audio, rate=48000)
        sound.layout = "mono"
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(square_frame(i, w, h, top), format="rgb24")
        frame.pts = pts[i] if pts is not None else i
        if pts is not None:
            frame.time_base = Fraction(1, 96)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    if sound is not None:
        samples = 0
        while samples < 48000 * n // 24:
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, samples
            samples += 1024
            for packet in sound.encode(chunk):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    out.close()
    return path


def read_frames(path: Path) -> tuple[list, object]:
    """All decoded frames (VP9 through libvpx, which keeps the alpha plane) and the container."""
    container = av.open(str(path))
    stream = container.streams.video[0]
    decoder = av.CodecContext.create("libvpx-vp9", "r") if stream.codec_context.name == "vp9" else stream.codec_context
    frames = [f for packet in container.demux(stream) for f in decoder.decode(packet)]
    return frames, container


def run(inputs: list[Path], out: Path, luma_weights: Path, **video: object):
    fmt = video.pop("image_format", "png-alpha")
    overwrite = bool(video.pop("overwrite", False))
    return remove_backgrounds(
        [str(p) for p in inputs],
        out,
        RunOptions(weights=str(luma_weights), workers=0, overwrite=overwrite),
        OutputOptions(format=str(fmt)),
        video=VideoOptions(**video),  # type: ignore[arg-type]
        log=lambda _m: None,
    )


def expected_mask(i: int) -> np.ndarray:
    return (square_frame(i)[:, :, 0] > 127).astype(np.uint8) * 255


@pytest.mark.parametrize(
    ("kind", "suffix", "pix_fmt"),
    [
        ("webm", ".webm", "yuva420p"),
        ("mov", ".mov", "yuva444p12le"),
        ("mp4", ".mp4", "yuv420p"),
        ("mask", ".mp4", "yuv420p"),
    ],
)
def test_every_video_kind(tmp_path: Path, luma_weights: Path, kind: str, suffix: str, pix_fmt: str) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    summary = run([clip], tmp_path / "out", luma_weights, format=kind)
    assert summary.ok and summary.done == 1
    assert summary.rows[0].frames == N
    result = tmp_path / "out" / f"clip{suffix}"
    assert summary.rows[0].outputs == [str(result)]
    frames, container = read_frames(result)
    stream = container.streams.video[0]
    assert len(frames) == N
    assert stream.average_rate == 24
    assert [round(f.time * 24) for f in frames] == list(range(N))
    assert (frames[0].width, frames[0].height, frames[0].format.name) == (W, H, pix_fmt)
    for i in (0, N - 1):
        if kind in ("webm", "mov"):
            alpha = frames[i].to_ndarray(format="rgba")[:, :, 3].astype(int)
        else:
            grey = frames[i].to_ndarray(format="rgb24").astype(int)
            alpha = grey[:, :, 0] if kind == "mask" else 255 - (255 - grey).min(axis=2)
            if kind == "mp4":  # on white: the square is white, so look at where the black was kept
                alpha = 255 - grey.mean(axis=2)
                assert np.abs(alpha).mean() < 8  # black background -> white, white square stays white
                continue
        # Lossy codecs: the square's mask within a few levels on average.
        assert np.abs(alpha - expected_mask(i)).mean() < 6
    container.close()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".bgcut-settings.json", result.name]


@pytest.mark.parametrize("kind", ["webm", "mov", "mp4", "mask"])
def test_the_same_clip_cut_twice_gives_the_same_bytes(tmp_path: Path, luma_weights: Path, kind: str) -> None:
    """Muxers may write random ids (WebM's segment id did): two runs must give identical files."""
    clip = make_clip(tmp_path / "clip.mp4")
    files = []
    for out in ("a", "b"):
        summary = run([clip], tmp_path / out, luma_weights, format=kind)
        assert summary.ok and summary.done == 1
        files.append(Path(summary.rows[0].outputs[0]).read_bytes())
    assert files[0] == files[1]


def test_prores_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    """FFmpeg's ProRes encoder is not deterministic across threads: at 854x480, three writes of
    the same frames gave three different files (and pixels) before it was given one thread."""
    from fractions import Fraction

    from bgcut.config import VIDEO_FORMATS
    from bgcut.video.encode import VideoSink

    w, h = 854, 480
    yy, xx = np.mgrid[:h, :w]
    frames = [
        np.dstack([(xx * 255 // w + i) % 256, yy * 255 // h, (xx + yy + 7 * i) % 256, np.where(xx > w // 3, 255, 0)])
        for i in range(6)
    ]
    files = set()
    for k in range(3):
        path = tmp_path / f"{k}.mov"
        sink = VideoSink(path, VIDEO_FORMATS["mov"], w, h, Fraction(24), Fraction(1, 24), 20, None)
        for i, frame in enumerate(frames):
            sink.write(frame.astype(np.uint8), i, i)
        sink.close()
        files.add(path.read_bytes())
    assert len(files) == 1


def test_a_full_disk_fails_the_video_with_the_photos_words_and_leaves_nothing(
    tmp_path: Path, luma_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from bgcut.video.encode import VideoSink

    class Full:
        """The output container, on a disk that has just filled up."""

        def __init__(self, inner: object) -> None:
            self.inner = inner

        def mux(self, packet: object) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    real = VideoSink.__init__

    def on_a_full_disk(self: VideoSink, *args: object, **kwargs: object) -> None:
        real(self, *args, **kwargs)  # type: ignore[arg-type]
        self.out = Full(self.out)

    monkeypatch.setattr(VideoSink, "__init__", on_a_full_disk)
    clip = make_clip(tmp_path / "clip.mp4")
    for kind in ("mov", "webm"):  # ProRes hands on each frame as it comes; VP9 holds some back
        summary = run([clip], tmp_path / kind, luma_weights, format=kind)
        assert (summary.failed, summary.rows[0].error) == (1, "cannot write output: No space left on device")
        assert sorted(p.name for p in (tmp_path / kind).iterdir()) == [".bgcut-settings.json"]


def test_frames_are_exactly_the_image_engine(tmp_path: Path, luma_weights: Path) -> None:
    """A PNG sequence of masks: each file equals what the image engine writes for that frame."""
    clip = make_clip(tmp_path / "clip.mp4")
    summary = run([clip], tmp_path / "out", luma_weights, format="frames", image_format="mask")
    assert summary.ok
    names = sorted(p.name for p in (tmp_path / "out" / "clip").iterdir())
    assert names == [f"{i:06d}.png" for i in range(N)]
    # The same frames as photos, through the image engine.
    frames, container = read_frames(clip)
    container.close()
    stills = tmp_path / "stills"
    stills.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f.to_ndarray(format="rgb24")).save(stills / f"{i:06d}.png")
    images = remove_backgrounds(
        [str(stills)],
        tmp_path / "ref",
        RunOptions(weights=str(luma_weights), workers=0),
        OutputOptions(format="mask"),
        log=lambda _m: None,
    )
    assert images.ok
    for name in names:
        assert (tmp_path / "out" / "clip" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    third = np.asarray(Image.open(tmp_path / "out" / "clip" / "000003.png")).astype(int)
    assert np.abs(third - expected_mask(3)).mean() < 6  # the square, soft only along its edge


def test_timestamps_and_variable_frame_rate_kept(tmp_path: Path, luma_weights: Path) -> None:
    pts = [0, 4, 8, 20, 24, 40, 44, 48]  # in 1/96 s: gaps of 1/24 s and longer
    clip = make_clip(tmp_path / "vfr.mp4", pts=pts)
    summary = run([clip], tmp_path / "out", luma_weights, format="mp4")
    assert summary.ok
    frames, container = read_frames(tmp_path / "out" / "vfr.mp4")
    container.close()
    assert [round(f.time * 96) for f in frames] == pts


def test_phone_rotation_is_applied(tmp_path: Path, luma_weights: Path) -> None:
    # Stored landscape, shown turned 90 degrees: the output is upright, so it shows the same.
    clip = make_clip(tmp_path / "phone.mp4", rotation=90)
    summary = run([clip], tmp_path / "out", luma_weights, format="frames", image_format="mask")
    assert summary.ok
    assert (summary.rows[0].width, summary.rows[0].height) == (H, W)
    got = np.asarray(Image.open(tmp_path / "out" / "phone" / "000002.png")).astype(int)
    assert got.shape == (W, H)
    assert np.abs(got - np.rot90(expected_mask(2), 1)).mean() < 6
    assert np.abs(got - np.rot90(expected_mask(2), -1)).mean() > 40  # turned the right way round


def test_audio_copied_where_the_container_allows(tmp_path: Path, luma_weights: Path) -> None:
    clip = make_clip(tmp_path / "talk.mp4", audio="aac")
    with av.open(str(clip)) as c:
        packets_in = sum(1 for p in c.demux(c.streams.audio[0]) if p.size)
    summary = run([clip], tmp_path / "mp4", luma_weights, format="mp4")
    assert summary.ok and summary.rows[0].warning is None
    with av.open(str(tmp_path / "mp4" / "talk.mp4")) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for p in c.demux(c.streams.audio[0]) if p.size) == packets_in
    # WebM holds Opus or Vorbis only: the video is written, and the row says why there is no sound.
    summary = run([clip], tmp_path / "webm", luma_weights, format="webm")
    assert summary.ok
    assert summary.rows[0].warning == "audio (aac) not copied: .webm holds opus, vorbis"
    with av.open(str(tmp_path / "webm" / "talk.webm")) as c:
        assert [s.type for s in c.streams] == ["video"]


def test_ten_bit_and_odd_sized_input(tmp_path: Path, luma_weights: Path) -> None:
    clip = make_clip(tmp_path / "deep.mkv", pix_fmt="yuv420p10le")
    odd = make_clip(tmp_path / "odd.mp4", pix_fmt="yuv444p", w=63, h=47)
    summary = run([clip, odd], tmp_path / "out", luma_weights, format="mp4")
    assert summary.ok and summary.done == 2
    frames, container = read_frames(tmp_path / "out" / "odd.mp4")
    container.close()
    assert (frames[0].width, frames[0].height, len(frames)) == (63, 47, N)


def test_resume_skips_a_finished_video_and_overwrite_redoes_it(tmp_path: Path, luma_weights: Path) -> None:
    clip = make_clip(tmp_path / "clip.webm", codec="libvpx-vp9")
    out = tmp_path / "out"
    assert run([clip], out, luma_weights).done == 1
    before = (out / "clip.webm").stat().st_mtime_ns
    again = run([clip], out, luma_weights)
    assert (again.done, again.skipped) == (0, 1)
    assert (out / "clip.webm").stat().st_mtime_ns == before
    redo = run([clip], out, luma_weights, overwrite=True)
    assert redo.done == 1
    # Other settings into the same folder are refused, as for images.
    with pytest.raises(ValueError, match="--video-format webm"):
        run([clip], out, luma_weights, format="mov")


def test_broken_videos_fail_alone_and_leave_nothing(tmp_path: Path, luma_weights: Path) -> None:
    good = make_clip(tmp_path / "good.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.mov"
    garbage.write_bytes(b"this is not a video at all" * 40)
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    audio_only = tmp_path / "sound.mkv"
    with av.open(str(audio_only), "w") as c:
        s = c.add_stream("aac", rate=48000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for p in [*s.encode(frame), *s.encode()]:
            c.mux(p)
    junk = tmp_path / "junk.mkv"  # a valid container whose MPEG-4 video packets are noise
    with av.open(str(junk), "w") as c:
        s = c.add_stream("mpeg4", rate=24)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(4):
            packet = av.Packet(b"\x00\x01\x02noise" * 10)
            packet.stream, packet.pts, packet.dts, packet.time_base = s, i, i, Fraction(1, 24)
            c.mux(packet)
    out = tmp_path / "out"
    summary = run([good, truncated, garbage, empty, audio_only, junk], out, luma_weights, format="webm")
    rows = {Path(r.input).name: r for r in summary.rows}
    assert rows["good.mp4"].status == "done"
    assert rows["junk.mkv"].error == "cannot decode its first frame: Invalid data found when processing input"
    for name in ("truncated.mp4", "garbage.mov", "empty.mkv", "sound.mkv", "junk.mkv"):
        assert rows[name].status == "failed", name
        assert rows[name].error and "\n" not in rows[name].error
    assert rows["sound.mkv"].error == "holds no video stream"
    assert rows["garbage.mov"].error.startswith("cannot open video")
    assert summary.failed == 5 and not summary.ok
    assert sorted(p.name for p in out.iterdir()) == [".bgcut-settings.json", "good.webm"]


def test_a_failure_mid_video_leaves_no_file(
    tmp_path: Path, luma_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bgcut.video import encode

    real = encode.VideoSink.write

    def failing(self: encode.VideoSink, pixels: np.ndarray, pts: int | None, index: int) -> None:
        if index == 5:
            raise OSError(28, "No space left on device")
        real(self, pixels, pts, index)

    monkeypatch.setattr(encode.VideoSink, "write", failing)
    clip = make_clip(tmp_path / "clip.mp4")
    summary = run([clip], tmp_path / "out", luma_weights, format="mp4")
    assert summary.rows[0].status == "failed"
    assert "No space left on device" in (summary.rows[0].error or "")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".bgcut-settings.json"]


def test_cli_video_and_images_in_one_run(tmp_path: Path, luma_weights: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "clip.mp4")
    Image.fromarray(square_frame(1)).save(src / "photo.png")
    out = tmp_path / "out"
    manifest = tmp_path / "m.jsonl"
    cmd = [
        str(src),
        "-o",
        str(out),
        "--weights",
        str(luma_weights),
        "--video-format",
        "mask",
        "--manifest",
        str(manifest),
    ]
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 0, result.output
    assert "1 video frames" not in result.output and f"{N} video frames" in result.output
    assert (out / "photo.png").is_file() and (out / "clip.mp4").is_file()
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {r["input"].rsplit(os.sep, 1)[-1]: r.get("frames") for r in rows} == {"clip.mp4": N, "photo.png": None}
    assert "frames" not in next(r for r in rows if r["input"].endswith("photo.png"))
    # A video cannot go to one named file.
    bad = CliRunner().invoke(
        app, [str(src / "clip.mp4"), "-o", str(tmp_path / "cut.webm"), "--weights", str(luma_weights)]
    )
    assert bad.exit_code == 2
    assert "videos are written into a folder" in bad.output


def test_missing_pyav_is_one_clear_error(tmp_path: Path, luma_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    Image.fromarray(square_frame(0)).save(tmp_path / "photo.png")
    monkeypatch.setitem(__import__("sys").modules, "av", None)
    summary = run([clip], tmp_path / "out", luma_weights)
    assert summary.rows[0].error == "video needs PyAV: pip install 'bgcut[video]'"
    # Found in a folder, videos are passed over with one warning; the photos run as before.
    said: list[str] = []
    summary = remove_backgrounds(
        [str(tmp_path)], tmp_path / "out2", RunOptions(weights=str(luma_weights), workers=0), log=said.append
    )
    assert (summary.done, summary.failed, summary.ok) == (1, 0, True)
    assert said == ["bgcut: warning: 1 video file(s) in the input folders left out: pip install 'bgcut[video]'"]


def test_steady_damps_small_changes_and_follows_large_ones() -> None:
    steady = Steady(0.5)
    first = np.zeros((4, 4), np.uint8)
    first[:, 2:] = 100
    assert steady(first) is first
    moved = first.copy()
    moved[:, :2] = 255  # the object arrived here: a full flip
    moved[:, 2:] = 110  # the model's noise: a small change
    out = steady(moved)
    assert (out[:, :2] == 255).all()  # taken at once
    assert (out[:, 2:] > 100).all() and (out[:, 2:] < 106).all()  # about half of the change kept out
    assert Steady(0.0)(moved) is moved


def test_ctrl_c_mid_video_leaves_no_file(tmp_path: Path, luma_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgcut.pipeline.infer import Predictor

    real = Predictor.masks
    calls = []

    def interrupted(self: Predictor, inputs: list, sizes: list, **kwargs: str):  # noqa: ANN202
        calls.append(len(inputs))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, inputs, sizes, **kwargs)

    monkeypatch.setattr(Predictor, "masks", interrupted)
    clip = make_clip(tmp_path / "clip.mp4")
    summary = remove_backgrounds(
        [str(clip)],
        tmp_path / "out",
        RunOptions(weights=str(luma_weights), workers=0, batch_size=2),
        video=VideoOptions(format="webm"),
        log=lambda _m: None,
    )
    assert summary.interrupted and not summary.ok
    assert calls == [2, 2, 2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".bgcut-settings.json"]


def test_an_animated_gif_is_a_video_and_a_still_gif_an_image(tmp_path: Path, luma_weights: Path) -> None:
    frames = [Image.fromarray(square_frame(i)) for i in range(6)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=[40, 40, 80, 40, 40, 120])
    frames[0].save(tmp_path / "still.gif")
    summary = run([tmp_path / "anim.gif", tmp_path / "still.gif"], tmp_path / "out", luma_weights)
    assert summary.ok and summary.done == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".bgcut-settings.json", "anim.webm", "still.png"]
    got, container = read_frames(tmp_path / "out" / "anim.webm")
    container.close()
    assert [round(f.time * 100) for f in got] == [0, 4, 8, 16, 20, 24]  # the GIF's own frame delays
    alpha = got[2].to_ndarray(format="rgba")[:, :, 3].astype(int)
    assert np.abs(alpha - expected_mask(2)).mean() < 6


def test_a_video_output_never_replaces_its_input(tmp_path: Path, luma_weights: Path) -> None:
    # clip.webm into its own folder would be written as clip.webm: refused, even with --overwrite.
    clip = make_clip(tmp_path / "clip.webm", codec="libvpx-vp9")
    before = clip.read_bytes()
    cmd = [str(clip), "-o", str(tmp_path), "--weights", str(luma_weights), "--overwrite"]
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 2
    assert f"would be {clip}, which is the input {clip}" in result.output
    assert clip.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.webm"]


def test_an_output_that_cannot_be_opened_fails_that_video_alone(tmp_path: Path, luma_weights: Path) -> None:
    src = tmp_path / "in"
    make_clip((src / "sub").mkdir(parents=True) or src / "sub" / "clip.mp4")
    make_clip(src / "other.mp4")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file where the video's folder should be")
    for kind in ("webm", "frames"):
        summary = run([src], out, luma_weights, format=kind, overwrite=True)
        rows = {Path(r.input).name: r for r in summary.rows}
        assert rows["clip.mp4"].status == "failed"
        assert (rows["clip.mp4"].error or "").startswith("cannot write output: ")
        assert rows["other.mp4"].status == "done"
