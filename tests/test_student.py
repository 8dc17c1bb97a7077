"""The relay's students: EfficientNet-Lite0 + UNet (``bgcut-s``) and the narrow IS-Net, and the
training options they need (an ImageNet encoder, a CPU-time budget, architecture arguments)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.models import build_arch, create_model, get_pretrained_cfg
from bgcut.models.effnet_unet import EffUNet, SamePad
from bgcut.models.u2net import ISNet

from .test_train import make_pairs


def _foreign_encoder_state(model: EffUNet) -> dict[str, torch.Tensor]:
    """The encoder's tensors under efficientnet_pytorch's names, plus the head it drops."""
    names = {
        "stem.conv.": "_conv_stem.",
        "stem.bn.": "_bn0.",
    }
    out = {}
    for key, value in model.encoder.state_dict().items():
        new = key
        for ours, theirs in names.items():
            if key.startswith(ours):
                new = theirs + key.removeprefix(ours)
        if key.startswith("blocks."):
            _, i, part, kind, rest = key.split(".", 4)
            bn = {"expand": "_bn0", "dw": "_bn1", "project": "_bn2"}[part]
            conv = {"expand": "_expand_conv", "dw": "_depthwise_conv", "project": "_project_conv"}[part]
            new = f"_blocks.{i}.{conv if kind == 'conv' else bn}.{rest}"
        out[new] = torch.full_like(value, 0.5) if value.is_floating_point() else value
    out["_conv_head.weight"] = torch.zeros(1280, 320, 1, 1)
    out["_fc.weight"] = torch.zeros(1000, 1280)
    return out


def test_effnet_encoder_taps_and_renames() -> None:
    model = build_arch(get_pretrained_cfg("bgcut-s"))
    assert model.encoder.channels == [16, 24, 40, 112, 320]
    feats = model.encoder(torch.zeros(1, 3, 96, 128))
    assert [tuple(f.shape[-2:]) for f in feats] == [(48, 64), (24, 32), (12, 16), (6, 8), (3, 4)]
    renamed = EffUNet.encoder_state_from(_foreign_encoder_state(model))
    assert set(renamed) == set(model.encoder.state_dict())  # the head and classifier are dropped
    model.encoder.load_state_dict(renamed)
    assert float(model.encoder.blocks[3].dw.conv.weight.detach().mean()) == 0.5


def test_same_padding_puts_the_extra_pixel_right_and_bottom() -> None:
    x = torch.ones(1, 1, 4, 4)
    padded = SamePad(3, 2)(x)  # TensorFlow pads 0 before, 1 after for k=3, s=2 on an even size
    assert padded.shape[-2:] == (5, 5) and padded[0, 0, :4, :4].eq(1).all() and padded[0, 0, 4].eq(0).all()
    assert SamePad(5, 2)(x).shape[-2:] == (7, 7)  # 1 before, 2 after


@pytest.mark.parametrize(("width", "params"), [(1.0, 44_046_790), (0.5, 11_026_406), (0.25, 2_763_958)])
def test_narrow_isnet(width: float, params: int) -> None:
    model = ISNet(width).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_narrow_isnet_refuses_widths_that_split_channels() -> None:
    with pytest.raises(ValueError, match="whole"):
        ISNet(0.3)


def _train(tmp_path: Path, out: str, *extra: str) -> tuple[int, str]:
    args = ["train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "-o",
            str(tmp_path / out), "--size", "64", "-b", "4", "-j", "0", "--device", "cpu", *extra]  # fmt: skip
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def test_student_from_imagenet_encoder(tmp_path: Path) -> None:
    make_pairs(tmp_path, n=8)
    foreign = _foreign_encoder_state(build_arch(get_pretrained_cfg("bgcut-s")))
    pth = tmp_path / "imagenet.pth"
    torch.save(foreign, pth)
    code, output = _train(tmp_path, "s", "-m", "bgcut-s", "--init-encoder", str(pth), "--epochs", "1")
    assert code == 0, output
    assert "encoder initialised from" in output
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    # Exported for the size it was trained at, with the ImageNet normalisation of its registry entry.
    assert config["arch"] == "effnet_unet" and config["input_size"] == 64 and config["mean"][0] == 127 / 255
    assert create_model(weights=tmp_path / "s").cfg.input_size == 64
    # An architecture without a pretrained encoder says so.
    code, output = _train(tmp_path, "l", "--init-encoder", str(pth), "--epochs", "1")
    assert code == 2 and "has no pretrained encoder" in output


def test_narrow_isnet_trains_with_arch_args(tmp_path: Path) -> None:
    make_pairs(tmp_path, n=6)
    code, output = _train(tmp_path, "q", "-m", "isnet-general", "--arch-args", '{"width": 0.25}', "--name",
                          "isnet-q", "--epochs", "1")  # fmt: skip
    assert code == 0, output
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["arch_args"] == {"width": 0.25} and config["name"] == "isnet-q"
    loaded = create_model(weights=tmp_path / "q")
    assert sum(p.numel() for p in loaded.module.parameters()) == 2_763_958
    code, output = _train(tmp_path, "bad", "--arch-args", "[1]", "--epochs", "1")
    assert code == 2 and "--arch-args: expected a JSON object" in output


def test_cpu_budget_stops_and_carries_over_a_resume(tmp_path: Path) -> None:
    make_pairs(tmp_path, n=12)
    code, output = _train(tmp_path, "b", "--epochs", "50", "--max-cpu-minutes", "0.0001")
    assert code == 0, output
    assert "the time limit was reached in epoch 1" in output
    history = json.loads((tmp_path / "b" / "history.json").read_text())
    assert len(history) == 1 and history[0]["step"] == 1 and history[0]["cpu_seconds"] > 0
    # A resumed run counts the CPU time already spent: the budget is spent, so it stops at once.
    code, output = _train(tmp_path, "b", "--epochs", "50", "--max-cpu-minutes", "0.0001", "--resume")
    assert code == 0 and "resumed from" in output
    history = json.loads((tmp_path / "b" / "history.json").read_text())
    # It goes on inside epoch 1, which the first run left after its first batch of two.
    assert [h["epoch"] for h in history] == [1, 1] and history[1]["step"] == 2
    assert history[1]["cpu_seconds"] > history[0]["cpu_seconds"]


def test_a_run_stopped_inside_an_epoch_goes_on_with_the_rest_of_it(tmp_path: Path) -> None:
    """The relay always stops inside an epoch: the state says how far into it, and the run that
    goes on from it takes that epoch's remaining batches (the same order), not the next epoch's."""
    from safetensors import safe_open

    make_pairs(tmp_path, n=20)
    code, output = _train(tmp_path, "a", "-m", "bgcut-s", "--epochs", "3", "--max-cpu-minutes", "0.0001")
    assert code == 0 and "the time limit was reached in epoch 1" in output, output
    state = tmp_path / "a" / "state.safetensors"
    with safe_open(str(state), "pt") as f:
        meta = f.metadata()
    assert (meta["epoch"], meta["batches_into_epoch"], meta["step"]) == ("0", "1", "1")
    code, output = _train(tmp_path, "b", "-m", "bgcut-s", "--epochs", "2", "--resume-from", str(state))
    assert code == 0, output
    assert "going on with epoch 1 after its first 1 batches" in output
    rows = json.loads((tmp_path / "b" / "history.json").read_text())
    per_epoch = (20 - len(json.loads((tmp_path / "a" / "split.json").read_text())["val"])) // 4
    assert per_epoch >= 3  # so that the first run stopped inside its epoch
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, per_epoch), (2, 2 * per_epoch)]  # no batch skipped


def test_a_fresh_machine_goes_on_from_the_state_file(tmp_path: Path) -> None:
    """state.safetensors (the EMA weights, epoch and step; no pickle, no optimiser) lets another
    machine go on at the same point of the schedule, where --init would start it again."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    make_pairs(tmp_path, n=10)
    code, output = _train(tmp_path, "a", "-m", "bgcut-s", "--epochs", "2", "--ema", "0.9")
    assert code == 0, output
    state = tmp_path / "a" / "state.safetensors"
    with safe_open(str(state), "pt") as f:
        meta = f.metadata()
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert meta["epoch"] == "2" and int(meta["step"]) == history[-1]["step"] > 0
    ckpt = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert int(meta["ema_updates"]) == ckpt["ema"]["updates"]
    saved = load_file(str(state))
    assert saved.keys() == ckpt["ema"]["module"].keys()
    kept = sorted(p.name for p in (tmp_path / "a" / "epochs").iterdir())  # each epoch's state stays at hand
    assert kept == ["epoch-001.safetensors", "epoch-002.safetensors"]
    assert (tmp_path / "a" / "epochs" / kept[-1]).read_bytes() == state.read_bytes()
    assert all(torch.equal(saved[k], v) for k, v in ckpt["ema"]["module"].items())  # the EMA, not the raw weights

    moved = tmp_path / "committed.safetensors"  # as on a fresh machine: no run folder, only the file
    state.replace(moved)
    code, output = _train(tmp_path, "b", "-m", "bgcut-s", "--epochs", "4", "--ema", "0.9", "--resume-from", str(moved))
    assert code == 0, output
    assert f"resumed from {moved} at epoch 2, step {meta['step']} (a fresh optimiser)" in output
    rows = json.loads((tmp_path / "b" / "history.json").read_text())
    per_epoch = history[0]["step"]
    assert [(r["epoch"], r["step"]) for r in rows] == [(3, 3 * per_epoch), (4, 4 * per_epoch)]
    assert rows[0]["cpu_seconds"] > history[-1]["cpu_seconds"]  # the CPU time spent before is carried

    code, output = _train(tmp_path, "c", "-m", "bgcut-s", "--resume-from", str(moved), "--init", str(moved))
    assert code == 2 and "--resume-from goes on from a state file's weights: leave out --init" in output
    weights_only = tmp_path / "b" / "model.safetensors"  # weights, but no counters
    code, output = _train(tmp_path, "d", "-m", "bgcut-s", "--resume-from", str(weights_only))
    assert code == 2 and f"--resume-from {weights_only}: not a training state file" in output


def test_disk_cache_is_built_once_and_shared(tmp_path: Path) -> None:
    make_pairs(tmp_path, n=8)
    cache = tmp_path / "cache"
    code, first = _train(tmp_path, "a", "--epochs", "1", "--cache-dir", str(cache), "--seed", "3")
    assert code == 0, first
    assert first.count("cache written to") == 2  # the training split and the validation split
    files = sorted(p.name for p in cache.iterdir())
    assert len([f for f in files if f.endswith(".images.npy")]) == 2 and not any(f.endswith(".part") for f in files)
    code, second = _train(tmp_path, "b", "--epochs", "1", "--cache-dir", str(cache), "--seed", "3")
    assert code == 0 and "cache written to" not in second
    # The same pairs from the files as from memory: the same first epoch, to the last digit.
    code, _ = _train(tmp_path, "c", "--epochs", "1", "--seed", "3")
    rows = [json.loads((tmp_path / r / "history.json").read_text())[0] for r in ("a", "b", "c")]
    assert rows[0]["loss"] == rows[1]["loss"] == rows[2]["loss"] and rows[0]["maxF"] == rows[2]["maxF"]


def _relay_recipe():  # noqa: ANN202
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "weights" / "recipes" / "relay.py"
    spec = importlib.util.spec_from_file_location("relay_recipe", path)
    relay_recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(relay_recipe)  # type: ignore[union-attr]
    return relay_recipe


def test_the_relay_goes_on_from_the_committed_state(tmp_path: Path) -> None:
    """A fresh machine goes on with the relay from what is committed (weights/recipes/relay.py): the
    command it prints starts from the state file (or, before there is one, the embedded weights),
    which loads into the architecture it was trained as, and trains on."""
    from safetensors import safe_open

    relay_recipe = _relay_recipe()
    relay = relay_recipe.RELAY
    training = json.loads((relay / "training.json").read_text())
    history = json.loads((relay / "history.json").read_text())
    assert history and all("maxF" in row and "cpu_seconds" in row for row in history)
    shipped = json.loads((relay / "scores.json").read_text())
    assert shipped["sha256"] == get_pretrained_cfg("bgcut-s").sha256  # the record is of the embedded file
    assert set(shipped["scores"]) == {"DUTS-TR", "davis16", "human-seg"}
    line = relay_recipe.command(relay, run=tmp_path / "no-run").split()
    how = next(a for a in line if a in ("--resume-from", "--init"))
    start = Path(line[line.index(how) + 1])
    assert start.is_file()
    epochs = 1
    if how == "--resume-from":
        with safe_open(str(start), "pt") as f:
            epochs = int(f.metadata()["epoch"]) + 1  # one epoch past where the committed run stopped
    make_pairs(tmp_path, n=6)
    extra = ["--arch-args", json.dumps(training["arch_args"])] if training["arch_args"] else []
    code, output = _train(tmp_path, "next", "-m", training["model"], *extra, how, str(start), "--epochs", str(epochs))
    assert code == 0, output
    assert (f"resumed from {start}" if how == "--resume-from" else f"initialised from {start}") in output
    assert json.loads((tmp_path / "next" / "config.json").read_text())["arch"] == "effnet_unet"
    # A state whose run already reached --epochs has nothing left to train: said, not a crash.
    if how == "--resume-from":
        code, output = _train(tmp_path, "done", "-m", "bgcut-s", how, str(start), "--epochs", str(epochs - 1))
        assert code == 2 and f"stopped at epoch {epochs - 1}: give --epochs above it" in output


def test_committing_a_relay_segment_keeps_the_history_and_ships_the_better_weights(tmp_path: Path) -> None:
    from bgcut.models import read_state_dict, save_tensors

    relay_recipe = _relay_recipe()
    out_of_domain: dict[str, float] = {}  # weights' fill value -> its maxF on both outside sets

    calls: list[float] = []

    def score(path: Path) -> dict[str, dict[str, float]]:
        value = float(read_state_dict(path)["w"][0, 0])
        calls.append(value)
        return {name: {"maxF": out_of_domain[value], "mae": 0.05} for name in relay_recipe.OUT_OF_DOMAIN}

    def run(name: str, held_out: list[float], best: float, last: float) -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        save_tensors({"w": torch.full((2, 2), best)}, folder / "best.safetensors")
        save_tensors({"w": torch.full((2, 2), last)}, folder / "state.safetensors")
        training = {"model": "bgcut-s", "arch_args": {}, "size": 384, "batch_size": 8, "lr": 0.001, "ema": 0.999,
                    "epochs": 12, "backgrounds": f"bg-{name}", "boundary_gain": 4.0}  # fmt: skip
        (folder / "config.json").write_text(json.dumps({"name": name, "training": training}))
        rows = [{"epoch": i + 1, "maxF": f, "mae": 0.05, "loss": 1 / (i + 1)} for i, f in enumerate(held_out)]
        (folder / "history.json").write_text(json.dumps(rows))
        return folder

    committed, embedded, registry = tmp_path / "relay", tmp_path / "bgcut-s.safetensors", tmp_path / "registry.py"
    registry.write_text('x = dict(\n    sha256=None,  # set by weights/recipes/relay.py\n    other="kept",\n)\n')
    card = tmp_path / "config.json"
    card.write_text(json.dumps({"name": "bgcut-s", "sha256": None}))

    def commit(folder: Path) -> None:
        relay_recipe.commit(folder, committed, embedded, registry, card, score)

    def shipped() -> float:
        return float(read_state_dict(embedded)["w"][0, 0])

    out_of_domain.update({1.0: 0.80, 2.0: 0.78, 3.0: 0.70, 4.0: 0.75, 5.0: 0.90})
    commit(run("s1", [0.90, 0.93], best=1.0, last=2.0))  # nothing shipped yet: the better candidate goes
    assert shipped() == 1.0 and read_state_dict(embedded)["w"].dtype == torch.float16  # stored in fp16
    sha = hashlib.sha256(embedded.read_bytes()).hexdigest()
    assert registry.read_text() == f'x = dict(\n    sha256="{sha}",{relay_recipe.MARK}\n    other="kept",\n)\n'
    assert json.loads((committed / "scores.json").read_text())["sha256"] == sha
    assert json.loads(card.read_text()) == {"name": "bgcut-s", "sha256": sha}
    assert read_state_dict(committed / "state.safetensors")["w"][0, 0] == 2.0  # where s1 stopped, to go on from
    # s2 started afresh: better on the held-out split than s1 ever was, worse outside it: not shipped.
    commit(run("s2", [0.91, 0.95], best=3.0, last=4.0))
    assert shipped() == 1.0 and read_state_dict(committed / "state.safetensors")["w"][0, 0] == 4.0
    line = relay_recipe.command(committed, run=tmp_path / "no-run")
    assert "--backgrounds bg-s2 --boundary-gain 4.0" in line  # s2's settings go on
    assert f"--resume-from {committed / 'state.safetensors'}" in line
    history = json.loads((committed / "history.json").read_text())
    assert [(r["segment"], r["maxF"]) for r in history] == [(1, 0.90), (1, 0.93), (2, 0.91), (2, 0.95)]
    commit(run("s2", [0.91, 0.95, 0.96], best=5.0, last=5.0))  # s2 resumed: its rows go on, and it ships
    history = json.loads((committed / "history.json").read_text())
    assert [(r["segment"], r["maxF"]) for r in history] == [(1, 0.90), (1, 0.93), (2, 0.91), (2, 0.95), (2, 0.96)]
    assert shipped() == 5.0
    assert json.loads((committed / "config.json").read_text())["name"] == "s2"
    # A run stopped by hand before it exported: its rows go into the history, nothing else.
    cut = run("s3", [0.97], best=6.0, last=6.0)
    (cut / "config.json").unlink()
    with pytest.raises(SystemExit, match="no config.json yet"):
        commit(cut)
    relay_recipe.record(cut, "an ablation, stopped after one epoch", committed)
    history = json.loads((committed / "history.json").read_text())
    assert [(r["segment"], r.get("note")) for r in history][-1] == (3, "an ablation, stopped after one epoch")
    assert shipped() == 5.0 and read_state_dict(committed / "state.safetensors")["w"][0, 0] == 5.0
    # Every epoch's copy is a candidate: here the middle epoch, neither the held-out best nor the
    # last, is the best outside DUTS-TR; it ships, and each scored epoch's row keeps its scores.
    out_of_domain.update({7.0: 0.80, 8.0: 0.95, 9.0: 0.85})
    s4 = run("s4", [0.975, 0.96, 0.95], best=7.0, last=9.0)
    (s4 / "epochs").mkdir()
    for epoch, value in ((1, 7.0), (2, 8.0), (3, 9.0)):
        save_tensors({"w": torch.full((2, 2), value)}, s4 / "epochs" / f"epoch-{epoch:03d}.safetensors")
    save_tensors({"w": torch.full((2, 2), 8.0)}, s4 / "best.safetensors", metadata={"other": "file"})
    calls.clear()
    commit(s4)
    assert sorted(calls) == [7.0, 8.0, 9.0]  # best.safetensors holds epoch 2's tensors: scored once
    assert shipped() == 8.0 and json.loads((committed / "scores.json").read_text())["epoch"] == 2
    rows = [r for r in json.loads((committed / "history.json").read_text()) if r["segment"] == 4]  # a run of its own
    assert [r["davis16"]["maxF"] for r in rows] == [0.80, 0.95, 0.85]
