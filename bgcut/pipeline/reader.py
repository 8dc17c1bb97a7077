"""Reading inputs: files, folders (walked recursively) and ``-`` (paths on stdin) -> sources.

Each source gets a deterministic output key: its path relative to the folder it was found
in, without extension. The key decides the output name, so reruns find earlier outputs
(resume) and two runs over the same inputs name things the same way.

Naming rules (also in the README):
- a folder argument: keys are paths relative to that folder (``photos/a/b.jpg`` -> ``a/b``);
- a file argument or a stdin line: a relative path without ``..`` keeps its folders
  (``./a/b.jpg`` -> ``a/b``, so ``find . | bgcut -`` reproduces the tree); an absolute path or
  one that climbs out with ``..`` keeps only its file name;
- a URL (``s3://bucket/photos``, any fsspec scheme) follows the same rules: a folder URL gives
  keys relative to it, a file URL keeps only its file name;
- when several inputs would get the same key (``a.jpg`` and ``a.png``; compared
  case-insensitively, for case-insensitive file systems), each of them keeps its full file
  name as its key (``a.jpg`` -> ``a.jpg.png``, ``a.png`` -> ``a.png.png``);
- inputs whose keys are the same even so (``d1/x.jpg`` and ``d2/x.jpg`` given as two folders):
  the first keeps the key, and each other fails with a line that names both.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from .. import codecs
from ..errors import UsageError
from ..storage import as_written_inside, is_plain_name, is_under, is_url, join_url, list_url

IMAGE_EXTENSIONS = codecs.IMAGE_EXTENSIONS  # what this installation's Pillow (and plugins) can read
# Folders are walked for both; a video becomes a clip of frames (bgcut/video), not one image.
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"})
INPUT_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS

# The reason a second name of one file is passed over begins so (the run groups them by it).
SAME_FILE = "the same file as"


def extension(path: str) -> str:
    """A path's or URL's extension, lower-cased (what ``PurePosixPath(path).suffix.lower()`` is)."""
    name = path.rstrip("/").rpartition("/")[2]
    if name in ("", "."):  # a path that ends in "/." or is all slashes: pathlib tidies it first
        return PurePosixPath(path).suffix.lower()
    return _suffix(name).lower()


def is_video(path: str) -> bool:
    return extension(path) in VIDEO_EXTENSIONS


def is_animated_gif(path: str) -> bool:
    """A local GIF of more than one frame: it is cut out as a video (a still GIF stays an image).
    Anything unreadable is left to the image decoder, which says why, by name."""
    if extension(path) != ".gif" or is_url(path):
        return False
    from PIL import Image

    try:
        with Image.open(path) as im:
            return bool(getattr(im, "is_animated", False))
    except Exception:  # noqa: BLE001 - a damaged GIF: the image decoder reports it as such
        return False


@dataclass(frozen=True)
class Source:
    path: str  # the file to read: a local path or an fsspec URL
    key: str  # output name without extension, "/"-separated, relative to the output folder
    display: str  # the path as the user wrote it (or as found under their folder), for messages


class _Found(NamedTuple):
    """A file found for an input, before its output key is decided."""

    path: str  # the file to read: a local path or an fsspec URL
    key: str  # its key with the extension
    display: str
    real: str | None = None  # its real path, where the walk knew it without a lookup
    link: bool | None = None  # whether it is a symlink, where the walk knew it


@dataclass
class Listing:
    sources: list[Source]
    errors: list[tuple[str, str]]  # (input as given, reason): inputs that cannot even be listed
    warnings: list[str]
    # Files found in folders that are not read, with the reason (a README, a .heic without its plugin):
    # counted in the summary and listed in the manifest, never dropped without a word.
    passed_over: list[tuple[str, str]] = field(default_factory=list)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(root: Path, skip: Path | None, listing: Listing) -> Iterable[_Found]:
    """Each file under ``root`` with its key (with the extension); follows symlinks but never loops.

    Written with strings and each folder's real path, not a ``Path`` per file: 200,000 files
    cost 10.7 s of pathlib before the first one was decoded (bench/RESULTS.md, "Large trees")."""
    seen_dirs: set[tuple[int, int]] = set()
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        folder, rel = stack.pop()
        try:
            st = folder.stat()
            real = os.path.realpath(folder)
            if skip is not None and real == str(skip):
                continue  # the output folder inside the input folder: never read our own outputs
        except OSError as e:
            listing.errors.append((str(folder), f"cannot read folder: {e.strerror}"))
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            listing.warnings.append(f"{folder}: folder already visited (symlink loop?), not followed again")
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            listing.errors.append((str(folder), f"cannot list folder: {e.strerror}"))
            continue
        base = as_written_inside(str(folder))
        subdirs = []
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            path = base + entry.name  # what ``str(folder / entry.name)`` is, without a Path
            key = f"{rel}/{entry.name}" if rel else entry.name
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                subdirs.append((folder / entry.name, key))
            elif (suffix := _suffix(entry.name)).lower() in INPUT_EXTENSIONS:
                try:
                    link: bool | None = entry.is_symlink()  # from the listing on Linux: no system call
                    # ``Path.exists``, not ``os.path.exists``: a link that cannot be looked
                    # through (permission denied) is not called broken; the decoder says why.
                    dangling = link and not Path(path).exists()
                except OSError:  # a folder we may list but not enter: the decoder says why, per file
                    link, dangling = None, False  # unknown: looked up again when duplicates are found
                if dangling:
                    listing.errors.append((path, "broken symlink"))
                    continue
                # A file that is no link is its folder's real path and its name: no lookup per file.
                yield _Found(path, key, path, os.path.join(real, entry.name) if link is False else None, link)
            else:
                listing.passed_over.append((path, codecs.why_unreadable(suffix)))
        stack.extend(reversed(subdirs))


def _suffix(name: str) -> str:
    """A file name's extension, as ``PurePath.suffix`` gives it (``.jpg``; none for ``.bashrc`` or ``a.``)."""
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _key_for_file(arg: str) -> str:
    p = PurePosixPath(arg.replace(os.sep, "/"))
    if p.is_absolute() or ".." in p.parts:
        return p.name
    return str(p)


def _strip_ext(name: str) -> str:
    if not is_plain_name(name):
        p = PurePosixPath(name)  # a name that pathlib would also tidy up
        return str(p.with_suffix("")) if p.suffix else name
    suffix = _suffix(name.rpartition("/")[2])
    return name[: -len(suffix)] if suffix else name


STDIN_KEY = "stdin"  # the output name of an image read from stdin (OUT/stdin.png)


def list_sources(
    inputs: list[str],
    output_dir: str | Path | None = None,
    stdin_lines: Iterable[str] | None = None,
    stdin_image: str | None = None,
) -> Listing:
    """Expand the command line's inputs (paths or URLs) into sources with unique output keys.

    ``stdin_lines`` supplies the paths for ``-``; or ``stdin_image``, a file holding the image
    bytes that came on stdin, makes ``-`` that one image. Files under ``output_dir`` (a path or a
    URL) are never inputs. The same file reached twice (a repeated argument, a symlink) is read once.
    """
    listing = Listing([], [], [])
    if stdin_image is not None:
        listing.sources.append(Source(stdin_image, STDIN_KEY, "-"))
        inputs = [arg for arg in inputs if arg != "-"]
    skip: Path | str | None = None
    if output_dir is not None:
        skip = str(output_dir) if is_url(str(output_dir)) else Path(output_dir).resolve()
    found: list[_Found] = []
    for arg in inputs:
        if arg == "-":
            for line in stdin_lines or ():
                line = line.rstrip("\r\n")
                if line.strip():
                    found.extend(_expand(line, skip, listing))
        else:
            found.extend(_expand(arg, skip, listing))
    listing.sources = listing.sources + _assign_keys(_one_per_file(found, listing), listing)
    return listing


def _one_per_file(found: list[_Found], listing: Listing) -> list[_Found]:
    """The same file reached twice (a repeated argument, a symlink) is read once, in the place it
    was first found, under its own name rather than a link's; each other way of reaching it is a
    passed-over row that names the file it duplicates."""
    ways: dict[str, list[_Found]] = {}  # a file's real path -> each way it was reached
    for entry in found:
        real = entry.path if is_url(entry.path) else entry.real or _real(entry.path)
        ways.setdefault(real, []).append(entry)
    unique: list[_Found] = []
    for group in ways.values():  # in the order the files were first reached
        # Chosen once the whole walk is known, so that every passed-over row names the name read.
        kept = next((e for e in group if not (_is_link(e.path) if e.link is None else e.link)), group[0])
        unique.append(kept)
        for entry in group:
            if entry is not kept and entry.display != kept.display:
                listing.passed_over.append(
                    (entry.display, f"{SAME_FILE} {kept.display}, which is read under that name")
                )
    return unique


def _is_link(path: str) -> bool:
    if is_url(path):
        return False
    try:
        return Path(path).is_symlink()
    except OSError:
        return False


def _real(path: str) -> str:
    """The file's real path. ``Path.resolve`` raised RuntimeError, past every handler, for a
    symlink loop given as an input; ``realpath`` returns it as it is, and the decoder says why."""
    try:
        return os.path.realpath(path)
    except OSError:  # a folder on the way that cannot be entered: the path as written identifies it
        return os.path.abspath(path)


def _expand(arg: str, skip: Path | str | None, listing: Listing) -> list[_Found]:
    if is_url(arg):
        return _expand_url(arg, skip if isinstance(skip, str) else None, listing)
    path = Path(arg)
    try:
        is_dir = path.is_dir()
        missing = not is_dir and not path.exists() and not path.is_symlink()
    except OSError:  # cannot even look: let the decoder say why, once, for this file
        is_dir = missing = False
    if is_dir:
        local_skip = skip if isinstance(skip, Path) else None
        return list(_walk(path, local_skip, listing))
    if missing:
        listing.errors.append((arg, "no such file or folder"))
        return []
    return [_Found(arg, _key_for_file(arg), arg)]


def _expand_url(arg: str, skip: str | None, listing: Listing) -> list[_Found]:
    try:
        found = list_url(arg)
    except UsageError:
        raise  # a missing filesystem package: the whole run cannot work
    except OSError as e:
        listing.errors.append((arg, f"cannot list: {e.strerror or e}"))
        return []
    except Exception as e:  # noqa: BLE001 - e.g. missing credentials: this input fails, the others still run
        listing.errors.append((arg, f"cannot list: {type(e).__name__}: {e}"))
        return []
    if found is None:
        listing.errors.append((arg, "no such file or folder"))
        return []
    kind, names = found
    if kind == "file":
        return [_Found(arg, PurePosixPath(arg.split("://", 1)[1]).name, arg)]
    out = []
    for rel in names:
        url = join_url(arg, rel)
        if extension(rel) in IMAGE_EXTENSIONS and not (skip and is_under(url, skip)):
            out.append(_Found(url, rel, url))
    return out


def _assign_keys(found: list[_Found], listing: Listing) -> list[Source]:
    """Each file's output key (the naming rules above). Files whose names are the same even with
    their extensions (``d1/x.jpg`` and ``d2/x.jpg`` given as two folders or two absolute paths)
    would write one output over the other: the first found keeps the name, each other is a
    failed input that says so."""
    stems = [_strip_ext(entry.key) for entry in found]
    counts: dict[str, int] = defaultdict(int)
    for stem in stems:
        counts[stem.lower()] += 1
    sources: list[Source] = []
    taken: dict[str, Source] = {}  # a final key, compared case-insensitively -> the source that has it
    for (path, key, display, _, _), stem in zip(found, stems, strict=True):
        source = Source(path, key if counts[stem.lower()] > 1 else stem, display)
        if (first := taken.setdefault(source.key.lower(), source)) is not source:
            listing.errors.append(
                (
                    display,
                    f"its output would take the name of {first.display}'s ({source.key}); "
                    "rename one of them, or cut them out into separate -o folders",
                )
            )
            continue
        sources.append(source)
    return sorted(sources, key=lambda s: s.key)


def shard_of(key: str, count: int) -> int:
    """Which of ``count`` shards owns an output key.

    A hash of the key, not a position in the listing: jobs that list the inputs in another
    order, or on another machine, still agree, and every key lands in exactly one shard.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count
