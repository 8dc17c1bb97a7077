"""Where inputs and outputs live: local paths, or any fsspec URL (``s3://``, ``gs://``, ``file://``, ...).

Local paths keep their own fast path (``os``/``pathlib``, atomic rename). A URL goes through
fsspec, which picks the filesystem from the scheme; credentials and endpoints come from the
usual places (the provider's credential chain, ``AWS_ENDPOINT_URL``, ``FSSPEC_<PROTOCOL>_<OPTION>``
environment variables or fsspec's config files), so bgcut needs no options of its own.

Local files are written atomically (``atomic_write``): the bytes go to a hidden temporary name
in the destination folder (``temp_name``), renamed over the final name only when complete, so an
interrupt, a full disk or a crash never leaves a half-written file under a name that a rerun would
trust; ``sweep_temporaries`` removes what a killed run left. Object stores have no rename, but
they never show a half-uploaded object: an upload is one request (or a multipart upload that
appears only when completed), so writing the final name directly is as safe.

A leaf: it imports nothing of bgcut but its errors, so options, stages and subsystems all use it.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from .errors import StorageError, UsageError

# "s3://", "gs://", "file://", or a chained URL like "simplecache::s3://"; a Windows drive ("C:\") is not one.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*(::[A-Za-z][A-Za-z0-9+.\-]*)*://")


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and _URL.match(location) is not None


def url_to_fs(url: str) -> tuple[Any, str]:
    """(filesystem, path without the scheme) for a URL; a clear UsageError when its package is missing."""
    import fsspec  # a dependency of huggingface_hub: always installed, only imported when a URL is used

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        # fsspec's message names the package to install (e.g. "Install s3fs to access S3").
        raise UsageError(f"{url}: {e}") from None
    except ValueError as e:
        raise UsageError(f"{url}: {e}") from None


def join_url(url: str, rel: str) -> str:
    return url.rstrip("/") + "/" + rel.lstrip("/")


def read_bytes(url: str) -> bytes:
    """The whole object behind a URL. Failures are OSErrors, as for a local file, so the decoder
    words them once for both (``decode._open_file``)."""
    fs, path = url_to_fs(url)
    try:
        return fs.cat_file(path)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. botocore's NoCredentialsError is not an OSError
        raise OSError(f"{type(e).__name__}: {e}") from e


def list_url(url: str) -> tuple[str, list[str]] | None:
    """A URL's kind and contents: ``("file", [])``, ``("dir", [relative names...])`` or None if absent.

    One recursive listing (a single paged LIST on object stores), never one request per file.
    Hidden names (a part starting with ".") are left out, as in local folders.
    """
    fs, path = url_to_fs(url)
    if fs.isfile(path):
        return "file", []
    if not fs.isdir(path):
        return None
    root = path.rstrip("/")
    names = []
    for found in fs.find(root, withdirs=False, detail=False):
        rel = found[len(root) :].lstrip("/")
        if rel and not any(part.startswith(".") for part in rel.split("/")):
            names.append(rel)
    return "dir", sorted(names)


def as_written_inside(folder: str) -> str:
    """``folder`` (as ``str(Path(...))`` writes it) as the start of a path inside it: ``.`` is
    left out, and the root's slash is not doubled. With ``is_plain_name``, paths are joined as
    ``Path`` joins them, without a ``Path`` each: a million of those took seconds."""
    if folder == ".":
        return ""
    return folder if folder.endswith("/") else folder + "/"


def is_plain_name(rel: str) -> bool:
    """Whether ``rel`` is a relative path that ``Path`` would write back as it is."""
    return not (
        rel in ("", ".") or rel.startswith(("/", "./")) or rel.endswith(("/", "/.")) or "//" in rel or "/./" in rel
    )


def same_place(a: str, b: str) -> bool:
    """Whether two URLs name the same folder, as written (a trailing slash aside)."""
    return is_url(a) and is_url(b) and a.rstrip("/") == b.rstrip("/")


def is_under(child: str, folder: str) -> bool:
    """Whether URL ``child`` lies inside URL ``folder``, as written: a string test, no request per file."""
    return is_url(child) and is_url(folder) and child.startswith(folder.rstrip("/") + "/")


class Destination:
    """An output folder: a local path or a URL. Names inside it are "/"-separated relative paths."""

    def __init__(self, where: str | Path) -> None:
        self.where = str(where)
        self.remote = is_url(self.where)
        if self.remote:
            self.fs, self.root = url_to_fs(self.where)
            self.root = self.root.rstrip("/")
        self._listed: set[str] | None = None
        self._inside = as_written_inside(str(Path(self.where)))

    def locate(self, rel: str) -> str:
        """The output's name as the user sees it (a path, or a full URL), for rows and messages."""
        if self.remote:
            return join_url(self.where, rel)  # as the user wrote the folder, like input URLs
        return self._inside + rel if is_plain_name(rel) else str(Path(self.where) / rel)

    def exists(self, rel: str) -> bool:
        """Whether an output was written; for a URL, from one listing of the folder made on first use."""
        if not self.remote:
            return os.path.exists(self.locate(rel))
        if self._listed is None:
            try:
                found = list_url(self.where)  # None (nothing written yet) or ("dir", names)
                self._listed = set(found[1]) if found is not None else set()
            except UsageError:
                raise
            except Exception as e:  # noqa: BLE001 - credentials, permissions, network: one clear line
                raise StorageError(f"{self.where}: cannot list the output folder: {type(e).__name__}: {e}") from None
        return rel in self._listed

    def write(self, rel: str, data: bytes) -> None:
        if not self.remote:
            atomic_write(Path(self.where) / rel, data)
            return
        self.fs.pipe_file(f"{self.root}/{rel}", data)

    def read(self, rel: str) -> bytes | None:
        """A small file inside the folder (the run settings), or None if there is none."""
        if not self.remote:
            try:
                return Path(self.where, rel).read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                return None
        target = f"{self.root}/{rel}"
        return self.fs.cat_file(target) if self.fs.exists(target) else None

    def remove_if_exists(self, rel: str) -> bool:
        """Delete one output (a stale extra crop); says whether there was one. Never uses the listing cache."""
        if not self.remote:
            path = Path(self.where) / rel
            if not path.exists():
                return False
            path.unlink()
            return True
        target = f"{self.root}/{rel}"
        if not self.fs.exists(target):
            return False
        self.fs.rm_file(target)
        return True


def append_lines(url: str, lines: list[str]) -> None:
    """Append text lines to a file at a URL. Object stores cannot append: read what is there, write it back whole."""
    fs, path = url_to_fs(url)
    try:
        old = fs.cat_file(path) if fs.exists(path) else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"  # a line cut short would swallow the first new one
        fs.pipe_file(path, old + "".join(lines).encode("utf-8"))
    except Exception as e:  # noqa: BLE001 - the outputs are written; say clearly that the manifest is not
        raise StorageError(f"{url}: cannot write the manifest: {type(e).__name__}: {e}") from None


TMP_SUFFIX = ".bgcut-tmp"
NAME_MAX = 255  # bytes in one file name, on every common Linux and macOS file system


def temp_name(final: str) -> str:
    """The hidden name a file is written under before it is renamed to ``final``.

    ``.NAME.PID.RANDOM.bgcut-tmp``: the process id lets a later run tell a dead run's leftover
    from a live concurrent run's file (``sweep_temporaries``). A long ``final`` is shortened
    so that the temporary name, 20-odd bytes longer, still fits the file system's limit; a
    character cut in half by that is dropped.
    """
    tail = f".{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
    head = os.fsencode(final)[: NAME_MAX - 1 - len(tail)].decode("utf-8", "ignore")
    return f".{head}{tail}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / temp_name(path.name)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# The whole of ``temp_name``'s pattern: a hidden name, the writer's PID, 8 hex digits, the suffix.
# Anything else that merely ends in the suffix (a user's ``notes.bgcut-tmp``) is not bgcut's.
_TEMP_PID = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}" + re.escape(TMP_SUFFIX) + "$", re.S)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def sweep_temporaries(folder: Path, older_than: float) -> list[Path]:
    """Remove the temporary files a killed run left under ``folder``; returns what was removed.

    Only names of ``temp_name``'s whole pattern, last written before ``older_than`` (this run's
    start), whose writer is not a live process on this machine: a concurrent run's file in the
    middle of being written is never touched, and neither is a file of the user's that merely ends
    in the suffix.
    """
    removed: list[Path] = []
    for root, dirs, files in os.walk(folder):
        # A video's frame sequence is written into a temporary folder (video/encode.FrameFolder).
        for name in [*files, *dirs]:
            if not name.endswith(TMP_SUFFIX):
                continue
            path = Path(root, name)
            m = _TEMP_PID.match(name)
            if m is None:
                continue
            try:
                if path.stat().st_mtime >= older_than or _pid_alive(int(m.group(1))):
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:
                continue  # gone already, or not ours to remove: neither stops the run
            removed.append(path)
        dirs[:] = [d for d in dirs if not d.endswith(TMP_SUFFIX)]
    return removed
