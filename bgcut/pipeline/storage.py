"""Where inputs and outputs live: local paths, or any fsspec URL (``s3://``, ``gs://``, ``file://``, ...).

Local paths keep their own fast path (``os``/``pathlib``, atomic rename). A URL goes through
fsspec, which picks the filesystem from the scheme; credentials and endpoints come from the
usual places (the provider's credential chain, ``AWS_ENDPOINT_URL``, ``FSSPEC_<PROTOCOL>_<OPTION>``
environment variables or fsspec's config files), so bgcut needs no options of its own.

Object stores have no rename, but they never show a half-uploaded object: an upload is one
request (or a multipart upload that appears only when completed), so writing the final name
directly is as safe as the local temporary-file-and-rename.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import StorageError, UsageError
from .writer import atomic_write

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

    def locate(self, rel: str) -> str:
        """The output's name as the user sees it (a path, or a full URL), for rows and messages."""
        if self.remote:
            return join_url(self.where, rel)  # as the user wrote the folder, like input URLs
        return str(Path(self.where) / rel)

    def exists(self, rel: str) -> bool:
        """Whether an output was written; for a URL, from one listing of the folder made on first use."""
        if not self.remote:
            return Path(self.where, rel).exists()
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
        fs.pipe_file(path, old + "".join(lines).encode("utf-8"))
    except Exception as e:  # noqa: BLE001 - the outputs are written; say clearly that the manifest is not
        raise StorageError(f"{url}: cannot write the manifest: {type(e).__name__}: {e}") from None
