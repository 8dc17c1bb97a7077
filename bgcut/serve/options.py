"""``ServeOptions``: where ``bgcut serve`` listens and the limits that keep it alive under any load."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Bounds, bounded, check_bounds

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # this machine's own names for itself


# What one request's image costs the server at its peak, per pixel: 14 bytes plain, 24 with
# --refine guided and --decontaminate, 29 with --erode/--dilate/--feather at 500 px (one 7000 x 7000
# upload, 320 and 1024 px models). Four such requests at once reached 32 (the allocator's arenas
# keep some slack): 40 keeps the server's resident memory over idle under --max-memory-mb
# (bench/serve_memory.py, bench/RESULTS.md).
SERVE_BYTES_PER_PIXEL = 40
_SECONDS = Bounds(0.0, 86400.0, low_open=True)  # a day at most


@dataclass(frozen=True)
class ServeOptions:
    """``bgcut serve``: where it listens, and the limits that keep it alive under any load."""

    host: str = "127.0.0.1"  # only this machine, unless told otherwise
    port: int = bounded(8000, Bounds(1, 65535))
    # Requests run together; None: the engine's batch size (8 on a GPU).
    max_batch: int | None = bounded(None, Bounds(1))
    max_wait_ms: float = bounded(5.0, Bounds(0.0, 1000.0))  # how long the first request of a batch waits for others
    max_queue: int = bounded(64, Bounds(1))  # requests waiting for the model; more are answered 503 with Retry-After
    max_upload_mb: float = bounded(32.0, Bounds(0.0, 1024.0, low_open=True))
    max_pixels: int = bounded(50_000_000, Bounds(1))
    token: str | None = None  # if set, API calls need "Authorization: Bearer TOKEN"
    # Host header values answered (DNS rebinding: a page elsewhere must not reach a loopback
    # server through a name of its own). None: the bound address and localhost's names, or any
    # host for a wildcard bind (0.0.0.0, ::), which the token guards; "*" in the list: any.
    allowed_hosts: tuple[str, ...] | None = None
    # Memory for the images in flight (decoding, the model's input, rendering): each admitted
    # request counts SERVE_BYTES_PER_PIXEL per pixel of its image, read from the header; one that
    # does not fit waits, in the bounded queue, until others finish.
    max_memory_mb: int = bounded(4096, Bounds(16))
    # One request's time from its upload's arrival: over it, the answer is 503 while it waits for
    # memory and 504 once it runs, and its remaining stages are dropped.
    max_seconds: float = bounded(60.0, _SECONDS)
    # On SIGTERM: how long requests in flight may take to finish before their remaining stages are
    # dropped; the server then exits once the stage running ends.
    grace_seconds: float = bounded(10.0, _SECONDS)

    def __post_init__(self) -> None:
        check_bounds(self)

    @property
    def memory_bytes(self) -> int:
        return self.max_memory_mb * 2**20

    def host_allowed(self, header: str) -> bool:
        """Whether a request's Host header (``name`` or ``name:port``, ``[v6]:port``) is answered."""
        name = header.strip().lower()
        if name.startswith("["):
            name = name[1 : name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        allowed = self.allowed_hosts
        if allowed is None:
            if self.host in ("0.0.0.0", "::", ""):
                return True
            allowed = (self.host, *LOOPBACK_NAMES)
        return "*" in allowed or name in {a.lower().strip("[]") for a in allowed}

    @property
    def exposed(self) -> bool:
        """Listening beyond this machine (not a loopback address)."""
        return self.host not in LOOPBACK_NAMES and not self.host.startswith("127.")
