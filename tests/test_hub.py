"""Weights from the Hub through huggingface_hub's real code, against a local stand-in server.

Each scenario runs bgcut in a subprocess so that HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE
are read the way huggingface_hub reads them: once, at import.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .hub_server import FakeHub

REPO, REV = "bgcut-test/luma", "v1"

# Registers a hub-only model whose sha256 the test passes in, then runs the CLI.
SCRIPT = textwrap.dedent(
    """
    import sys
    from bgcut.config import PretrainedCfg
    from bgcut.models import register_model
    register_model(PretrainedCfg(name="hub-luma", arch="luma_test", input_size=32, mean=(0, 0, 0), std=(1, 1, 1),
                                 hf_repo_id="{repo}", hf_revision="{rev}", sha256=sys.argv[1], license="apache-2.0"))
    from bgcut.cli import app
    app(sys.argv[2:], prog_name="bgcut")
    """
).format(repo=REPO, rev=REV)


@pytest.fixture(scope="module")
def weights_bytes(luma_weights: Path) -> bytes:
    return (luma_weights / "model.safetensors").read_bytes()


def bgcut(
    sha: str, args: list[str], hf_home: Path, endpoint: str, offline: bool = False
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_HOME=str(hf_home),
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_ETAG_TIMEOUT="5",
        HF_HUB_DOWNLOAD_TIMEOUT="5",
    )
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, sha, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_download_then_offline_from_cache(tmp_path: Path, weights_bytes: bytes, photos: Path) -> None:
    sha = hashlib.sha256(weights_bytes).hexdigest()
    with FakeHub() as hub:
        hub.files[(REPO, REV, "model.safetensors")] = weights_bytes
        fetched = bgcut(sha, ["models", "fetch", "hub-luma"], tmp_path / "hf", hub.url)
        assert fetched.returncode == 0, fetched.stderr
        assert "hub-luma:" in fetched.stdout and sha[:12] in fetched.stdout
        assert any(r.startswith("GET /bgcut-test/luma/resolve/v1/model.safetensors") for r in hub.requests)
        cached = list((tmp_path / "hf" / "hub").glob("models--bgcut-test--luma/snapshots/*/model.safetensors"))
        assert len(cached) == 1 and cached[0].read_bytes() == weights_bytes
    # The server is gone: an offline run must use the cache, and the model list says so.
    listed = bgcut(sha, ["models", "list"], tmp_path / "hf", "http://127.0.0.1:9", offline=True)
    assert any(
        line.split()[0] == "hub-luma" and line.split()[-1] == "cached" for line in listed.stdout.splitlines()[1:]
    )
    ran = bgcut(
        sha,
        [str(photos), "-o", str(tmp_path / "out"), "-m", "hub-luma", "-j", "0"],
        tmp_path / "hf",
        "http://127.0.0.1:9",
        offline=True,
    )
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "out" / "a.png").exists()


def test_checksum_mismatch_is_refused(tmp_path: Path, weights_bytes: bytes) -> None:
    with FakeHub() as hub:
        hub.files[(REPO, REV, "model.safetensors")] = weights_bytes[:-8]  # truncated on the server
        result = bgcut(
            hashlib.sha256(weights_bytes).hexdigest(), ["models", "fetch", "hub-luma"], tmp_path / "hf", hub.url
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert (
        "for model 'hub-luma' have sha256" in lines[0] and "corrupt or truncated" in lines[0] and "--force" in lines[0]
    )


def test_offline_with_nothing_cached(tmp_path: Path, weights_bytes: bytes, photos: Path) -> None:
    sha = hashlib.sha256(weights_bytes).hexdigest()
    result = bgcut(
        sha,
        [str(photos), "-o", str(tmp_path / "o"), "-m", "hub-luma"],
        tmp_path / "hf",
        "http://127.0.0.1:9",
        offline=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "bgcut: error: model 'hub-luma' is not cached and HF_HUB_OFFLINE is set; on a machine with network run "
        "`bgcut models fetch hub-luma` (same HF_HOME), or convert a checkpoint you have with "
        "`bgcut models import CHECKPOINT --arch luma_test --name hub-luma`, or pass --weights PATH"
    ]


def test_unreachable_hub(tmp_path: Path, weights_bytes: bytes, photos: Path) -> None:
    sha = hashlib.sha256(weights_bytes).hexdigest()
    for args in (["models", "fetch", "hub-luma"], [str(photos), "-o", str(tmp_path / "o"), "-m", "hub-luma"]):
        t0 = time.perf_counter()
        result = bgcut(sha, args, tmp_path / "hf", "http://127.0.0.1:9")
        assert time.perf_counter() - t0 < 15  # was 26 s of retries; the rest is starting Python and torch
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()  # no library retry noise
        assert line == (
            "bgcut: error: cannot download bgcut-test/luma@v1/model.safetensors for model 'hub-luma' from "
            "http://127.0.0.1:9 (Connection refused); on a machine with network run `bgcut models fetch hub-luma` "
            "(same HF_HOME), or convert a checkpoint you have with "
            "`bgcut models import CHECKPOINT --arch luma_test --name hub-luma`, or pass --weights PATH"
        )


def test_missing_file_on_hub(tmp_path: Path, weights_bytes: bytes) -> None:
    with FakeHub() as hub:
        result = bgcut("0" * 64, ["models", "fetch", "hub-luma"], tmp_path / "hf", hub.url)
    assert result.returncode == 1
    assert "not found on the Hub" in result.stderr or "cannot download" in result.stderr
