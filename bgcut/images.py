"""Image helpers shared by the engine, the server, training, paste and evaluation: decoding a path
or URL (or PIL image, array) to an RGB uint8 array plus the input's own alpha, and resizing
(``resize_rgb``: a model's square input; ``cover``: a background filling a frame).

Every image mode PIL can hand us is normalised here, once, so later stages only ever see
RGB uint8: EXIF orientation applied, palette and LA/RGBA alpha kept, CMYK converted,
16-bit data scaled (not clipped) to 8 bits, animations reduced to their first frame.
Failures raise ``ImageError`` with the reason, which callers turn into one error line for
that file. No torch here: ``bgcut paste`` workers decode through this module too, and should
not pay for importing torch (nor do the engine's decode workers, ``pipeline/dataset.py``).
"""

from __future__ import annotations

import io
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import codecs  # noqa: F401 - registers the HEIC plugin where installed, in every decoding process
from .errors import ImageError, ImageTooLargeError
from .storage import is_url, read_bytes

DEFAULT_MAX_PIXELS = 100_000_000

# We enforce our own --max-pixels limit with a clear message; PIL's global bomb check
# would otherwise fire first with a different limit and wording.
Image.MAX_IMAGE_PIXELS = None


@dataclass
class Decoded:
    rgb: np.ndarray  # H x W x 3 uint8
    alpha: np.ndarray | None  # H x W uint8, the input's own transparency, if any
    warning: str | None = None


def _to_uint8_from_16bit(im: Image.Image) -> np.ndarray:
    arr = np.asarray(im)
    if arr.dtype.byteorder == ">" or arr.dtype != np.uint16:
        arr = arr.astype(np.float64)
    # 16-bit sample values span 0..65535; divide rather than clip so the picture keeps its tones.
    return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)


def _normalise(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        gray = (
            _to_uint8_from_16bit(im) if mode != "I" or np.asarray(im).max() > 255 else np.asarray(im).astype(np.uint8)
        )
        return np.repeat(gray[:, :, None], 3, axis=2), None
    if mode == "F":
        gray = np.clip(np.asarray(im), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), None
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    if im.mode == "RGBA":
        arr = np.asarray(im)
        alpha = arr[:, :, 3].copy()
        return np.array(arr[:, :, :3], order="C"), (None if alpha.min() == 255 else alpha)
    return np.array(im), None


def _open_file(source: str | os.PathLike[str] | bytes) -> Image.Image:
    """Open (not yet decode) a local file, a URL or bytes in memory; ``ImageError`` with the reason."""
    try:
        if isinstance(source, bytes):  # an upload (bgcut serve)
            if not source:
                raise ImageError("empty file (0 bytes)")
            return Image.open(io.BytesIO(source))
        if is_url(source):
            data = read_bytes(str(source))  # one request; PIL's many small seeks would each be one
            if not data:
                raise ImageError("empty file (0 bytes)")
            return Image.open(io.BytesIO(data))
        path = Path(source)
        if path.is_dir():
            raise ImageError("is a directory, not an image")
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            # A pipe (`bgcut <(curl ...)`) or a device has no size and would be read by each
            # decode worker, which has not got the pipe's descriptor: stdin takes one image.
            raise ImageError("not a regular file (a pipe, socket or device): pipe one image into `bgcut -` instead")
        if st.st_size == 0:
            raise ImageError("empty file (0 bytes)")
        return Image.open(path)
    except PermissionError:
        raise ImageError("permission denied") from None
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:  # a URL naming a folder; local folders are caught above
        raise ImageError("is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError("not an image, or a format PIL cannot identify") from None
    except OSError as e:
        raise ImageError(f"cannot open: {e.strerror or _reason(e)}") from None
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - a crafted header can make a PIL plugin raise anything
        raise ImageError(f"not an image, or a corrupt header ({_reason(e)})") from None


# PIL's own wording for broken files, reworded to say what is wrong with the file.
_REWORDED = (
    (re.compile(r"image file is truncated.*|Truncated File Read"), "the file is truncated"),
    (re.compile(r"failed to read next frame"), "corrupt image data (cannot read the next frame)"),
    (re.compile(r"tile cannot extend outside image"), "corrupt header (image data placed outside the picture)"),
    (re.compile(r"could not create decoder object"), "corrupt header or unsupported compression (no decoder for it)"),
    (re.compile(r"decoder error (-?\d+)"), r"corrupt image data (the decoder stopped with error \1)"),
    (re.compile(r"broken data stream.*"), "corrupt image data (broken data stream)"),
    (re.compile(r"Missing dimensions"), "corrupt header (no image size)"),
)


def _reason(e: BaseException) -> str:
    """One line saying why a file failed to decode: PIL's text where it is clear, reworded where it is not."""
    text = " ".join(str(e).split()) or type(e).__name__
    for pattern, words in _REWORDED:
        if pattern.fullmatch(text):
            return pattern.sub(words, text)
    if isinstance(e, (OSError, SyntaxError, ValueError)):
        return text
    return f"corrupt or unsupported file ({type(e).__name__}: {text})"


def open_image(
    source: str | os.PathLike[str] | bytes | Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS, fast_jpeg: bool = False
) -> Decoded:
    """Decode one image (a path, an fsspec URL, bytes or a PIL image); raises ``ImageError`` whose
    message is the reason.

    ``fast_jpeg`` lets OpenCV decode plain JPEGs (``_jpeg_by_opencv``: the same pixels, in about
    two thirds of the time). It redirects file descriptor 2 while it decodes (``decoder_noise``),
    so only callers that own the process's stderr for that moment ask for it: the engine's
    decode workers, which already decode inside ``decoder_noise``.

    Every failure is an ``ImageError``: a crafted file makes PIL raise nearly anything (``TypeError``
    from a TIFF without dimensions, ``IndexError`` from a truncated GIF's frame count), and one
    bad file must never stop a batch.
    """
    owned = not isinstance(source, Image.Image)  # a caller's PIL image is never changed
    im = _open_file(source) if owned else source
    try:
        return _decode_opened(im, max_pixels, owned, fast_jpeg)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("out of memory while decoding") from None
    except Exception as e:  # noqa: BLE001 - see the docstring
        raise ImageError(f"cannot decode image: {_reason(e)}") from None
    finally:
        if owned:
            im.close()


def image_size(source: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Width and height from the header alone (nothing is decoded), checked as ``open_image``
    checks them: what admitting work costs."""
    im = _open_file(source)
    try:
        return _checked_size(im, max_pixels)
    finally:
        im.close()


def _checked_size(im: Image.Image, max_pixels: int) -> tuple[int, int]:
    w, h = im.size
    if w * h > max_pixels:
        raise ImageTooLargeError(w, h, max_pixels)
    if w <= 0 or h <= 0:
        raise ImageError(f"corrupt header (image size {w}x{h})")
    return w, h


def _first_only(fmt: str | None, frames: int) -> str:
    """The warning for a file that holds more than one picture, in the words of its kind: a
    TIFF's pages are documents or scans, not an animation."""
    if fmt == "TIFF":
        return f"TIFF with {frames} pages; only the first page is used"
    if fmt == "MPO":  # a camera's JPEG with a second picture (3D, depth or a preview) appended
        return f"MPO file with {frames} pictures; only the first picture is used"
    return f"animated image with {frames} frames; only the first frame is used"


def _decode_opened(im: Image.Image, max_pixels: int, owned: bool, fast_jpeg: bool) -> Decoded:
    warning = None
    _checked_size(im, max_pixels)
    if owned and fast_jpeg and (rgb := _jpeg_by_opencv(im)) is not None:
        return Decoded(rgb, None)
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        warning = _first_only(im.format, frames)
        im.seek(0)
    im.load()
    if owned:
        # In place: the copying form copies the whole picture even when there is no orientation
        # to apply, which was about a quarter of open_image's time on 854x480 JPEGs.
        ImageOps.exif_transpose(im, in_place=True)
    else:
        im = ImageOps.exif_transpose(im)
    rgb, alpha = _normalise(im)
    return Decoded(rgb, alpha, warning)


# PIL's orientation tag values -> the same permutation of an H x W x 3 array (ImageOps.exif_transpose).
_ORIENTED = {
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
    5: lambda a: a.transpose(1, 0, 2),  # TRANSPOSE
    6: lambda a: np.rot90(a, -1),  # ROTATE_270
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # TRANSVERSE
    8: lambda a: np.rot90(a, 1),  # ROTATE_90
}


def _jpeg_by_opencv(im: Image.Image) -> np.ndarray | None:
    """The RGB pixels of a plain JPEG (RGB or grey, opened but not loaded) decoded by OpenCV, or
    None where PIL must decode it.

    Both wrap libjpeg-turbo and give the same pixels (all 7,703 JPEGs of the evaluation sets,
    DUTS-TR, the backgrounds and the video frames: ``bench/jpeg_decode.py``), but PIL's route to a
    numpy array copies the picture twice more: a median of 2.9 ms against 2.0 ms for davis16's
    854x480 frames (bench/RESULTS.md). PIL still decodes what OpenCV would treat differently:
    CMYK and other modes, and any file about which libjpeg printed a word (a corrupt or
    truncated file, which OpenCV fills in grey where PIL raises).
    The EXIF orientation is applied as ``ImageOps.exif_transpose`` applies it.
    """
    if im.format != "JPEG" or im.mode not in ("RGB", "L"):
        return None
    method = _ORIENTED.get(im.getexif().get(0x0112, 1))
    fp = im.fp
    at = fp.tell()
    fp.seek(0)
    data = np.frombuffer(fp.read(), np.uint8)
    fp.seek(at)
    with decoder_noise() as noise:
        try:
            rgb = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
        except cv2.error:
            rgb = None
    if noise or rgb is None or rgb.shape[1::-1] != im.size:
        return None
    return rgb if method is None else np.ascontiguousarray(method(rgb))


_scratch: dict[int, int] = {}  # process id -> the descriptor decoder noise is collected in
_capturing: dict[int, bool] = {}  # process id -> whether fd 2 is redirected into it now


@contextmanager
def decoder_noise() -> Iterator[list[str]]:
    """Collects what C libraries print to file descriptor 2 while one file is decoded.

    libjpeg and libtiff write warnings ("Invalid component ID 120 in SOS.") straight to stderr,
    where they would interleave with bgcut's own lines and name no file. Redirecting the
    descriptor (not ``sys.stderr``, which C code never sees) lets the caller attach the text to
    that file's error or warning. One unlinked scratch file per process, emptied before each use.

    Nested blocks each get only what was printed inside them, and an inner block's text is
    taken back from the outer one: ``open_image`` tries OpenCV inside its own block and, when
    OpenCV complained, decodes the file again with PIL, whose words are the ones that count.
    """
    pid = os.getpid()
    fd = _scratch.get(pid)
    if fd is None:
        fd, name = tempfile.mkstemp(prefix="bgcut-stderr-")
        os.unlink(name)
        _scratch[pid] = fd
    sys.stderr.flush()
    nested = _capturing.get(pid, False)
    if nested:
        start = os.lseek(fd, 0, os.SEEK_CUR)  # fd 2 shares this offset: it is where the next text goes
    else:
        start = 0
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        saved = os.dup(2)
        os.dup2(fd, 2)
        _capturing[pid] = True
    found: list[str] = []
    try:
        yield found
    finally:
        end = os.lseek(fd, 0, os.SEEK_CUR)
        text = os.pread(fd, min(end - start, 4096), start).decode("utf-8", "replace") if end > start else ""
        if nested:
            os.ftruncate(fd, start)
            os.lseek(fd, start, os.SEEK_SET)
        else:
            os.dup2(saved, 2)
            os.close(saved)
            _capturing[pid] = False
        found.extend(line.strip() for line in text.splitlines() if line.strip())


def open_named(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """``open_image`` for callers that report errors without saying which file: the message names it."""
    try:
        return open_image(path, max_pixels)
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from None


def load_image(
    source: str | os.PathLike[str] | Image.Image | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Decoded:
    """Like ``open_image`` but also takes a numpy array (H x W, H x W x 3 RGB or H x W x 4 RGBA)."""
    if isinstance(source, np.ndarray):
        return _from_array(source)
    return open_image(source, max_pixels)


def _from_array(arr: np.ndarray) -> Decoded:
    if arr.dtype == np.uint16:
        arr = np.rint(arr / 257.0).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return Decoded(np.repeat(arr[:, :, None], 3, axis=2), None)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return Decoded(np.ascontiguousarray(arr), None)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return Decoded(np.ascontiguousarray(arr[:, :, :3]), arr[:, :, 3].copy())
    raise ImageError(f"array of shape {arr.shape} is not an image (expected HxW, HxWx3 or HxWx4)")


_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


def resize_rgb(rgb: np.ndarray, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """A square ``size`` x ``size`` copy of an H x W x 3 uint8 photo, aspect ratio ignored.

    PIL's resampling (antialiased when shrinking) because that is what the reference
    pipelines use: on IS-Net, OpenCV's bilinear, although never more than 1 level off per
    pixel, moved the mask's IoU with the reference from 0.9998 to 0.967 on one DAVIS frame.
    """
    return np.array(Image.fromarray(rgb).resize((size, size), _FILTERS[interpolation]))


def model_input(rgb: np.ndarray, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """A model's input for a photo: ``resize_rgb`` as a contiguous 3 x size x size uint8 array
    (channels first), made without torch so that decode workers need not import it."""
    return np.ascontiguousarray(resize_rgb(rgb, size, interpolation).transpose(2, 0, 1))


def cover(image: np.ndarray, w: int, h: int, at: tuple[float, float] | None = None) -> np.ndarray:
    """Scale ``image`` to cover w x h (never stretched), then crop w x h out of it: centred, or at
    ``at`` = (u, v) in [0, 1), the crop's offset as a share of the room left on each axis."""
    ih, iw = image.shape[:2]
    s = max(w / iw, h / ih)
    nw, nh = max(w, round(iw * s)), max(h, round(ih * s))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if at is None:
        x0, y0 = (nw - w) // 2, (nh - h) // 2
    else:
        x0, y0 = int(at[0] * (nw - w + 1)), int(at[1] * (nh - h + 1))
    return np.ascontiguousarray(resized[y0 : y0 + h, x0 : x0 + w])


def checkerboard(width: int, height: int, cell: int = 16) -> np.ndarray:
    """An RGB grey checkerboard (cells of ``cell`` pixels), for showing transparency: the camera's
    preview window and the review page's thumbnails."""
    yy, xx = np.mgrid[:height, :width]
    light = ((yy // cell + xx // cell) % 2).astype(bool)
    return np.where(light[:, :, None], 204, 153).astype(np.uint8).repeat(3, axis=2)
