"""The checks before any work: where the outputs may go, and whether a folder may be resumed.

bgcut never writes over one of its inputs, and resumes a folder by output name only when its
outputs were made with the same settings (``.bgcut-settings.json``, written once work starts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..codecs import AVIF_EXTENSIONS, BASE_EXTENSIONS, HEIF_EXTENSIONS
from ..config import FILE_EXTENSIONS, OutputOptions, PostOptions, RunOptions, VideoOptions, settings_of
from ..errors import UsageError
from ..models import DEFAULT_MODEL, resolve_cfg, sha256_file
from ..storage import is_url, same_place
from .reader import VIDEO_EXTENSIONS, Listing, Source
from .target import STDOUT, OutputTarget, is_file_target

# -o NAME.EXT, where EXT is a picture's or a clip's and no such folder exists, asks for one file
# that bgcut cannot write: it must not quietly become a folder named cut.tif.
_PICTURE_EXTENSIONS = BASE_EXTENSIONS | AVIF_EXTENSIONS | HEIF_EXTENSIONS
_ONE_FILE = ", ".join(sorted(FILE_EXTENSIONS))


def check_output(output: str) -> None:
    if output == STDOUT or is_url(output) or is_file_target(output):
        return
    path = Path(output)
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"-o {output} is a file; -o names the folder the outputs are written into "
            f"(or one output file ending in {_ONE_FILE})"
        )
    if path.exists() or output.endswith(("/", os.sep)):  # cut.tif/ says it is a folder
        return
    ext = path.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        raise UsageError(f"-o {output}: videos are written into a folder (as NAME.webm ...); give a folder")
    if ext in _PICTURE_EXTENSIONS:
        raise UsageError(
            f"-o {output}: bgcut writes no {ext} files; end one output file in {_ONE_FILE}, or give a folder"
        )


def check_output_count(target: OutputTarget, output: str, listing: Listing) -> None:
    """One output file, or stdout, takes exactly one input."""
    found = len(listing.sources) + len(listing.errors)
    if target.to_stdout and found != 1:
        raise UsageError(f"-o - writes one image to stdout, but the inputs name {len(listing.sources)} images")
    if target.to_file is not None and found != 1:
        raise UsageError(f"-o {output} names one output file, but the inputs name {found} images; give a folder")


def check_output_not_input(inputs: list[str], output: str) -> None:
    for arg in inputs:
        if is_url(arg) or is_url(output):
            same = same_place(arg, output)
        else:
            same = arg != STDOUT and Path(arg).is_dir() and Path(arg).resolve() == Path(output).resolve()
        if same:
            raise UsageError(f"the output folder {output} is the input folder {arg}; choose another -o")


def check_no_output_is_an_input(
    target: OutputTarget, sources: list[Source], clips: set[str], video: VideoOptions
) -> None:
    """bgcut never writes over one of its inputs (`bgcut photo.jpg -o . --format jpg`,
    `bgcut clip.webm -o .`): each source's output as its kind names it, a photo's or a video's."""
    folders: dict[str, str] = {}
    inputs = {_same_key(s.path, folders): s for s in sources}
    for source in sources:
        if source.path in clips and target.dest is not None:
            where: str | None = target.dest.locate(video.spec.output_name(source.key))
        else:
            where = target.output_file(source)
        if where is not None and (clash := inputs.get(_same_key(where, folders))) is not None:
            raise UsageError(
                f"the output for {source.display} would be {where}, "
                f"which is the input {clash.display}; choose another -o or --format"
            )


def check_manifest(manifest: str | None, sources: list[Source]) -> None:
    """The manifest is appended to: it must be neither a picture nor a video (an input, or an
    output that a rename would replace, taking the manifest's lines with it), nor any input, nor
    a folder's settings file (damaged by the lines, it would no longer guard a resume)."""
    if not manifest:
        return
    name = manifest.rstrip("/").rpartition("/")[2]
    if name == SETTINGS_FILE:
        raise UsageError(f"--manifest {manifest} is bgcut's settings file of that folder; name it e.g. run.jsonl")
    ext = name[name.rfind(".") :].lower() if "." in name else ""
    if ext in _PICTURE_EXTENSIONS or ext in VIDEO_EXTENSIONS:
        raise UsageError(f"--manifest {manifest}: a manifest is JSON lines, not a {ext} file; name it e.g. run.jsonl")
    if is_url(manifest):
        return
    folders: dict[str, str] = {}
    named = {_same_key(manifest, folders), _same_key(os.path.realpath(manifest), folders)}
    for source in sources:
        if _same_key(source.path, folders) in named:
            raise UsageError(f"--manifest {manifest} is the input {source.display}; give the manifest another name")


def _same_key(path: str, folders: dict[str, str]) -> str:
    """A name that two paths to one file share: the folder's real path (links to folders followed,
    once per folder, not once per file) joined with the file's own name. A link to a file is left
    as it is: an output is renamed over its own name, which replaces such a link, not its target."""
    if is_url(path):
        return path
    # The folder as written is looked up, so most paths cost no ``abspath`` of their own; a name
    # that tidying would change (``..``, ``.``, a trailing slash) takes the long way.
    i = path.rfind("/")
    folder, name = (path[:i] or "/", path[i + 1 :]) if i >= 0 else ("", path)
    if name in ("", ".", ".."):
        folder, name = os.path.split(os.path.abspath(path))
    if folder not in folders:
        folders[folder] = os.path.realpath(os.path.abspath(folder))
    return os.path.join(folders[folder], name)


def check_video_output(target: OutputTarget, output: str, out: OutputOptions) -> None:
    """Where a video can go: a local folder (its output is renamed into place when complete)."""
    if target.to_stdout or target.to_file is not None:
        raise UsageError(f"-o {output}: a video's output is a video file or a folder of frames; give a folder")
    if out.per_object:
        raise UsageError("--per-object writes several files per image; it cannot apply to a video's frames")


SETTINGS_FILE = ".bgcut-settings.json"  # hidden: never read back as an input
MODEL_KEY = "--model/--weights"  # a registry name, or sha256:HEX of a --weights file
# Options added after the settings file was: the value that reproduces what came before them.
SETTINGS_BEFORE_OPTION: dict[str, object] = {
    "--refine": "none",
    "--refine-eps": PostOptions.refine_eps,  # no refinement: any value made the same outputs
    "--decontaminate": False,
    "--video-format": VideoOptions.format,
    "--steady": VideoOptions.steady,
    "--video-quality": VideoOptions.quality,
}


def _settings(run: RunOptions, out: OutputOptions, post: PostOptions, video: VideoOptions) -> dict[str, object]:
    """What decides an output's content, as each options object declares it (``config.setting``):
    a folder holds outputs of one kind (see ``check_settings``)."""
    model = _weights_identity(run.weights) if run.weights else resolve_cfg(run.model).name
    return {**settings_of(out), MODEL_KEY: model, **settings_of(run), **settings_of(post), **settings_of(video)}


def _weights_identity(weights: str) -> str:
    """A ``--weights`` file by its content: ``-w runs/x`` and ``-w runs/x/model.safetensors``, or a
    copy elsewhere, are the same weights. A file that cannot be read is named by its path (loading
    it will say what is wrong)."""
    path = Path(weights)
    path = path / "model.safetensors" if path.is_dir() else path
    try:
        return f"sha256:{sha256_file(path)}"
    except OSError:
        return str(path.resolve())


def _same_model(before: object, now: str, run: RunOptions) -> bool:
    """A folder from before weights were named by content recorded the resolved path."""
    if before == now:
        return True
    old_path = bool(run.weights) and isinstance(before, str) and Path(before).is_absolute()
    return old_path and _weights_identity(str(before)) == now


def check_settings(target: OutputTarget, output: str, video: VideoOptions) -> bytes | None:
    """Resume by name is only right when the old outputs were made the same way.

    The folder keeps the settings of the run that filled it (``.bgcut-settings.json``). A run
    with other settings is refused in one line, unless ``--overwrite`` redoes every file; a
    folder from before this file existed is taken as it is. Returns the settings file to write
    once work starts, or None when it is already there.
    """
    if target.dest is None:
        return None
    wanted = _settings(target.run, target.out, target.post, video)
    try:
        found = target.dest.read(SETTINGS_FILE)
        before = json.loads(found) if found else None
    except (OSError, ValueError):
        before = None  # unreadable or damaged: taken as absent, and written afresh when work starts
    if isinstance(before, dict):
        # A folder written before an option existed was made with what is now that option's "off" value.
        before = {**SETTINGS_BEFORE_OPTION, **before}
        if _same_model(before.get(MODEL_KEY), str(wanted[MODEL_KEY]), target.run):
            before[MODEL_KEY] = wanted[MODEL_KEY]
    if isinstance(before, dict) and before != wanted and not target.run.overwrite:
        changed = [f"{k} {before.get(k)} (now {v})" for k, v in wanted.items() if before.get(k) != v]
        raise UsageError(
            f"{output} holds outputs made with other settings: {', '.join(changed)}; "
            f"{_default_model_hint(target.run, before)}rerun with those to resume, "
            "add --overwrite to redo every file with these, or choose another -o"
        )
    return (json.dumps(wanted, indent=1) + "\n").encode() if before != wanted else None


def _default_model_hint(run: RunOptions, before: dict) -> str:
    """When the folder was made by a model that was the default then, and no model was named now,
    say that the default changed and how to keep the old one."""
    was = before.get(MODEL_KEY)
    if run.model or run.weights or not isinstance(was, str) or was == DEFAULT_MODEL or Path(was).is_absolute():
        return ""
    return (
        f"the default model is now {DEFAULT_MODEL}: add -m {was} to go on with the model this folder was made with, or "
    )
