"""Shared fixtures: a tiny deterministic model (``luma_test``) and generated images.

Nothing here reads ../shared or the network: every image a test uses is drawn here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file


@pytest.fixture(scope="session")
def luma_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with model.safetensors + config.json: mask = sigmoid(40 * (brightness - 0.5))."""
    folder = tmp_path_factory.mktemp("luma")
    save_file({"scale": torch.tensor(40.0), "offset": torch.tensor(0.5)}, str(folder / "model.safetensors"))
    config = {
        "name": "luma-test",
        "arch": "luma_test",
        "input_size": 64,
        "mean": [0, 0, 0],
        "std": [1, 1, 1],
        "output": "sigmoid",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def square_image(size: tuple[int, int] = (80, 60), box: tuple[int, int, int, int] = (20, 15, 60, 45)) -> np.ndarray:
    """Black RGB picture with a white rectangle (x0, y0, x1, y1): the luma model's foreground."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = 255
    return arr


def save(arr: np.ndarray, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kwargs)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A small tree: photos/a.jpg, photos/sub/b.png, photos/sub/deeper/c.jpg."""
    root = tmp_path / "photos"
    save(square_image(), root / "a.png")
    save(square_image((64, 64), (10, 10, 40, 50)), root / "sub" / "b.png")
    save(square_image((50, 40), (5, 5, 30, 30)), root / "sub" / "deeper" / "c.png")
    return root


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    yield env
    server.stop()


def s3_filesystem(env: dict[str, str]) -> fsspec.AbstractFileSystem:
    import s3fs

    return s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        skip_instance_cache=True,
    )


def run_plain_script(script: str, how: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """``script`` (no ``if __name__ == "__main__":`` guard) run as ``folder/script.py`` (``how``
    "file") or piped into ``python -`` ("stdin"), in ``folder``, as a user runs one."""
    (folder / "script.py").write_text(script)
    cmd = [sys.executable, str(folder / "script.py")] if how == "file" else [sys.executable, "-"]
    stdin = script if how == "stdin" else None
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=folder, timeout=120)


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test interrupts: a shell starts background jobs with
    SIGINT ignored, a child inherits that, and Python then never raises KeyboardInterrupt; the
    test must not depend on how pytest itself was started."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
