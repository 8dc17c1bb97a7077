"""Where weights come from. The only module that imports huggingface_hub.

Resolution order for a registered model: weights shipped inside the package, then weights
converted by ``bgcut models import`` (``$BGCUT_HOME/models/<name>``, default
``~/.cache/bgcut``), then the huggingface_hub cache (no network), then ``hf_hub_download`` (which honours
``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_OFFLINE``). Whatever the source, the sha256 from
the registry is checked before the file is used. Hub errors are translated here, once,
into bgcut errors whose message says what to do.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from ..config import PretrainedCfg
from ..errors import WeightsUnavailableError
from ._weights import verify_sha256

EMBEDDED_DIR = "weights"


def embedded_path(cfg: PretrainedCfg) -> Path | None:
    """Path of the weights shipped in ``bgcut/models/weights/``, when this model has them."""
    if not cfg.embedded:
        return None
    path = Path(str(resources.files("bgcut.models") / EMBEDDED_DIR / cfg.embedded))
    return path if path.is_file() else None


def imported_dir(name: str) -> Path:
    """Where ``bgcut models import`` puts a registered model's converted weights."""
    home = Path(os.environ.get("BGCUT_HOME", Path.home() / ".cache" / "bgcut"))
    return home / "models" / name


def imported_path(cfg: PretrainedCfg) -> Path | None:
    path = imported_dir(cfg.name) / cfg.hf_filename
    return path if path.is_file() else None


def local_weights(cfg: PretrainedCfg) -> tuple[str, Path] | None:
    """The first local copy in resolution order, as (where, path); never touches the network.

    ``where`` is ``"embedded"``, ``"imported"`` or ``"cached"`` (what `bgcut models list` shows).
    """
    for where, find in (("embedded", embedded_path), ("imported", imported_path), ("cached", cached_path)):
        path = find(cfg)
        if path is not None:
            return where, path
    return None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _download(cfg: PretrainedCfg, *, local_only: bool, force: bool = False) -> Path:
    from huggingface_hub import hf_hub_download

    from .. import __version__

    return Path(
        hf_hub_download(
            cfg.hf_repo_id,
            cfg.hf_filename,
            revision=cfg.hf_revision,
            local_files_only=local_only,
            force_download=force,
            library_name="bgcut",
            library_version=__version__,
        )
    )


def cached_path(cfg: PretrainedCfg) -> Path | None:
    """The weights if they are in the huggingface_hub cache; never touches the network."""
    if not cfg.hf_repo_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(cfg.hf_repo_id, cfg.hf_filename, revision=cfg.hf_revision)
    return Path(found) if isinstance(found, str) else None


@dataclass(frozen=True)
class WeightsFile:
    """A weights file found and checked: its sha256, and whether that matched a known one."""

    path: Path
    sha256: str
    checked: bool


def weights_file(
    cfg: PretrainedCfg, given: Path | None = None, recorded: str | None = None, *, force_download: bool = False
) -> WeightsFile:
    """The file ``create_model`` loads, checked once: ``given`` (a ``--weights`` file) against the
    sha256 its ``config.json`` records, if any; else the registered model's (``resolve_weights``)."""
    if given is None:
        path, sha = resolve_weights(cfg, force_download=force_download)
        return WeightsFile(path, sha, cfg.sha256 is not None)
    sha = verify_sha256(given, recorded, cfg.name, "its config.json records another sha256: copy or export it again")
    return WeightsFile(given, sha, recorded is not None)


def resolve_weights(cfg: PretrainedCfg, *, force_download: bool = False) -> tuple[Path, str]:
    """Find (or fetch) the weights of a registered model; returns (path, sha256).

    Raises:
        WeightsUnavailableError: not shipped, not cached, and offline or the Hub is unreachable.
        ChecksumError: the file found does not have the registry's sha256.
    """
    local = None if force_download else local_weights(cfg)
    path = local[1] if local is not None else _fetch(cfg, force_download)
    return path, verify_sha256(path, cfg.sha256, cfg.name)


def _fetch(cfg: PretrainedCfg, force_download: bool) -> Path:
    """Download the weights of a registered model that has no local copy (or ``--force``)."""
    if not cfg.hf_repo_id:
        raise WeightsUnavailableError(
            f"model {cfg.name!r} has no weights shipped with bgcut and no Hub repo; pass --weights PATH"
        )
    if not cfg.sha256:
        # Nothing has been published under this entry yet, so there is no checksum to trust a download by.
        raise WeightsUnavailableError(
            f"model {cfg.name!r} has no published weights yet: convert a public checkpoint with "
            f"`bgcut models import CHECKPOINT --arch {cfg.arch} --name {cfg.name}`, or pass --weights PATH"
        )
    from huggingface_hub import errors as hf_errors

    where = f"{cfg.hf_repo_id}@{cfg.hf_revision or 'main'}/{cfg.hf_filename}"
    if _offline():
        raise WeightsUnavailableError(f"model {cfg.name!r} is not cached and HF_HUB_OFFLINE is set; {_remedies(cfg)}")
    if (reason := _unreachable_reason()) is not None:
        raise _unreachable(cfg, where, reason)
    try:
        with _quiet_hub():
            path = _download(cfg, local_only=False, force=force_download)
    except hf_errors.RepositoryNotFoundError:
        raise WeightsUnavailableError(
            f"Hub repo {cfg.hf_repo_id!r} for model {cfg.name!r} not found (or private: set HF_TOKEN)"
        ) from None
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled) as e:
        # Raised when the Hub could not be reached at all (LocalEntryNotFoundError is also an
        # EntryNotFoundError, so it must be caught before the "not found" case below).
        raise _unreachable(cfg, where, _first_line(e)) from None
    except (hf_errors.RevisionNotFoundError, hf_errors.EntryNotFoundError):
        raise WeightsUnavailableError(f"{where} not found on the Hub for model {cfg.name!r}") from None
    except (ConnectionError, TimeoutError, OSError) as e:
        raise _unreachable(cfg, where, _first_line(e)) from None
    return path


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _unreachable_reason(timeout: float = 2.0) -> str | None:
    """Why the Hub cannot be reached at all, found in at most ``timeout`` seconds; None if it can.

    Without this, huggingface_hub retries a dead network for about 23 seconds and logs each
    retry. Behind a proxy a direct connection proves nothing, so then the download decides.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None
    url = urlsplit(_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """huggingface_hub's own retry warnings and progress bars stay off bgcut's stderr; its errors
    still arrive, as exceptions, and are worded once below."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hub_logger.setLevel(level)


def _first_line(e: BaseException) -> str:
    """An exception's first line, shortened at a word (a cut-off "try aga" helps nobody)."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) <= 160 else text[:160].rsplit(" ", 1)[0] + " ..."


def _remedies(cfg: PretrainedCfg) -> str:
    return (
        f"on a machine with network run `bgcut models fetch {cfg.name}` (same HF_HOME), or convert a checkpoint "
        f"you have with `bgcut models import CHECKPOINT --arch {cfg.arch} --name {cfg.name}`, or pass --weights PATH"
    )


def _unreachable(cfg: PretrainedCfg, where: str, reason: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"cannot download {where} for model {cfg.name!r} from {_endpoint()} ({reason}); {_remedies(cfg)}"
    )
