"""``bgcut serve``: the real app on uvicorn on 127.0.0.1, driven by a real HTTP client."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from typer.testing import CliRunner

from bgcut.cli import app as cli_app
from bgcut.config import RunOptions
from bgcut.pipeline.infer import Predictor
from bgcut.serve.app import create_app
from bgcut.serve.options import ServeOptions
from bgcut.serve.stopping import STOPPING, AnswerWhenStopped

from .conftest import square_image


@contextmanager
def running(opts: ServeOptions, predictor: Predictor) -> Iterator[httpx.Client]:
    server = uvicorn.Server(uvicorn.Config(create_app(opts, predictor), host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def predictor(luma_weights: Path) -> Predictor:
    return Predictor.from_options(RunOptions(weights=str(luma_weights), device="cpu"), pad=False)


@pytest.fixture(scope="module")
def client(predictor: Predictor) -> Iterator[httpx.Client]:
    with running(ServeOptions(max_wait_ms=2), predictor) as c:
        yield c


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_health_models_docs_and_page(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "luma-test" and health["device"] == "cpu"
    assert client.get("/models").json()["serving"] == "luma-test"
    assert "/remove" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="files"' in page.text and "/remove?" in page.text


def test_remove_matches_the_command_line_byte_for_byte(
    client: httpx.Client, tmp_path: Path, luma_weights: Path
) -> None:
    arr = square_image()
    data = png_bytes(arr)
    raw = client.post("/remove", content=data)
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    form = client.post("/remove", files={"image": ("x.png", data, "image/png")})
    assert form.content == raw.content
    cut = np.asarray(Image.open(io.BytesIO(raw.content)))
    assert cut.shape == (60, 80, 4) and cut[30, 40, 3] == 255 and cut[0, 0, 3] == 0
    (tmp_path / "x.png").write_bytes(data)
    res = CliRunner().invoke(
        cli_app, [str(tmp_path / "x.png"), "-o", str(tmp_path / "cli.png"), "-w", str(luma_weights)]
    )
    assert res.exit_code == 0 and (tmp_path / "cli.png").read_bytes() == raw.content


def test_options_are_the_command_lines(client: httpx.Client) -> None:
    data = png_bytes(square_image())
    for spec in ("rgb(0,255,0)", "hsl(120,100%,50%)"):  # what PIL reads, as on the CLI
        flat = client.post("/remove", params={"format": "jpg", "bg": spec}, content=data)
        assert flat.status_code == 200, flat.text
        assert Image.open(io.BytesIO(flat.content)).getpixel((2, 2))[1] > 240
    jpg = client.post("/remove", params={"format": "jpg", "bg": "#00ff00"}, content=data)
    assert jpg.headers["content-type"] == "image/jpeg"
    corner = np.asarray(Image.open(io.BytesIO(jpg.content)))[2, 2]
    assert abs(int(corner[1]) - 255) < 8 and corner[0] < 8 and corner[2] < 8
    blurred = client.post("/remove", params={"format": "jpg", "bg": "blur:4"}, content=data)
    assert blurred.status_code == 200, blurred.text
    assert Image.open(io.BytesIO(blurred.content)).mode == "RGB"
    mask = client.post("/remove", params={"format": "mask", "binary": "true"}, content=data)
    values = set(np.unique(np.asarray(Image.open(io.BytesIO(mask.content)))).tolist())
    assert values == {0, 255}
    crop = client.post("/remove", params={"format": "crop", "margin": "2"}, content=data)
    assert Image.open(io.BytesIO(crop.content)).size == (44, 34)  # the 40 x 30 square and 2 px around


@pytest.mark.parametrize(
    ("params", "body", "status", "error"),
    [
        ({}, b"", 400, "empty upload: send the image as the body, or as the 'image' field of a form"),
        ({}, b"not an image", 400, "not an image, or a format PIL cannot identify"),
        ({"bg": "/etc/passwd"}, None, 400, "bg '/etc/passwd': expected a colour (white, #00ff00, 0,255,0"),
        ({"bg": "blur:-1"}, None, 400, "bg 'blur:-1': blur:SIGMA takes a sigma from 0.5 to 500 pixels"),
        # Before: a plain-text 500 with a traceback for each of these three.
        ({"bg": "1,2"}, None, 400, "bg '1,2': expected three numbers 0-255 like 0,128,255"),
        ({"bg": "300,0,0"}, None, 400, "bg '300,0,0': expected three numbers 0-255 like 0,128,255"),
        ({"bg": "1,2,3,4"}, None, 400, "bg '1,2,3,4': expected three numbers 0-255 like 0,128,255"),
        ({"bg": "rgb(1,2)"}, None, 400, "bg 'rgb(1,2)': not a colour (expected e.g. rgb(0,128,255)"),
        ({"bg": "x" * 5000}, None, 400, "bg '" + "x" * 57 + "...': expected a colour"),  # not echoed in full
        ({"format": "gif"}, None, 400, "format 'gif': expected one of png-alpha, mask, crop, webp, jpg"),
        ({"threshold": "2"}, None, 400, "threshold 2.0: must be from 0 to 1"),
        ({"threshold": "x"}, None, 400, "threshold 'x': expected a number"),
        ({"path": "/tmp/x"}, None, 400, "unknown parameter 'path'"),
        ({"refine": "matting"}, None, 400, "refine 'matting' takes seconds per image: not offered by the server"),
        # Before: the last one was taken, silently.
        ([("format", "png-alpha"), ("format", "mask")], None, 400, "parameter 'format' given more than once"),
    ],
)
def test_bad_requests_get_a_4xx_with_one_line(
    client: httpx.Client, params: dict[str, str] | list[tuple[str, str]], body: bytes | None, status: int, error: str
) -> None:
    reply = client.post("/remove", params=params, content=png_bytes(square_image()) if body is None else body)
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"].startswith(error) and "\n" not in reply.json()["error"]


def test_limits_and_token(predictor: Predictor) -> None:
    opts = ServeOptions(max_upload_mb=0.01, max_pixels=5000, token="s3cret")
    with running(opts, predictor) as c:
        auth = {"Authorization": "Bearer s3cret"}
        assert c.post("/remove", content=png_bytes(square_image())).status_code == 401
        assert c.get("/models").status_code == 401 and c.get("/health").status_code == 200
        # Without the token, /health says the server is up and nothing about its model or queue.
        assert c.get("/health").json() == {"status": "ok"}
        assert c.get("/health", headers={"Authorization": "Bearer s3cret"}).json()["model"] == "luma-test"
        ok = c.post("/remove", content=png_bytes(square_image()), headers=auth)
        assert ok.status_code == 200
        big = c.post("/remove", content=b"\0" * 20_000, headers=auth)
        assert big.status_code == 413 and "over the limit of 10485 bytes" in big.json()["error"]
        bomb = c.post("/remove", content=png_bytes(np.zeros((100, 100, 3), np.uint8)), headers=auth)
        assert bomb.status_code == 413
        assert bomb.json()["error"] == "100x100 = 10000 pixels is over the server's limit of 5000"


def test_concurrent_requests_share_batches_and_each_gets_its_own_result(predictor: Predictor) -> None:
    sizes = [(60 + 4 * i, 40 + 2 * i) for i in range(8)]
    with running(ServeOptions(max_wait_ms=300, max_batch=8), predictor) as c:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda s: c.post("/remove", content=png_bytes(square_image(s))), sizes))
        for size, reply in zip(sizes, replies, strict=True):
            assert reply.status_code == 200 and Image.open(io.BytesIO(reply.content)).size == size
        health = c.get("/health").json()
    assert health["requests"] == 8 and health["batches"] < 8  # some ran together


def test_a_full_queue_answers_503_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    slow = Predictor.from_options(RunOptions(model="bgcut-lite", device="cpu"), pad=False)
    real = slow.masks

    def masks(inputs, sizes, **kwargs):  # noqa: ANN001, ANN003, ANN202 - the model, made slow
        time.sleep(0.5)
        return real(inputs, sizes, **kwargs)

    monkeypatch.setattr(slow, "masks", masks)
    with running(ServeOptions(max_wait_ms=0, max_batch=1, max_queue=1), slow) as c, ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: c.post("/remove", content=png_bytes(square_image())), range(6)))
    codes = sorted(r.status_code for r in replies)
    assert codes[0] == 200 and codes[-1] == 503, codes
    busy = next(r for r in replies if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and json.loads(busy.content)["error"].startswith("busy")


def test_serve_bad_options_are_one_line() -> None:
    res = CliRunner().invoke(cli_app, ["serve", "--port", "0"])
    assert res.exit_code == 2 and res.output == "bgcut: error: --port 0: must be from 1 to 65535\n"


def test_serving_beyond_loopback_without_a_token_warns(monkeypatch: pytest.MonkeyPatch, luma_weights: Path) -> None:
    import uvicorn

    started: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **_: started.append(host))
    base = ["serve", "-w", str(luma_weights), "--device", "cpu"]
    res = CliRunner().invoke(cli_app, [*base, "--host", "0.0.0.0"])
    assert res.exit_code == 0 and started == ["0.0.0.0"]
    assert res.output.splitlines()[0] == (
        "bgcut: warning: listening on 0.0.0.0 with no --token: anyone who can reach this machine can use the "
        "server; set --token (or BGCUT_TOKEN)"
    )
    for extra in (["--host", "0.0.0.0", "--token", "t"], []):  # a token, or loopback: no warning
        res = CliRunner().invoke(cli_app, [*base, *extra])
        assert res.exit_code == 0 and "warning" not in res.output


def test_the_host_header_is_checked_against_dns_rebinding(predictor: Predictor) -> None:
    """A page on evil.example that resolves its own name to 127.0.0.1 reaches a loopback server
    with Host: evil.example; that is refused unless --allowed-hosts names it."""
    with running(ServeOptions(), predictor) as c:
        assert c.get("/health").status_code == 200  # Host: 127.0.0.1:PORT
        assert c.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
        evil = c.post("/remove", content=png_bytes(square_image()), headers={"Host": "evil.example:8000"})
        assert evil.status_code == 400
        assert evil.json() == {"error": "Host 'evil.example:8000' is not one this server answers: see --allowed-hosts"}
    with running(ServeOptions(allowed_hosts=("cutter.lan",)), predictor) as c:
        assert c.get("/health", headers={"Host": "cutter.lan:8000"}).status_code == 200
        assert c.get("/health").status_code == 400  # the list replaces the default
    wildcard = ServeOptions(host="0.0.0.0")
    assert wildcard.host_allowed("192.168.1.20:8000") and ServeOptions(allowed_hosts=("*",)).host_allowed("x")
    assert ServeOptions(host="::1").host_allowed("[::1]:8000") and not ServeOptions().host_allowed("[::2]:80")


def test_a_chunked_multipart_upload_is_cut_off_at_the_limit(
    predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no Content-Length, the form parser used to spool a 300 MiB file part to a temporary
    file before the 413 came: anyone who could reach the server could fill its disk."""
    import tempfile

    spool = tmp_path / "spool"
    spool.mkdir()

    def visible(**kwargs: object):  # noqa: ANN202 - the spooled file, made visible to measure it
        return tempfile.NamedTemporaryFile(dir=spool, delete=False)  # noqa: SIM115

    monkeypatch.setattr(tempfile, "TemporaryFile", visible)
    peak = {"disk": 0, "rss": 0}
    stop = threading.Event()

    def rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def watch() -> None:
        while not stop.is_set():
            peak["disk"] = max(peak["disk"], sum(f.stat().st_size for f in spool.iterdir()))
            peak["rss"] = max(peak["rss"], rss())
            time.sleep(0.01)

    boundary = "bgcutboundary"
    chunk = b"\xab" * (1 << 16)

    def body() -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
               "Content-Type: image/png\r\n\r\n").encode()  # fmt: skip
        for _ in range(300 * 16):  # 300 MiB
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    before = rss()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with running(ServeOptions(max_upload_mb=1), predictor) as c:
            headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
            try:
                reply = c.post("/remove", content=body(), headers=headers)
                status = reply.status_code
                assert status == 413 and "over the limit" in reply.json()["error"]
            except httpx.TransportError:
                status = None  # the server answered and closed while the client was still sending
    finally:
        stop.set()
        watcher.join()
    assert peak["disk"] <= 2 * 2**20, f"spooled {peak['disk']} bytes"
    assert peak["rss"] - before < 64 * 2**20, f"memory grew by {peak['rss'] - before} bytes"


def test_a_client_that_goes_away_mid_upload_is_one_log_line(
    predictor: Predictor, capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with running(ServeOptions(), predictor) as c:
        host, port = c.base_url.host, c.base_url.port
        part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
        for kind, start in (("image/png", b""), ("multipart/form-data; boundary=b", part)):
            sock = socket.create_connection((host, port))
            sock.sendall(f"POST /remove HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {kind}\r\n"
                         "Content-Length: 100000\r\n\r\n".encode() + start + b"x" * 1000)  # fmt: skip
            sock.close()  # 99,000 bytes short
        err, deadline = "", time.monotonic() + 10
        while time.monotonic() < deadline and err.count("went away") < 2:
            time.sleep(0.05)
            err += capfd.readouterr().err
        assert c.get("/health").status_code == 200  # still serving
    err += capfd.readouterr().err
    assert err.count("went away during its upload") == 2, err
    assert "Traceback" not in err and not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def _slowed(monkeypatch: pytest.MonkeyPatch, predictor: Predictor, seconds: float) -> list[int]:
    """The model made slow; the list counts the images each forward pass ran."""
    real, ran = predictor.masks, []

    def masks(inputs, sizes, **kwargs):  # noqa: ANN001, ANN003, ANN202
        ran.append(len(inputs))
        time.sleep(seconds)
        return real(inputs, sizes, **kwargs)

    monkeypatch.setattr(predictor, "masks", masks)
    return ran


def test_memory_in_flight_is_bounded_by_the_budget(monkeypatch: pytest.MonkeyPatch, luma_weights: Path) -> None:
    # 1000x1000 counts 40 MB: a 90 MiB budget holds two at once; the others wait their turn.
    slow = Predictor.from_options(RunOptions(weights=str(luma_weights), device="cpu"), pad=False)
    _slowed(monkeypatch, slow, 0.3)
    big = png_bytes(square_image((1000, 1000)))
    with running(ServeOptions(max_wait_ms=0, max_memory_mb=90), slow) as c, ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: c.post("/remove", content=big), range(6)))
        health = c.get("/health").json()
        huge = c.post("/remove", content=png_bytes(square_image((1600, 1600))))
    assert [r.status_code for r in replies] == [200] * 6
    assert 76 <= health["memory_peak_mb"] <= 90 and health["memory_in_flight_mb"] == 0
    assert huge.status_code == 413
    assert huge.json()["error"] == "the image needs about 97 MB, over the server's --max-memory-mb 90"


def test_waiting_for_memory_past_the_deadline_is_503(monkeypatch: pytest.MonkeyPatch, luma_weights: Path) -> None:
    slow = Predictor.from_options(RunOptions(weights=str(luma_weights), device="cpu"), pad=False)
    _slowed(monkeypatch, slow, 1.5)
    big = png_bytes(square_image((1000, 1000)))
    opts = ServeOptions(max_wait_ms=0, max_memory_mb=60, max_seconds=1.0)  # room for one
    with running(opts, slow) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/remove", content=big)
        time.sleep(0.3)
        second = pool.submit(c.post, "/remove", content=big)
        late, early = second.result(), first.result()
    assert early.status_code == 504  # it ran, and the model took longer than the deadline
    assert late.status_code == 503 and late.headers["retry-after"] == "1"
    assert late.json()["error"] == "busy: too much work in flight, try again shortly"


def test_past_the_deadline_the_answer_is_504_and_the_rest_of_the_work_is_dropped(
    monkeypatch: pytest.MonkeyPatch, luma_weights: Path
) -> None:
    slow = Predictor.from_options(RunOptions(weights=str(luma_weights), device="cpu"), pad=False)
    ran = _slowed(monkeypatch, slow, 0.8)
    with running(ServeOptions(max_wait_ms=0, max_batch=1, max_seconds=0.5), slow) as c, ThreadPoolExecutor(3) as pool:
        t0 = time.monotonic()
        replies = list(pool.map(lambda _: c.post("/remove", content=png_bytes(square_image())), range(3)))
        took = time.monotonic() - t0
        time.sleep(1.0)  # the forward pass running then ends; the queued ones must not run
        health = c.get("/health").json()
    assert [r.status_code for r in replies] == [504] * 3 and took < 0.8 + 0.5
    assert replies[0].json()["error"] == "not done within the server's --max-seconds 0.5; its work is dropped"
    assert ran == [1] and health["requests"] == 1 and health["memory_in_flight_mb"] == 0


def test_a_client_that_goes_away_drops_its_work(
    monkeypatch: pytest.MonkeyPatch, luma_weights: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    slow = Predictor.from_options(RunOptions(weights=str(luma_weights), device="cpu"), pad=False)
    ran = _slowed(monkeypatch, slow, 0.8)
    with running(ServeOptions(max_wait_ms=0, max_batch=1), slow) as c:
        with ThreadPoolExecutor(1) as pool:
            kept = pool.submit(c.post, "/remove", content=png_bytes(square_image()))
            time.sleep(0.2)  # its forward pass is running
            with pytest.raises(httpx.ReadTimeout):  # this client gives up while its request is queued
                c.post("/remove", content=png_bytes(square_image()), timeout=0.3)
            assert kept.result().status_code == 200
        time.sleep(1.0)
        health = c.get("/health").json()
    assert ran == [1] and health["requests"] == 1 and health["memory_in_flight_mb"] == 0
    err = capfd.readouterr().err
    assert "went away; its remaining work is dropped" in err and "Traceback" not in err


def test_sigterm_ends_the_server_within_its_grace_period(tmp_path: Path, luma_weights: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "bgcut", "serve", "-w", str(luma_weights), "--device", "cpu", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--grace-seconds", "1"], stderr=subprocess.PIPE, text=True)
    big = png_bytes(square_image((3000, 3000)))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
                time.sleep(0.1)

        def post(_: int) -> int:
            try:  # work that outlasts the grace period: refine and decontaminate on 9 MP, 8 at once
                reply = httpx.post(f"{url}/remove?refine=guided&decontaminate=1", content=big, timeout=60)
            except httpx.TransportError:
                return 0  # the process ended before this request's cancellation ran: the connection closed
            assert reply.status_code == 200 or reply.json()["error"] == STOPPING, reply.text
            return reply.status_code

        with ThreadPoolExecutor(8) as pool:
            replies = pool.map(post, range(8))
            time.sleep(1.0)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            took = time.monotonic() - t0
            codes = list(replies)
    finally:
        proc.kill()
    assert took < 1 + 5, (took, err)  # the grace period, then the stage running (all 8 would take ~15 s)
    # uvicorn re-raises the signal once it has shut down: the status a shell shows is 143.
    assert proc.returncode == -signal.SIGTERM and "Traceback" not in err, err
    assert set(codes) <= {200, 503, 0} and set(codes) != {200}, codes
    print(f"SIGTERM to exit: {took:.1f} s; replies {codes}")  # nothing half-answered: done, 503, or closed


class _Held:
    """The predictor, its forward pass held until ``release`` is set: requests are then surely still
    running when a stop's grace period ends, however fast the machine is."""

    def __init__(self, inner: Predictor, release: threading.Event) -> None:
        self.inner, self.release = inner, release

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def masks(self, *args: object, **kwargs: object) -> object:
        self.release.wait(timeout=60)
        return self.inner.masks(*args, **kwargs)


@contextmanager
def _thread_deaths() -> Iterator[list[str]]:
    """The exceptions that end any thread meanwhile (the model thread's included), one line each."""
    died: list[str] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: died.append(f"{args.thread.name if args.thread else '?'}: {args.exc_value!r}")
    try:
        yield died
    finally:
        threading.excepthook = hook


def test_a_cancelled_request_leaves_the_model_thread_running(predictor: Predictor) -> None:
    """When the server's event loop closes, it cancels the requests still waiting, and with them
    their futures (asyncio's wrap_future): the model thread, still in a forward pass, used to die
    with InvalidStateError on setting such a future's result, and every later request hung."""
    from bgcut.serve.batcher import Batcher

    release = threading.Event()
    batcher = Batcher(_Held(predictor, release), max_batch=1, max_wait=0.05, max_queue=8)  # type: ignore[arg-type]
    with _thread_deaths() as died:
        try:
            photo = predictor.prepare(square_image((80, 60)))
            running = batcher.submit(photo, (60, 80))
            time.sleep(0.3)  # its batch is taken, and held at the forward pass
            gone, kept = batcher.submit(photo, (60, 80)), batcher.submit(photo, (60, 80))
            assert not running.cancel()  # a batch under way is no longer cancelled under the thread
            assert gone.cancel()  # still waiting in the queue
            release.set()
            assert running.result(timeout=30).shape == kept.result(timeout=30).shape == (60, 80)
            after = batcher.submit(photo, (60, 80))  # the thread still serves
            assert after.result(timeout=30).shape == (60, 80)
        finally:
            release.set()
            batcher.close()
    assert not died, died


def test_requests_cut_short_by_the_stop_are_answered_503_and_log_no_traceback(predictor: Predictor) -> None:
    """In process, the event loop runs every cancelled request to its end after the grace period
    (a SIGTERMed process may exit first: the race that the SIGTERM test cannot force)."""
    import logging

    release = threading.Event()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ServeOptions(), _Held(predictor, release)),  # type: ignore[arg-type]
            host="127.0.0.1",
            port=0,
            log_level="error",
            timeout_graceful_shutdown=0.2,
        )
    )
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    keep = Keep()
    logging.getLogger("uvicorn.error").addHandler(keep)
    thread = threading.Thread(target=server.run, daemon=True)
    with _thread_deaths() as died:
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not server.started:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.02)
            port = server.servers[0].sockets[0].getsockname()[1]
            photo = png_bytes(square_image((200, 150)))
            url = f"http://127.0.0.1:{port}/remove"
            with ThreadPoolExecutor(4) as pool:
                replies = [pool.submit(httpx.post, url, content=photo, timeout=60) for _ in range(4)]
                time.sleep(1.0)  # all four are in: decoded, and waiting on the held forward pass
                server.should_exit = True
                # The forward pass goes on once the grace period (0.2 s) has cut the requests short;
                # the server's shutdown waits for the model thread.
                threading.Timer(2.0, release.set).start()  # ten times the grace: a slow machine still cuts first
                answers = [r.result() for r in replies]
            thread.join(timeout=30)
        finally:
            release.set()
            logging.getLogger("uvicorn.error").removeHandler(keep)
    assert not thread.is_alive()
    assert not died, died
    assert [a.status_code for a in answers] == [503] * 4
    assert all(a.json() == {"error": STOPPING} for a in answers)
    assert not any("Traceback" in line or "Exception in ASGI" in line for line in lines), lines


def test_the_stop_layer_answers_only_what_has_no_answer_yet() -> None:
    import asyncio

    async def stuck(scope: dict, receive: object, send: object) -> None:
        await asyncio.Event().wait()

    async def half_sent(scope: dict, receive: object, send) -> None:  # noqa: ANN001
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.Event().wait()

    async def cut_short(app) -> list[dict]:  # noqa: ANN001
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        task = asyncio.create_task(AnswerWhenStopped(app)({"type": "http"}, None, send))
        await asyncio.sleep(0.01)
        task.cancel("Task cancelled, timeout graceful shutdown exceeded")
        await task  # ends normally: no CancelledError reaches the server
        return sent

    sent = asyncio.run(cut_short(stuck))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 503 and json.loads(sent[1]["body"]) == {"error": STOPPING}
    assert [m.get("status") for m in asyncio.run(cut_short(half_sent))] == [200]  # nothing sent after a start
