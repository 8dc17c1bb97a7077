"""Training data: augmentation (paste, blur, JPEG) and COCO instance annotations as pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.errors import UsageError
from bgcut.train.augment import AugmentOptions, augment, degrade, paste_on
from bgcut.train.coco import coco_samples, decode_coco, load_sample
from bgcut.train.data import cache_items, split_by_stem

from .conftest import save, square_image

# ---------------------------------------------------------------- augmentation


def _batch(n: int = 3, size: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    imgs = torch.stack([torch.from_numpy(square_image((size, size), (8, 10, 30, 28))).permute(2, 0, 1)] * n)
    masks = imgs[:, :1].clone()
    return imgs, torch.cat([masks, 255 - masks], dim=1)  # channel 1 stands in for a teacher's mask


def test_paste_moves_the_object_and_its_mask_onto_the_background() -> None:
    img = torch.zeros(1, 3, 16, 16)
    img[..., 4:12, 4:12] = 1.0  # a white 8x8 object on black
    msk = torch.zeros(1, 2, 16, 16)
    msk[:, 0, 4:12, 4:12] = 1.0
    msk[:, 1] = 0.3  # a teacher's opinion of the original photo
    background = np.full((16, 16, 3), (0, 0, 255), np.uint8)  # blue
    out, masks = paste_on(img, msk, background, scale=0.5, where=(1.0, 0.0))
    # The crop shrinks to 8x8 and goes to the top right (x 8-15, y 0-7): the object is at rows 2-5, cols 10-13.
    expected = torch.zeros(16, 16)
    expected[2:6, 10:14] = 1.0
    assert torch.equal(masks[0, 0], expected)
    assert torch.equal(masks[0, 1], expected)  # the teacher never saw this picture: the truth replaces it
    assert torch.allclose(out[0, :, 3:5, 11:13], torch.ones(3, 2, 2))  # the object's inside: white
    blue = torch.tensor([0.0, 0.0, 1.0]).view(3, 1)
    assert torch.equal(out[0].reshape(3, -1)[:, expected.flatten() == 0], blue.expand(3, 256 - 16))


def test_degrade_blurs_and_compresses_only_when_asked() -> None:
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.integers(0, 256, (1, 3, 32, 32)).astype(np.float32) / 255)
    assert degrade(img, None, None) is img
    blurred = degrade(img, 1.5, None)
    # Noise loses most of its pixel-to-pixel variation under a 1.5 px blur.
    assert blurred.diff(dim=-1).abs().mean() < img.diff(dim=-1).abs().mean() / 3
    jpeg = degrade(img, None, 30)
    assert 0.02 < (jpeg - img).abs().mean() < 0.3  # visibly lossy, still the same picture


def test_augment_is_reproducible_and_each_stage_keeps_the_others_draws() -> None:
    imgs, masks = _batch()
    bg = [np.full((50, 60, 3), 90, np.uint8)]
    plain = AugmentOptions(blur=0, jpeg=0)
    a = augment(imgs, masks, 32, torch.Generator().manual_seed(3), plain, bg)
    b = augment(imgs, masks, 32, torch.Generator().manual_seed(3), plain, bg)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # Blur and JPEG change the pictures but not one mask pixel: same crops, same flips.
    c = augment(imgs, masks, 32, torch.Generator().manual_seed(3), AugmentOptions(blur=1, jpeg=1), bg)
    assert torch.equal(a[1], c[1]) and not torch.equal(a[0], c[0])
    # With paste always on, every sample's two mask channels become the same moved truth.
    d = augment(imgs, masks, 32, torch.Generator().manual_seed(3), AugmentOptions(paste=1.0), bg)
    assert torch.equal(d[1][:, 0], d[1][:, 1])
    assert d[0].shape == (3, 3, 32, 32) and float(d[0].min()) >= 0 and float(d[0].max()) <= 1
    # Outside the object, each picture is the uniform grey background (jittered per sample), not the
    # black of the original photo: one value per channel, up to JPEG/blur ringing near the object.
    for k in range(3):
        for ch in range(3):
            outside = d[0][k, ch][d[1][k, 0] == 0]
            assert outside.numel() > 0 and float(outside.std()) < 0.03
            assert float(outside.median()) > 0.15


# ---------------------------------------------------------------- COCO


def _poly(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _ann(aid: int, pid: int, cat: int, seg: object, area: float, bbox: list[int], crowd: int = 0) -> dict:
    ann = {"id": aid, "image_id": pid, "category_id": cat, "segmentation": seg}
    return {**ann, "area": area, "bbox": bbox, "iscrowd": crowd}


def make_coco(root: Path) -> Path:
    """Two 80x60 pictures. a.jpg: a dog (polygon) and a cat (compressed RLE); b.jpg: a crowd of
    people (uncompressed RLE), one person (polygon) and a tiny dog."""
    save(square_image((80, 60), (10, 10, 40, 40)), root / "pics" / "a.jpg")
    save(square_image((80, 60), (0, 0, 1, 1)), root / "pics" / "b.jpg")
    cat = np.zeros((60, 80), bool)
    cat[20:50, 50:70] = True
    crowd = np.zeros((60, 80), np.uint8)
    crowd[0:10, 0:80] = 1
    crowd_rle = mask_utils.encode(np.asfortranarray(crowd))
    counts = []  # the uncompressed (list) form crowds use in COCO files
    flat, run, value = crowd.flatten(order="F"), 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            run, value = 1, v
    counts.append(run)
    assert mask_utils.decode(crowd_rle).sum() == crowd.sum()
    pictures = [{"id": i, "file_name": n, "width": 80, "height": 60} for i, n in ((1, "a.jpg"), (2, "b.jpg"))]
    names = ["person", "dog", "cat"]
    anns = [
        _ann(10, 1, 2, _poly(10, 10, 40, 40), 900, [10, 10, 30, 30]),
        _ann(11, 1, 3, _rle(cat), 600, [50, 20, 20, 30]),
        _ann(20, 2, 1, {"size": [60, 80], "counts": counts}, 800, [0, 0, 80, 10], crowd=1),
        _ann(21, 2, 1, _poly(30, 20, 60, 55), 1050, [30, 20, 30, 35]),
        _ann(22, 2, 2, _poly(0, 50, 4, 54), 16, [0, 50, 4, 4]),
    ]
    categories = [{"id": i, "name": n} for i, n in enumerate(names, start=1)]
    data = {"images": pictures, "categories": categories, "annotations": anns}
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_instances_are_object_crops_with_their_own_masks(tmp_path: Path) -> None:
    ann = make_coco(tmp_path)
    samples = coco_samples(ann, tmp_path / "pics", "instances", None, min_area=100, context=0.1)
    # The crowd and the 16-pixel dog are skipped; objects come in picture then id order.
    boxes = [(s.image.name, s.box) for s in samples]
    assert boxes == [("a.jpg", (7, 7, 43, 43)), ("a.jpg", (48, 17, 72, 53)), ("b.jpg", (27, 16, 63, 59))]
    rgb, mask = load_sample(samples[0])
    assert rgb.shape == (36, 36, 3) and mask.shape == (36, 36)
    # The dog's polygon covers x 10-40: in the crop from 7, columns 3..33 (pycocotools includes the edge pixel).
    assert mask[18, 3] == 255 and mask[18, 2] == 0 and set(np.unique(mask)) == {0, 255}
    _, cat = load_sample(samples[1])  # compressed RLE: exactly rows 20-49, cols 50-69 of the picture
    assert cat[3:33, 2:22].all() and cat.sum() == 255 * 600


def test_coco_classes_are_per_picture_unions_with_crowds(tmp_path: Path) -> None:
    ann = make_coco(tmp_path)
    samples = coco_samples(ann, tmp_path / "pics", "classes", ["person"])
    assert [(s.image.name, s.box, len(s.segmentations)) for s in samples] == [("b.jpg", None, 2)]
    rgb, mask = load_sample(samples[0])
    assert rgb.shape == (60, 80, 3)
    assert (mask[0:10] == 255).all()  # the crowd region counts as people
    assert mask[30, 45] == 255 and mask[52, 2] == 0  # the person yes, the small dog no
    by_id = coco_samples(ann, tmp_path / "pics", "classes", ["2", "cat"])
    assert [s.image.name for s in by_id] == ["a.jpg", "b.jpg"]
    with pytest.raises(UsageError, match=r"'horse': not a category of .*instances.json \(it has cat, dog, person\)"):
        coco_samples(ann, tmp_path / "pics", "classes", ["horse"])
    with pytest.raises(UsageError, match="--coco-mode 'boxes': expected one of instances, classes"):
        coco_samples(ann, tmp_path / "pics", "boxes")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UsageError, match="broken.json: not a readable COCO instances file"):
        coco_samples(tmp_path / "broken.json", tmp_path / "pics")


def test_coco_split_keeps_a_pictures_objects_together_and_bad_pictures_are_skipped(tmp_path: Path) -> None:
    ann = make_coco(tmp_path)
    samples = coco_samples(ann, tmp_path / "pics", "instances", None, min_area=100)
    for fraction in (0.3, 0.5, 0.7):
        train, val = split_by_stem(samples, lambda s: s.stem, fraction)
        assert not {s.image for s in train} & {s.image for s in val}
    (tmp_path / "pics" / "b.jpg").write_bytes(b"not a jpeg")
    lines: list[str] = []
    images, masks, kept = cache_items(samples, decode_coco, 32, 1, 0, lines.append)
    assert kept == [0, 1] and images.shape == (2, 3, 32, 32) and masks.shape == (2, 1, 32, 32)
    assert len(lines) == 1 and lines[0].startswith("skipped: ") and "b.jpg" in lines[0]


def test_train_cli_on_coco_with_backgrounds(tmp_path: Path) -> None:
    ann = make_coco(tmp_path)
    for i in range(2):
        save(np.full((50, 70, 3), 40 * i, np.uint8), tmp_path / "bg" / f"bg{i}.jpg")
    (tmp_path / "bg" / "broken.jpg").write_bytes(b"nope")
    base = ["train", "--images", str(tmp_path / "pics"), "-o", str(tmp_path / "run"), "--size", "32", "-b", "2"]
    base += ["-j", "0", "--device", "cpu", "--epochs", "1", "--coco-min-area", "100"]
    result = CliRunner().invoke(
        app, [*base, "--coco", str(ann), "--backgrounds", str(tmp_path / "bg"), "--paste", "1"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "backgrounds: skipped" in result.output and "broken.jpg" in result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["training"]["coco"] == str(ann) and config["training"]["paste"] == 1.0
    split = json.loads((tmp_path / "run" / "split.json").read_text())["val"]
    assert split and set(split) <= {"a.jpg", "b.jpg"}
    neither = CliRunner().invoke(app, base)
    assert neither.exit_code == 2 and "give either --masks" in neither.output
    teacher = CliRunner().invoke(app, [*base, "--coco", str(ann), "--teacher", "bgcut-lite"])
    assert teacher.exit_code == 2 and "--teacher works with --masks pairs, not with --coco" in teacher.output


def test_coco_picture_of_another_size_is_refused_by_name(tmp_path: Path) -> None:
    ann = make_coco(tmp_path)
    save(np.zeros((50, 70, 3), np.uint8), tmp_path / "pics" / "a.jpg")  # the file says 80x60
    samples = coco_samples(ann, tmp_path / "pics", "classes")
    lines: list[str] = []
    _, masks, kept = cache_items(samples, decode_coco, 16, 1, 0, lines.append)
    assert kept == [1] and masks.shape == (1, 1, 16, 16)
    assert lines == [f"skipped: {tmp_path / 'pics' / 'a.jpg'}: the picture is 70x50 but the COCO file says 80x60"]


def test_a_set_of_which_nothing_can_be_read_is_named_in_the_error(tmp_path: Path) -> None:
    """A tiny set's one held-out pair, unreadable, was reported as "none of the 1 training pairs"."""
    ann = make_coco(tmp_path)
    save(np.zeros((50, 70, 3), np.uint8), tmp_path / "pics" / "a.jpg")  # the file says 80x60
    samples = coco_samples(ann, tmp_path / "pics", "classes")[:1]
    with pytest.raises(UsageError, match=r"^none of the 1 held-out \(validation\) pairs could be read$"):
        cache_items(samples, decode_coco, 16, 1, 0, lambda _line: None, kind="held-out (validation)")
    with pytest.raises(UsageError, match=r"^none of the 1 training pairs could be read$"):
        cache_items(samples, decode_coco, 16, 1, 0, lambda _line: None)


# ---------------------------------------------------------------- preprocessing shared with inference


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_training_resizes_photos_as_inference_does(tmp_path: Path, interpolation: str) -> None:
    """The training cache holds exactly what a decode worker gives the model (no own resampler)."""
    from bgcut.pipeline.dataset import DecodeDataset
    from bgcut.train.data import decode_pair

    arr = square_image((97, 61), (10, 10, 50, 40))
    save(arr, tmp_path / "p.jpg")
    save(arr[..., 0], tmp_path / "p.png")
    rgb, masks = decode_pair((tmp_path / "p.jpg", tmp_path / "p.png", None), 32, interpolation)
    served = DecodeDataset([str(tmp_path / "p.jpg")], 32, 10**8, interpolation)[0].model_input
    assert np.array_equal(rgb, served.transpose(1, 2, 0)) and masks.shape == (1, 32, 32)


def test_trained_config_keeps_the_base_models_input_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from bgcut.models import _registry, create_model, get_pretrained_cfg
    from bgcut.train import TrainConfig, train

    base = get_pretrained_cfg("bgcut-lite")
    # Registered for this test only: other tests list the registry.
    bicubic = replace(base, name="lite-bicubic-test", interpolation="bicubic", embedded=None, sha256=None)
    monkeypatch.setitem(_registry._MODELS, bicubic.name, bicubic)
    for i in range(4):
        arr = square_image((40, 40), (5 + i, 5, 30, 30))
        save(arr, tmp_path / "images" / f"p{i}.jpg")
        save(arr[..., 0], tmp_path / "masks" / f"p{i}.png")
    cfg = TrainConfig(
        tmp_path / "images", tmp_path / "masks", tmp_path / "run", model="lite-bicubic-test",
        size=32, epochs=1, batch_size=2, workers=0, device="cpu", val_fraction=0.5,
    )  # fmt: skip
    train(cfg, log=lambda _m: None)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["interpolation"], config["output"], config["mean"]) == ("bicubic", "sigmoid", list(base.mean))
    assert create_model(weights=tmp_path / "run").cfg.interpolation == "bicubic"


def test_a_config_naming_an_unknown_resampler_is_one_usage_error(tmp_path: Path, luma_weights: Path) -> None:
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes((luma_weights / "model.safetensors").read_bytes())
    config = json.loads((luma_weights / "config.json").read_text())
    (weights / "config.json").write_text(json.dumps({**config, "interpolation": "nearest"}))
    save(square_image(), tmp_path / "in.png")
    res = CliRunner().invoke(app, [str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "-w", str(weights)])
    assert res.exit_code == 2
    assert res.output == (
        f"bgcut: error: {weights / 'config.json'}: 'interpolation' must be one of bilinear, bicubic, lanczos, box, "
        "got 'nearest'\n"
    )
    assert not (tmp_path / "out").exists()


def test_training_decoders_above_the_core_count_cache_every_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bgcut train -j 2`` on one CPU: the pairs are cached by two workers, in the items' order,
    and no advice about worker counts is printed."""
    import os
    import warnings

    samples = coco_samples(make_coco(tmp_path), tmp_path / "pics", "instances", None, min_area=100)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        images, masks, kept = cache_items(samples, decode_coco, 32, 1, 2, print)
    alone, alone_masks, _ = cache_items(samples, decode_coco, 32, 1, 0, print)
    assert kept == list(range(len(samples))) and images.shape[0] == len(samples)
    assert torch.equal(images, alone) and torch.equal(masks, alone_masks)
    assert [str(w.message) for w in said] == []


DEADLY_DECODE = """
import os, signal
import numpy as np

def decode(item, size):
    name, main = item
    if name.startswith("dead") and os.getpid() != main:
        os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("bad"):
        raise ValueError(f"{name}: cannot read image")
    value = int(name[1:].split(".")[0])
    return np.full((size, size, 3), value, np.uint8), np.full((1, size, size), 255 - value, np.uint8)
"""


def test_a_decoder_killed_while_caching_costs_only_its_picture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decode worker killed during ``bgcut train``'s caching ended the run in a ConnectionResetError
    traceback; now its picture is tried again alone, and skipped by name when it kills its worker again."""
    import os

    (tmp_path / "deadly_decode.py").write_text(DEADLY_DECODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import deadly_decode

    names = [f"p{i}.png" for i in range(12)]
    names[5], names[8] = "dead.png", "bad.png"
    lines: list[str] = []
    images, masks, kept = cache_items([(n, os.getpid()) for n in names], deadly_decode.decode, 8, 1, 2, lines.append)
    assert kept == [i for i in range(12) if i not in (5, 8)]
    assert [int(images[row, 0, 0, 0]) for row in range(len(kept))] == kept  # each row its own picture, in order
    assert [int(masks[row, 0, 0, 0]) for row in range(len(kept))] == [255 - i for i in kept]
    assert "skipped: dead.png: its decoder process died while reading it" in lines
    assert "skipped: bad.png: cannot read image" in lines
    assert any(line.startswith("warning: a worker process died; its ") for line in lines), lines
