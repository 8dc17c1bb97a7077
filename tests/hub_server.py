"""A local stand-in for the Hugging Face Hub's file endpoint, for huggingface_hub's real download path.

Serves ``GET/HEAD /{org}/{name}/resolve/{revision}/{filename}`` with the headers
``hf_hub_download`` reads (X-Repo-Commit, ETag, Content-Length). Point ``HF_ENDPOINT`` at
``server.url``. Nothing else of the Hub is emulated.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _lookup(self) -> bytes | None:
                hub.requests.append(f"{self.command} {self.path}")
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                return hub.files.get((repo, revision, filename))

            def _headers(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", hashlib.sha1(b"bgcut-test-commit").hexdigest())
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()

            def _missing(self) -> None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802
                data = self._lookup()
                self._headers(data) if data is not None else self._missing()

            def do_GET(self) -> None:  # noqa: N802
                data = self._lookup()
                if data is None:
                    self._missing()
                    return
                self._headers(data)
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
