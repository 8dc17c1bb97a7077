"""The command line through Typer's CliRunner: exit codes, messages, routing, stdin and stdout."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bgcut.cli import app

from .conftest import save, square_image

runner = CliRunner()


def invoke(*args: str, stdin: str | None = None):  # noqa: ANN201
    return runner.invoke(app, list(args), input=stdin, catch_exceptions=False)


@pytest.mark.parametrize(
    "cmd", [[], ["remove"], ["models"], ["models", "list"], ["models", "fetch"], ["train"], ["eval"]]
)
def test_every_command_has_help_with_example(cmd: list[str]) -> None:
    result = invoke(*cmd, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output
    if cmd and cmd[-1] in ("remove", "list", "fetch", "train", "eval"):
        assert "Example" in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("bgcut ")


def test_main_job_without_command_name(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    result = invoke(str(photos), "-o", str(tmp_path / "o"), "-w", str(luma_weights), "-j", "0")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "sub" / "deeper" / "c.png").exists()
    assert "3 done, 0 skipped, 0 failed" in result.output


def test_folder_named_like_a_command(tmp_path: Path, luma_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    save(square_image(), tmp_path / "train" / "x.png")
    result = invoke("./train", "-o", "out", "-w", str(luma_weights), "-j", "0")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "x.png").exists()


def test_some_failed_exits_1(tmp_path: Path, luma_weights: Path) -> None:
    save(square_image(), tmp_path / "in" / "ok.png")
    (tmp_path / "in" / "bad.jpg").write_bytes(b"")
    result = invoke(str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-w", str(luma_weights), "-j", "0")
    assert result.exit_code == 1
    assert f"bgcut: error: {tmp_path / 'in' / 'bad.jpg'}: empty file (0 bytes)" in result.output
    assert "1 done, 0 skipped, 1 failed" in result.output


def test_unknown_model_is_one_line_exit_1(photos: Path, tmp_path: Path) -> None:
    result = invoke(str(photos), "-o", str(tmp_path / "o"), "--model", "nope")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    known = "bgcut-lite, bgcut-s, isnet-general, u2net, u2netp"
    assert lines == [f"bgcut: error: unknown model 'nope'; known models: {known} (see `bgcut models list`)"]


@pytest.mark.parametrize(
    "extra",
    [["--format", "gif"], ["--threshold", "2"], ["--bg", "nocolour"], ["--device", "cuda:7"], ["--margin", "x"]],
)
def test_usage_errors_exit_2(photos: Path, tmp_path: Path, luma_weights: Path, extra: list[str]) -> None:
    result = runner.invoke(app, [str(photos), "-o", str(tmp_path / "o"), "-w", str(luma_weights), "-j", "0", *extra])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_stdin_list_and_manifest(tmp_path: Path, luma_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    save(square_image(), tmp_path / "d1" / "p.png")
    save(square_image(), tmp_path / "d2" / "p.png")
    result = invoke(
        "-", "-o", "out", "-w", str(luma_weights), "-j", "0", "--manifest", "m.jsonl", stdin="./d1/p.png\nd2/p.png\n"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "d1" / "p.png").exists() and (tmp_path / "out" / "d2" / "p.png").exists()
    rows = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["done", "done"]


def test_stdout_single_image(photos: Path, luma_weights: Path) -> None:
    result = runner.invoke(app, [str(photos / "a.png"), "-o", "-", "-w", str(luma_weights), "-q", "--format", "mask"])
    assert result.exit_code == 0
    im = Image.open(io.BytesIO(result.stdout_bytes))
    assert im.mode == "L" and im.size == (80, 60) and np.asarray(im)[30, 40] == 255


def test_stdout_needs_exactly_one_input(photos: Path, luma_weights: Path) -> None:
    result = runner.invoke(app, [str(photos), "-o", "-", "-w", str(luma_weights)])
    assert result.exit_code == 2
    assert "-o - writes one image to stdout" in result.output


def test_models_list() -> None:
    result = invoke("models", "list")
    assert result.exit_code == 0
    header, *rows = result.output.strip().splitlines()
    assert header.split() == ["name", "params", "input", "licence", "offline"]
    offline = {row.split()[0]: row.split()[-1] for row in rows}
    assert offline["isnet-general"] == offline["bgcut-lite"] == offline["bgcut-s"] == "embedded"
    # No weights published at all is not the same as not downloaded yet.
    assert offline["u2net"] == offline["u2netp"] == "unpublished"


def test_eval_on_generated_set(tmp_path: Path, luma_weights: Path) -> None:
    for i in range(3):
        arr = square_image()
        save(arr, tmp_path / "img" / f"s{i}.png")
        save((arr[..., 0] > 127).astype(np.uint8) * 255, tmp_path / "gt" / f"s{i}.png")
    result = invoke(
        "eval",
        "--images",
        str(tmp_path / "img"),
        "--masks",
        str(tmp_path / "gt"),
        "-w",
        str(luma_weights),
        "-j",
        "0",
        "--json",
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["n"] == 3 and scores["mae"] < 0.02 and scores["maxF"] > 0.97 and scores["mIoU"] > 0.95
    assert scores["precision"] == "auto"
    # The precision reaches the run: bf16 scores, fp16 is refused on a CPU as `bgcut remove` refuses it.
    common = ["eval", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "gt"), "-w", str(luma_weights)]
    bf16 = invoke(*common, "-j", "0", "--device", "cpu", "--precision", "bf16", "--json")
    assert bf16.exit_code == 0, bf16.output
    assert json.loads(bf16.output)["precision"] == "bf16" and json.loads(bf16.output)["maxF"] > 0.97
    fp16 = invoke(*common, "--device", "cpu", "--precision", "fp16")
    assert fp16.exit_code == 2
    assert fp16.output.strip() == "bgcut: error: --precision fp16 is not supported on CPU; use fp32 or bf16"


def test_eval_refuses_masks_without_predictions(tmp_path: Path, luma_weights: Path) -> None:
    """A mask folder that matches only some images must not give a score over the rest as empty masks."""
    for i in range(5):
        arr = square_image()
        if i < 2:
            save(arr, tmp_path / "img" / f"s{i}.png")
        save((arr[..., 0] > 127).astype(np.uint8) * 255, tmp_path / "gt" / f"s{i}.png")
    base = ["eval", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "gt"), "-w", str(luma_weights),
            "-j", "0"]  # fmt: skip
    result = invoke(*base)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"bgcut: error: 3 of 5 ground-truth masks in {tmp_path / 'gt'} have no prediction (no image of the same "
        f"stem in {tmp_path / 'img'}); scores over them would be wrong: pass --allow-missing to score them as "
        "empty masks"
    ]
    result = invoke(*base, "--allow-missing")
    assert result.exit_code == 0 and "n=5 " in result.output and "missing=3 (scored as empty)" in result.output


def test_eval_stops_on_a_damaged_ground_truth_mask_before_the_model_runs(
    tmp_path: Path, luma_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was a traceback from PIL, after every image had been cut out."""
    arr = square_image()
    save(arr, tmp_path / "img" / "s0.png")
    save((arr[..., 0] > 127).astype(np.uint8) * 255, tmp_path / "gt" / "s0.png")
    (tmp_path / "gt" / "s1.png").write_bytes((tmp_path / "gt" / "s0.png").read_bytes()[:60])  # truncated

    def no_model_run(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the model ran before the ground truth was checked")

    monkeypatch.setattr("bgcut.run.remove_backgrounds", no_model_run)
    result = invoke("eval", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "gt"), "-w", str(luma_weights))
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"bgcut: error: {tmp_path / 'gt' / 's1.png'}: cannot read this ground-truth mask (")


def test_truncated_weights_file_is_one_line(photos: Path, tmp_path: Path, luma_weights: Path) -> None:
    bad = tmp_path / "w"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((luma_weights / "model.safetensors").read_bytes()[:30])
    (bad / "config.json").write_text((luma_weights / "config.json").read_text())
    result = runner.invoke(app, [str(photos), "-o", str(tmp_path / "o"), "-w", str(bad)])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"bgcut: error: cannot read weights {bad / 'model.safetensors'}") and "truncated" in line


def test_steady_has_one_bound_the_options_own(tmp_path: Path, luma_weights: Path) -> None:
    """--steady was capped at 0.99 by the command line and at < 1 by VideoOptions: now only the
    options decide, so the CLI takes what the library takes, and refuses the rest in one line."""
    photo = tmp_path / "p.png"
    Image.fromarray(square_image()).save(photo)
    ok = invoke(str(photo), "-o", str(tmp_path / "a"), "-w", str(luma_weights), "--steady", "0.995")
    assert ok.exit_code == 0, ok.output
    bad = invoke(str(photo), "-o", str(tmp_path / "b"), "-w", str(luma_weights), "--steady", "1")
    assert bad.exit_code == 2
    assert "bgcut: error: --steady 1.0: must be from 0 up to, not including, 1 (0 is off)" in bad.output


def test_no_command_line_option_declares_bounds_of_its_own() -> None:
    """An option's bounds live in its options object (or the API function it calls), not again
    in Typer, where the two had come to disagree (--steady, --ema)."""
    import typer

    def commands(group):  # noqa: ANN001, ANN202
        yield group
        for sub in getattr(group, "commands", {}).values():
            yield from commands(sub)

    def bounded(param) -> bool:  # noqa: ANN001
        # typer 0.29 keeps min and max on the parameter; before, they made a range type of the
        # click it vendors (typer._click), so the type is known by its class's name.
        on_param = getattr(param, "min", None) is not None or getattr(param, "max", None) is not None
        return on_param or any(c.__name__ == "_NumberRangeBase" for c in type(getattr(param, "type", None)).__mro__)

    every = [(cmd.name, param) for cmd in commands(typer.main.get_command(app)) for param in cmd.params]
    assert len(every) > 100
    assert [f"{name} {param.opts[0]}" for name, param in every if bounded(param)] == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--threshold", "nan"], "--threshold nan: must be from 0 to 1"),
        (["--refine-eps", "0"], "--refine-eps 0.0: must be above 0 and at most 1"),
        (["--erode", "-1"], "--erode -1: must be from 0 to"),
        (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["--workers", "-1"], "--workers -1: must be at least 0"),
        (["--size", "16"], "--size 16: must be at least 32 pixels"),
        (["--video-quality", "52"], "--video-quality 52: must be from 0 to 51"),
        (["--max-pixels", "0"], "--max-pixels 0: must be at least 1"),
    ],
)
def test_a_value_out_of_bounds_is_the_options_one_line(
    tmp_path: Path, luma_weights: Path, args: list[str], line: str
) -> None:
    photo = tmp_path / "p.png"
    Image.fromarray(square_image()).save(photo)
    result = invoke(str(photo), "-o", str(tmp_path / "out"), "-w", str(luma_weights), *args)
    assert result.exit_code == 2 and f"bgcut: error: {line}" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_bounds_that_were_only_typers_are_checked_by_the_api(tmp_path: Path) -> None:
    """paste's --count, --workers, --quality and --min-area, and camera's --max-frames, had their
    bounds in Typer only: a library caller got no check at all."""
    from bgcut.errors import UsageError
    from bgcut.paste import PasteOptions, paste_dataset
    from bgcut.video.camera import run_camera

    for options, words in (({"quality": 0}, "--quality 0: must be from 1 to 100"),
                           ({"min_area": 0}, "--min-area 0: must be at least 1")):  # fmt: skip
        with pytest.raises(UsageError, match=words):
            PasteOptions(**options)
    for count, workers, words in ((0, 2, "--count 0: must be at least 1"), (1, -1, "--workers -1: must be at least 0")):
        with pytest.raises(UsageError, match=words):
            paste_dataset([str(tmp_path)], str(tmp_path), tmp_path / "out", count, workers=workers)
    with pytest.raises(UsageError, match="--max-frames 0: must be at least 1"):
        run_camera("0", None, None, None, window=False, output=tmp_path / "o.mp4", max_frames=0)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_the_fork_server_is_started_early_only_for_runs_that_likely_use_workers(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from bgcut.cli.remove import _decode_workers_likely as likely

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"")
    assert likely([str(tmp_path)], "out", 2, "local")  # a folder
    assert likely(["s3://bucket/photos"], "out", 2, "local")
    assert likely([str(photo)] * 9, "out", 2, "local")  # more inputs than a batch
    assert not likely([str(photo)], "cut.png", 2, "local")  # one photo: the engine decodes it in this process
    assert not likely([str(tmp_path)], "-", 2, "local")  # stdout: one image, decoded here
    assert not likely([str(tmp_path)], "out", 0, "local")
    assert not likely([str(tmp_path)], "out", 2, "ray")
    monkeypatch.setattr("os.cpu_count", lambda: 1)  # one core: nothing to overlap with
    assert not likely([str(tmp_path)], "out", 2, "local")


def test_imports_uncollected_turns_the_collector_back_on_even_after_an_error() -> None:
    import gc

    from bgcut.collector import imports_uncollected

    assert gc.isenabled()
    with pytest.raises(ImportError), imports_uncollected():
        assert not gc.isenabled()
        import bgcut_no_such_module  # noqa: F401
    assert gc.isenabled()


def test_every_declared_range_is_in_the_help_of_the_option_that_sets_it() -> None:
    """The engine's options declare their ranges once (``config.Bounds``); the help of
    ``bgcut remove`` shows each one, from that declaration."""
    from dataclasses import fields

    import typer

    from bgcut.config import OutputOptions, PostOptions, RunOptions, VideoOptions

    remove = typer.main.get_command(app).commands["remove"]  # type: ignore[attr-defined]
    helps = {opt: param.help or "" for param in remove.params for opt in param.opts}
    shown = {}
    for options in (RunOptions, PostOptions, OutputOptions, VideoOptions):
        for f in fields(options):
            if "bounds" in f.metadata:
                flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
                if flag in helps:
                    shown[flag] = f.metadata["bounds"].shown()
                    assert f"[{shown[flag]}]" in helps[flag], (flag, helps[flag])
    assert len(shown) == 14, shown
    assert shown["--steady"] == "0<=x<1" and shown["--refine-eps"] == "0<x<=1" and shown["--size"] == "x>=32"


def test_every_range_paste_declares_is_in_its_help() -> None:
    """``bgcut paste``'s options declare their ranges beside their fields too (``PasteOptions``),
    and its help shows each from there; --rotation, --jitter and --max-occlusion were checked by
    hand in ``__post_init__`` and showed no range."""
    from dataclasses import fields

    import typer

    from bgcut.paste import PasteOptions

    paste = typer.main.get_command(app).commands["paste"]  # type: ignore[attr-defined]
    helps = {opt: param.help or "" for param in paste.params for opt in param.opts}
    shown = {}
    for f in fields(PasteOptions):
        if "bounds" in f.metadata:
            flag = "--" + f.name.replace("_", "-")
            shown[flag] = f.metadata["bounds"].shown()
            assert f"[{shown[flag]}]" in helps[flag], (flag, helps[flag])
    assert shown == {
        "--rotation": "x>=0",
        "--jitter": "x>=0",
        "--max-occlusion": "0<=x<=1",
        "--quality": "1<=x<=100",
        "--min-area": "x>=1",
    }


def test_bounds_hold_say_and_show_their_range() -> None:
    from bgcut.config import Bounds, check_value
    from bgcut.errors import UsageError

    share = Bounds(0.0, 1.0, high_open=True)
    assert [share.holds(v) for v in (0.0, 0.5, 1.0, -0.1, float("nan"))] == [True, True, False, False, False]
    assert share.words() == "from 0 up to, not including, 1" and share.shown() == "0<=x<1"
    above = Bounds(0.0, 1.0, low_open=True)
    assert not above.holds(0.0) and above.holds(1.0) and above.words() == "above 0 and at most 1"
    least = Bounds(32, unit=" pixels")
    assert least.holds(32) and not least.holds(31) and least.words() == "at least 32" and least.shown() == "x>=32"
    assert not Bounds(0, 500).holds(float("inf"))
    # Infinity is outside an open-ended range too, and the error says why.
    assert not Bounds(0).holds(float("inf")) and not Bounds(0).holds(float("-inf"))
    with pytest.raises(UsageError, match=r"^--lr inf: must be a finite number, above 0$"):
        check_value("--lr", float("inf"), Bounds(0.0, low_open=True))
    with pytest.raises(UsageError, match=r"^--max-doubt inf: must be from 0 to 1$"):
        check_value("--max-doubt", float("inf"), Bounds(0.0, 1.0))


def test_the_help_names_every_command_a_first_argument_may_be() -> None:
    """`bgcut NAME ...` runs the command NAME, so the help's list of such names is every command."""
    import re

    import typer.main

    text = " ".join(runner.invoke(app, ["remove", "--help"], env={"COLUMNS": "200"}).output.split())
    listed = re.search(r"A first argument that is a command name \(([^)]*)\)", text)
    assert listed is not None
    assert sorted(listed.group(1).split(", ")) == sorted(typer.main.get_command(app).commands)
