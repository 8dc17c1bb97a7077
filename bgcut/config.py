"""Frozen settings objects shared by the stages.

``PretrainedCfg`` is the contract of one registered model: where its weights live and
what input it expects. Pipeline code reads preprocessing from here, never from
per-model code paths.
"""

from __future__ import annotations

import math
import re
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import UsageError

# The model every command uses unless told: the best one shipped inside the package, so that
# the first command gives good cut-outs offline, right after pip install. bgcut-lite, also
# embedded, is the fast one (-m bgcut-lite).
DEFAULT_MODEL = "isnet-general"
FAST_MODEL = "bgcut-lite"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "lanczos", "box")  # images.resize_rgb's PIL filters
# How a weights file stores its tensors (``models._weights.quantize``); networks compute in fp32
# (or --precision) whatever the storage.
STORAGES = ("fp32", "fp16", "int8")
DEFAULT_STORAGE = "fp32"  # what `bgcut models import` writes unless told
OUTPUT_RULES = ("sigmoid", "sigmoid-minmax", "identity")  # preprocess.to_masks


@dataclass(frozen=True)
class Bounds:
    """A number option's range, declared once beside it (``setting``, ``bounded``): its options
    object refuses a value outside it with one usage error (``check_bounds``), and the command
    line's help shows it (``shown``). ``nan`` and infinity are outside every range: no option
    means anything by them (``--rotation inf`` made numpy raise in a composer)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # ``low`` itself is outside
    high_open: bool = False  # ``high`` itself is outside
    unit: str = ""  # said after the range in the error: " pixels"
    why: str = ""  # said after that, in brackets

    def holds(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def words(self) -> str:
        """The range in the words of an error message: "from 0 to 1", "at least 1", "above 0"."""
        lo, hi = _number(self.low), _number(self.high)
        if self.high is None:
            return f"above {lo}" if self.low_open else f"at least {lo}"
        if self.low is None:
            return f"below {hi}" if self.high_open else f"at most {hi}"
        if self.low_open:
            return f"above {lo} and {'below' if self.high_open else 'at most'} {hi}"
        return f"from {lo} up to, not including, {hi}" if self.high_open else f"from {lo} to {hi}"

    def shown(self) -> str:
        """The range as the command line's help shows one: ``x>=1``, ``0<=x<=1``, ``0<=x<1``."""
        lo, hi = _number(self.low), _number(self.high)
        left = f"{lo}{'<' if self.low_open else '<='}" if self.low is not None else ""
        right = f"{'<' if self.high_open else '<='}{hi}" if self.high is not None else ""
        if not right:
            return f"x{'>' if self.low_open else '>='}{lo}"
        return f"{left}x{right}"


def _number(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting(default: Any, flag: str | None = None, bounds: Bounds | None = None) -> Any:
    """A field whose value decides what an output holds. A run's settings file records it (under
    ``flag``, else ``--NAME``), and a folder is resumed only with the same value: declared here,
    beside the option, so a new option that changes outputs cannot be left out of the check.
    ``bounds``: its range, as ``bounded`` declares one."""
    return _option(default, flag, bounds, setting=True)


def bounded(default: Any, bounds: Bounds, flag: str | None = None) -> Any:
    """A number field with its range (``Bounds``); ``flag`` names it in errors (default ``--NAME``).
    ``None`` is never out of range: it means "the default", as for ``--size``."""
    return _option(default, flag, bounds, setting=False)


def _option(default: Any, flag: str | None, bounds: Bounds | None, setting: bool) -> Any:
    metadata: dict[str, Any] = {"setting": setting}
    if flag is not None:
        metadata["flag"] = flag
    if bounds is not None:
        metadata["bounds"] = bounds
    return field(default=default, metadata=metadata)


def _flag(f: Field[Any]) -> str:
    """The command-line flag that names a field in settings and errors: its own, else ``--NAME``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def bounds_of(options: Any, name: str) -> Bounds:
    """The range declared for field ``name`` of an options class (or object)."""
    return next(f.metadata["bounds"] for f in fields(options) if f.name == name)


def check_bounds(options: Any) -> None:
    """Refuse, with one usage error, the first field of ``options`` outside its declared range."""
    for f in fields(options):
        bounds = f.metadata.get("bounds")
        if bounds is not None:
            check_value(_flag(f), getattr(options, f.name), bounds)


def check_value(flag: str, value: float | None, bounds: Bounds) -> None:
    """One usage error naming ``flag`` when ``value`` is outside ``bounds`` (``None`` never is):
    for the ranges of options objects, and of API arguments that have none (``paste_dataset``'s count)."""
    if value is not None and not bounds.holds(value):
        why = f" ({bounds.why})" if bounds.why else ""
        # "--jitter inf: must be at least 0" would be true of inf; the range's open end is the reason.
        finite = "a finite number, " if math.isinf(value) and (bounds.high if value > 0 else bounds.low) is None else ""
        raise UsageError(f"{flag} {value}: must be {finite}{bounds.words()}{bounds.unit}{why}")


def settings_of(options: Any) -> dict[str, object]:
    """``{flag: value}`` of the fields of an options object that ``setting`` marks."""
    found: dict[str, object] = {}
    for f in fields(options):
        if f.metadata.get("setting"):
            found[_flag(f)] = getattr(options, f.name)
    return found


@dataclass(frozen=True)
class PretrainedCfg:
    """One registry entry: architecture, input contract, weight location, provenance."""

    name: str
    arch: str
    arch_args: dict[str, Any] = field(default_factory=dict)
    input_size: int = 320
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # How the network's output logits become a [0, 1] mask: "sigmoid", or "sigmoid-minmax"
    # (sigmoid, then each mask stretched to span [0, 1], as U2-Net is published).
    output: str = "sigmoid"
    # PIL filter used to resize photos to input_size (bilinear, bicubic, lanczos, box). It is
    # part of the contract: IS-Net's mask changes measurably with a different resampler.
    interpolation: str = "bilinear"
    hf_repo_id: str | None = None
    hf_revision: str | None = None
    hf_filename: str = "model.safetensors"
    sha256: str | None = None
    license: str = "unknown"
    # File name inside bgcut/models/weights/ when the weights ship with the package.
    embedded: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        # A config.json beside --weights is user input: refused here, once, not per image.
        if self.interpolation not in INTERPOLATIONS:
            raise UsageError(
                f"model {self.name}: interpolation {self.interpolation!r}, expected one of {', '.join(INTERPOLATIONS)}"
            )
        if self.output not in OUTPUT_RULES:
            raise UsageError(f"model {self.name}: output {self.output!r}, expected one of {', '.join(OUTPUT_RULES)}")

    def to_json(self) -> dict[str, Any]:
        """The config.json written beside exported weights."""
        return {
            "name": self.name,
            "arch": self.arch,
            "arch_args": dict(self.arch_args),
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "output": self.output,
            "interpolation": self.interpolation,
            "license": self.license,
        }


@dataclass(frozen=True)
class Format:
    """One output format, declared once: the CLI's choices and help, the renderer and the encoder
    all read this table (``FORMATS``), so a new format is one row here."""

    name: str
    extension: str  # the file type written; ``writer.ENCODERS`` has one encoder per extension
    # What each output pixel holds (``postprocess.render``): "alpha" the mask alone, "cutout" RGBA
    # (or RGB composited onto --bg), "flat" RGB composited onto --bg, white when none is given.
    pixels: str
    crop: bool  # cut to the object's box (--margin), or one file per object (--per-object)
    help: str
    media_type: str  # what ``bgcut serve`` answers it as


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("png-alpha", ".png", "cutout", False, "RGBA cut-out", "image/png"),
        Format("mask", ".png", "alpha", False, "8-bit alpha", "image/png"),
        Format("crop", ".png", "cutout", True, "RGBA cropped to the object", "image/png"),
        Format("webp", ".webp", "cutout", False, "lossless RGBA", "image/webp"),
        Format("jpg", ".jpg", "flat", False, "flattened onto --bg (white by default)", "image/jpeg"),
    )
}
DEFAULT_FORMAT = "png-alpha"
# `-o NAME.EXT` with one input writes that one file; its extension picks the format unless --format
# does: the first format of the table that writes that extension (.png: png-alpha), and .jpeg.
FILE_EXTENSIONS = {**{f.extension: n for n, f in reversed(FORMATS.items())}, ".jpeg": "jpg"}
KEEP = ("all", "largest")
# --png: "fast" writes RGB and RGBA with fpng (grey masks, or without fpng: zlib level 1 with
# libpng's fast filters); "small" is zlib level 6 with libpng's adaptive filters, for files that
# are stored or sent more often than written. The measurements are in bench/RESULTS.md.
PNG_MODES = ("fast", "small")
REFINE = ("none", "guided", "matting")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
ENGINES = ("local", "ray")
MIN_SIZE = 32  # --size: the smallest inference resolution (the networks downsample 5 times)
# --erode, --dilate and --feather: their cost no longer grows with the radius (postprocess.morph runs
# wide ones shrunk), so the bound is about sense: 500 px is more than any edge adjustment needs.
MAX_EDGE_PIXELS = 500
_EDGE = Bounds(0, MAX_EDGE_PIXELS, unit=" pixels", why="an edge adjustment, not a way to reshape the mask")


def format_help() -> str:
    """The ``--format`` help, from the table."""
    kinds = "; ".join(f"{n}: {f.help}" for n, f in FORMATS.items())
    files = ", ".join(sorted(FILE_EXTENSIONS))
    return f"{kinds}. Default: {DEFAULT_FORMAT}, or what -o FILE's extension says ({files})."


MARGIN = Bounds(0, unit=" (pixels, or percent of the box)")  # --margin's number, either way


def parse_margin(spec: str) -> tuple[float, bool]:
    """``"16"`` -> (16, False) pixels; ``"10%"`` -> (10, True) percent of the box's size."""
    text = spec.strip()
    pct = text.endswith("%")
    try:
        value = float(text[:-1] if pct else text)
    except ValueError:
        raise UsageError(f"--margin {spec!r}: expected pixels like 16 or a percentage like 10%") from None
    check_value("--margin", value, MARGIN)
    return value, pct


def shown_value(spec: str, limit: int = 60) -> str:
    """A user's value as an error message quotes it: a 100 KB value is not echoed back in full."""
    return repr(spec if len(spec) <= limit else spec[: limit - 3] + "...")


BLUR = "blur"  # --bg blur[:SIGMA]: the photo's own background, blurred
DEFAULT_BLUR_SIGMA = 15.0  # pixels: a Gaussian's standard deviation, as a portrait mode's blur
MAX_BLUR_SIGMA = 500.0


def parse_blur(spec: str, option: str = "--bg") -> float | None:
    """``blur`` or ``blur:SIGMA`` -> the Gaussian's standard deviation in pixels; None for
    anything else (a colour, a photo). Not a file name: a photo named ``blur`` is ``./blur``.

    Raises:
        UsageError: ``blur:`` followed by something that is not a sigma from 0.5 to 500.
    """
    name, sep, value = spec.partition(":")
    if name.strip().lower() != BLUR:
        return None
    if not sep:
        return DEFAULT_BLUR_SIGMA
    try:
        sigma = float(value)
    except ValueError:
        sigma = float("nan")
    if not 0.5 <= sigma <= MAX_BLUR_SIGMA:  # also refuses nan
        most = f"{MAX_BLUR_SIGMA:g}"
        raise UsageError(f"{option} {shown_value(spec)}: blur:SIGMA takes a sigma from 0.5 to {most} pixels")
    return sigma


def parse_colour(spec: str, option: str = "--bg") -> tuple[int, int, int] | None:
    """A colour -> RGB: ``r,g,b``, or anything PIL's ``ImageColor`` reads (a name, ``#rrggbb``,
    ``rgb(0,128,255)``, ``hsl(200,100%,50%)``). None when ``spec`` is no colour at all (a photo's
    path, for the CLI and the API). The one parser of the CLI, the API and the server; ``option``
    names the value in its one-line errors.

    Raises:
        UsageError: ``spec`` is written as a colour (commas, or a colour function) but is not one.
    """
    from PIL import ImageColor

    if "," in spec and "(" not in spec:
        try:
            parts = tuple(int(p) for p in spec.split(","))
        except ValueError:
            parts = ()
        if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
            raise UsageError(f"{option} {shown_value(spec)}: expected three numbers 0-255 like 0,128,255")
        return parts  # type: ignore[return-value]
    try:
        return ImageColor.getrgb(spec)[:3]  # type: ignore[return-value]
    except ValueError:
        if "(" in spec:
            raise UsageError(
                f"{option} {shown_value(spec)}: not a colour (expected e.g. rgb(0,128,255), hsl(200,100%,50%), "
                "#0080ff, white or 0,128,255)"
            ) from None
        return None


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise UsageError(f"--shard: expected I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def format_for_file(name: str) -> str | None:
    """The format an output file name asks for (``cut.webp`` -> ``webp``), or None for a folder name."""
    dot = name.rfind(".")
    return FILE_EXTENSIONS.get(name[dot:].lower()) if dot > max(name.rfind("/"), 0) else None


@dataclass(frozen=True)
class PostOptions:
    """How a predicted soft mask is turned into the final alpha (all in pixels of the input)."""

    # The cut for --binary, connected components, boxes and hole filling.
    threshold: float = setting(0.5, bounds=Bounds(0.0, 1.0))
    binary: bool = setting(False)
    keep: str = setting("all")  # "all" or "largest" connected object
    fill_holes: bool = setting(False)
    erode: int = setting(0, bounds=_EDGE)
    dilate: int = setting(0, bounds=_EDGE)
    feather: float = setting(0.0, bounds=_EDGE)
    # The mask's edge at full resolution (pipeline/edges.py), before the options above: "none"
    # keeps the upsampled mask, "guided" moves its soft edge onto the photo's own edge, "matting"
    # solves closed-form alpha matting in a band around the edge (slow; pip install 'bgcut[matting]').
    refine: str = setting("none")
    # "guided": smaller follows the photo's edges more closely (bench/edges.py).
    refine_eps: float = setting(1e-4, bounds=Bounds(0.0, 1.0, low_open=True))
    # Colour outputs: estimate the object's own colour where alpha is partial, so the old
    # background does not come along as a halo (pipeline/edges.estimate_foreground).
    decontaminate: bool = setting(False)

    def __post_init__(self) -> None:
        # Checked once, here: a bad value is one usage error before any work, not one failure per image.
        if self.refine not in REFINE:
            raise UsageError(f"--refine {self.refine!r}: expected one of {', '.join(REFINE)}")
        if self.keep not in KEEP:
            raise UsageError(f"--keep {self.keep!r}: expected one of {', '.join(KEEP)}")
        check_bounds(self)  # the ranges; inf would make OpenCV assert per image, nan is refused too


@dataclass(frozen=True)
class OutputOptions:
    """What is written for each input."""

    # None: the format the output file's name asks for (``-o cut.webp``: webp), else DEFAULT_FORMAT;
    # ``remove_backgrounds`` settles it (``for_output``) before anything reads it.
    format: str | None = setting(None)
    bg: str | None = setting(None)  # a colour ("white", "#00ff00", "0,255,0") or the path of a photo
    margin: str = setting("0")  # crop margin: pixels ("16") or percent of the box ("10%")
    per_object: bool = setting(False)
    min_area: int = setting(64, bounds=Bounds(0))  # per-object crops: smaller objects are ignored (pixels)
    # PNG files: "fast" or "small" (PNG_MODES). The decoded pixels are the same either way; only
    # the file's bytes differ, so a folder may be resumed with the other one.
    png: str = "fast"

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise UsageError(f"--format {self.format!r}: expected one of {', '.join(FORMATS)}")
        parse_margin(self.margin)
        if self.bg is not None and parse_blur(self.bg) is None and parse_colour(self.bg) is None:
            from .storage import is_url  # lazily: config is imported by every module

            if not is_url(self.bg) and not Path(self.bg).is_file():
                raise UsageError(f"--bg {self.bg!r} is neither a colour nor an image file")
        check_bounds(self)
        if self.png not in PNG_MODES:
            raise UsageError(f"--png {self.png!r}: expected one of {', '.join(PNG_MODES)}")

    def for_output(self, output: str) -> OutputOptions:
        """These options with the format settled: the output file name's when none was given."""
        if self.format is not None:
            return self
        return replace(self, format=format_for_file(output) or DEFAULT_FORMAT)

    @property
    def spec(self) -> Format:
        return FORMATS[self.format or DEFAULT_FORMAT]

    @property
    def extension(self) -> str:
        return self.spec.extension


@dataclass(frozen=True)
class RunOptions:
    """One batch run's engine settings."""

    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    precision: str = setting("auto")
    # Inference resolution; None = the model's own.
    size: int | None = setting(None, bounds=Bounds(MIN_SIZE, unit=" pixels"))
    batch_size: int | None = bounded(None, Bounds(1))  # None: 8 on a GPU, up to 1 megapixel of model input on CPU
    workers: int = bounded(2, Bounds(0))  # decode processes; 0 decodes in the main process
    writer_threads: int = bounded(2, Bounds(1), "writer_threads")
    max_pixels: int = bounded(100_000_000, Bounds(1))
    overwrite: bool = False
    manifest: str | None = None
    shard: tuple[int, int] | None = None  # (index, count): this job's share of the inputs, by output name
    engine: str = "local"  # "local" (this process + decode workers) or "ray" (Ray Data)
    ray_address: str | None = None  # None starts a local Ray instance; "auto" or "ray://host:10001" joins a cluster
    ray_actors: int = bounded(1, Bounds(1))  # model actors on a cluster without GPUs (with GPUs: one per GPU)
    # Rows whose doubt (pipeline/doubt.py) is above this are marked ``"review": true`` in the
    # manifest and counted in the summary; the outputs stay where they are (resume finds them).
    max_doubt: float | None = bounded(None, Bounds(0.0, 1.0))

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.engine not in ENGINES:
            raise UsageError(f"--engine {self.engine!r}: expected one of {', '.join(ENGINES)}")
        check_bounds(self)
        if self.shard is not None and not 0 <= self.shard[0] < self.shard[1]:
            raise UsageError(f"--shard {self.shard[0]}/{self.shard[1]}: expected I/N with 0 <= I < N")


@dataclass(frozen=True)
class VideoFormat:
    """One video output kind, declared once (``VIDEO_FORMATS``): the CLI's choices and help, the
    frame renderer and the video writer all read it."""

    name: str
    extension: str  # the file written; "" for a folder of numbered images
    container: str | None  # FFmpeg's muxer for it
    codec: str | None  # FFmpeg encoder
    pix_fmt: str | None  # the encoder's pixel format: a "yuva" one carries alpha
    # The still format (``FORMATS``) whose pixels each frame is, rendered as a photo would be;
    # None: each frame is a file in --format.
    frames_as: str | None
    audio: tuple[str, ...]  # audio codecs the container holds: the input's audio is copied when it is one
    help: str

    @property
    def pixels(self) -> str:
        """What each frame's pixels hold, as ``Format.pixels`` names them ("cutout" RGBA, "alpha"
        the mask, "flat" RGB on --bg), or "image": each frame rendered in --format."""
        return FORMATS[self.frames_as].pixels if self.frames_as is not None else "image"

    def output_name(self, key: str) -> str:
        """A video's output inside the output folder: ``KEY.webm``, or the folder ``KEY`` of frames."""
        return f"{key}{self.extension}"


VIDEO_FORMATS: dict[str, VideoFormat] = {
    f.name: f
    for f in (
        VideoFormat(
            "webm",
            ".webm",
            "webm",
            "libvpx-vp9",
            "yuva420p",
            "png-alpha",
            ("opus", "vorbis"),
            "transparent VP9 in WebM",
        ),
        VideoFormat(
            "mov",
            ".mov",
            "mov",
            "prores_ks",
            "yuva444p10le",
            "png-alpha",
            ("aac", "mp3", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le"),
            "transparent ProRes 4444 in MOV (large files, for editing)",
        ),
        VideoFormat(
            "mp4",
            ".mp4",
            "mp4",
            "libx264",
            "yuv420p",
            "jpg",
            ("aac", "mp3", "alac", "opus"),
            "H.264 on --bg (white by default)",
        ),
        VideoFormat("mask", ".mp4", "mp4", "libx264", "yuv420p", "mask", (), "the mask as greyscale H.264"),
        VideoFormat(
            "frames", "", None, None, None, None, (), "a folder of numbered images (000000.png...) in --format"
        ),
    )
}
# A video file's extension -> the first video format of the table that writes it (.mp4: mp4),
# for ``bgcut camera -o FILE``.
VIDEO_FILE_EXTENSIONS: dict[str, str] = {}
for _f in VIDEO_FORMATS.values():
    if _f.container is not None:
        VIDEO_FILE_EXTENSIONS.setdefault(_f.extension, _f.name)
del _f
DEFAULT_VIDEO_FORMAT = "webm"


@dataclass(frozen=True)
class VideoOptions:
    """What is written for each input video (``bgcut/video``)."""

    format: str = setting(DEFAULT_VIDEO_FORMAT, "--video-format")
    # Steadying of the mask from one frame to the next (video/stability.py): 0 is off; s in
    # (0, 1) keeps that share of the previous frame's mask where the new one differs only a little.
    steady: float = setting(0.0, bounds=Bounds(0.0, 1.0, high_open=True, why="0 is off"))
    # The encoders' constant-quality level (CRF; lower is better and larger).
    quality: int = setting(20, "--video-quality", Bounds(0, 51))

    def __post_init__(self) -> None:
        if self.format not in VIDEO_FORMATS:
            raise UsageError(f"--video-format {self.format!r}: expected one of {', '.join(VIDEO_FORMATS)}")
        check_bounds(self)

    @property
    def spec(self) -> VideoFormat:
        return VIDEO_FORMATS[self.format]


MAX_FRAMES = Bounds(1)  # bgcut camera --max-frames: ``run_camera``'s argument, for its check and the help


def video_format_help() -> str:
    kinds = "; ".join(f"{n}: {f.help}" for n, f in VIDEO_FORMATS.items())
    return f"What a video input becomes. {kinds}. Default: {DEFAULT_VIDEO_FORMAT}."
