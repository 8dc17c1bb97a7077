"""Which photo files this installation can read, declared once for the folder walk and the decoder.

Pillow reads the common formats itself, AVIF too since Pillow 11.3 (where it was built with
libavif, as its wheels are). HEIC/HEIF, what iPhones save, needs the ``pillow-heif`` plugin:
``pip install 'bgcut[heic]'``. Importing this module registers that plugin when it is installed,
so every process that decodes (the decode workers too) can open HEIC files.
"""

from __future__ import annotations

from PIL import features

BASE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif", ".ico"}
    | {".ppm", ".pgm", ".pbm", ".pnm", ".tga"}
)
AVIF_EXTENSIONS = frozenset({".avif"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif"})


def _heif_plugin() -> bool:
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def _pillow_avif() -> bool:
    # Asked of the module table, not features.check: a Pillow that predates AVIF (10.0) answers
    # check("avif") with a UserWarning on every command instead of raising.
    return "avif" in features.modules and bool(features.check_module("avif"))


HAS_HEIF = _heif_plugin()
HAS_AVIF = _pillow_avif()
IMAGE_EXTENSIONS = (
    BASE_EXTENSIONS | (AVIF_EXTENSIONS if HAS_AVIF else frozenset()) | (HEIF_EXTENSIONS if HAS_HEIF else frozenset())
)


NOT_READ = "not a photo or video bgcut reads"  # a file of another kind: counted, never warned about


def why_unreadable(extension: str) -> str:
    """Why a file with this extension is not read, for the summary and the manifest."""
    ext = extension.lower()
    if ext in HEIF_EXTENSIONS:
        return "HEIC/HEIF photos need pip install 'bgcut[heic]'"
    if ext in AVIF_EXTENSIONS:
        return "this Pillow cannot read AVIF: pip install -U pillow (11.3 or newer)"
    return f"{NOT_READ} ({ext or 'no extension'})"
