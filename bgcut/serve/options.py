"""``ServeOptions``: where ``bgcut serve`` listens and the limits that keep it alive under any load."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # this machine's own names for itself


# What one request's image costs the server at its peak, per pixel: 14 bytes plain, 24 with
# --refine guided and --decontaminate, 29 with --erode/--dilate/--feather at 500 px (one 7000 x 7000
# upload, 320 and 1024 px models). Four such requests at once reached 32 (the allocator's arenas
# keep some slack): 40 keeps the server's resident memory over idle under --max-memory-mb
# (bench/serve_memory.py, bench/RESULTS.md).
SERVE_BYTES_PER_PIXEL = 40


@dataclass(frozen=True)
class ServeOptions:
    """``bgcut serve``: where it listens, and the limits that keep it alive under any load."""

    host: str = "127.0.0.1"  # only this machine, unless told otherwise
    port: int = 8000
    max_batch: int | None = None  # requests run together; None: the engine's batch size (8 on a GPU)
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others
    max_queue: int = 64  # requests waiting for the model; more are answered 503 with Retry-After
    max_upload_mb: float = 32.0
    max_pixels: int = 50_000_000
    token: str | None = None  # if set, API calls need "Authorization: Bearer TOKEN"
    # Host header values answered (DNS rebinding: a page elsewhere must not reach a loopback
    # server through a name of its own). None: the bound address and localhost's names, or any
    # host for a wildcard bind (0.0.0.0, ::), which the token guards; "*" in the list: any.
    allowed_hosts: tuple[str, ...] | None = None
    # Memory for the images in flight (decoding, the model's input, rendering): each admitted
    # request counts SERVE_BYTES_PER_PIXEL per pixel of its image, read from the header; one that
    # does not fit waits, in the bounded queue, until others finish.
    max_memory_mb: int = 4096
    # One request's time from its upload's arrival: over it, the answer is 503 while it waits for
    # memory and 504 once it runs, and its remaining stages are dropped.
    max_seconds: float = 60.0
    # On SIGTERM: how long requests in flight may take to finish before their remaining stages are
    # dropped; the server then exits once the stage running ends.
    grace_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise UsageError(f"--port {self.port}: expected 1 to 65535")
        for flag, value in (
            ("--max-batch", self.max_batch),
            ("--max-queue", self.max_queue),
            ("--max-pixels", self.max_pixels),
        ):
            if value is not None and value < 1:
                raise UsageError(f"{flag} {value}: must be at least 1")
        if not 0 <= self.max_wait_ms <= 1000:
            raise UsageError(f"--max-wait-ms {self.max_wait_ms}: expected 0 to 1000")
        if not 0 < self.max_upload_mb <= 1024:
            raise UsageError(f"--max-upload-mb {self.max_upload_mb}: expected more than 0, at most 1024")
        if self.max_memory_mb < 16:
            raise UsageError(f"--max-memory-mb {self.max_memory_mb}: must be at least 16")
        for flag, value in (("--max-seconds", self.max_seconds), ("--grace-seconds", self.grace_seconds)):
            if not 0 < value <= 86400:  # also refuses nan
                raise UsageError(f"{flag} {value}: expected more than 0, at most 86400")

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
