"""What an uploaded file is, decided from its bytes, and photos made safe to keep:
decoded and encoded again with the EXIF orientation applied and every piece of
metadata left behind — above all GPS coordinates, which would reveal the patient's
home. The uploaded bytes themselves are never stored (docs/ARCHITECTURE.md,
"Attachments")."""

import io
import threading
import warnings

from PIL import Image, ImageOps
from pillow_heif import register_heif_opener

from renkei.common import offload
from renkei.common.problems import Problem

register_heif_opener()  # iPads send HEIC
# Larger images are refused before their pixels are decoded: a phone's 48-megapixel photo
# fits, a small file that decodes to gigabytes of pixels does not.
Image.MAX_IMAGE_PIXELS = 50_000_000
# `_reencode` checks the size itself; Pillow's warning between one and two times the limit
# would only add noise to the log.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# A decoded photo is held twice (its pixels and the clean copy). bench/photo_memory.py
# measures the peak: +215 MB for a 49 MP photo, +410 MB for a 49 MP palette PNG with
# transparency (its palette, and two RGBA copies); so a process decodes two at a time
# (at most ~0.8 GB above its own) and further uploads wait their turn.
_DECODING = threading.BoundedSemaphore(2)

PDF = "application/pdf"
THUMB_EDGE = 320
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"heif"}
# What a stored image is encoded as: JPEG stays JPEG, HEIC becomes JPEG (browsers show it).
_STORED_AS = {
    "jpeg": ("JPEG", "image/jpeg"),
    "heif": ("JPEG", "image/jpeg"),
    "png": ("PNG", "image/png"),
    "webp": ("WEBP", "image/webp"),
}
# Only the decoder the bytes announced: a file that starts like a JPEG is not handed to
# every other decoder Pillow has when it fails as one. MPO: a phone's JPEG with a preview.
_DECODERS = {"jpeg": ["JPEG", "MPO"], "png": ["PNG"], "webp": ["WEBP"], "heif": ["HEIF"]}


def kind_of(head: bytes) -> str:
    """jpeg, png, webp, heif or pdf, from the first bytes; 415 for anything else (an
    HTML or SVG file named .jpg included)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "heif"
    if head.startswith(b"%PDF-"):
        return "pdf"
    raise Problem(
        415,
        "Only JPEG, PNG, WebP and HEIC photos and PDF documents can be attached.",
        type_="/problems/unsupported-file-type",
    )


def reencode(data: bytes, kind: str) -> tuple[bytes, str, int, int, bytes]:
    """(stored bytes, content type, width, height, thumbnail JPEG) of a photo."""
    with _DECODING:
        return offload.run(_reencode, data, kind)


def _reencode(data: bytes, kind: str) -> tuple[bytes, str, int, int, bytes]:
    fmt, content_type = _STORED_AS[kind]
    too_large = Problem(413, "The image has too many pixels.", type_="/problems/image-too-large")
    try:
        with Image.open(io.BytesIO(data), formats=_DECODERS[kind]) as img:  # reads the header only
            if img.width * img.height > Image.MAX_IMAGE_PIXELS:
                raise too_large
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # upright, without another copy
            clean = _without_metadata(img, fmt)
    except Problem:
        raise
    except Image.DecompressionBombError:  # Pillow's own check, past twice the limit
        raise too_large
    except Exception:  # Pillow raises many kinds for broken files
        raise Problem(415, "The file could not be read as an image.", type_="/problems/unsupported-file-type")
    out = io.BytesIO()
    clean.save(out, fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    width, height = clean.size
    clean.thumbnail((THUMB_EDGE, THUMB_EDGE))  # in place (the full image is saved already), then
    if clean.mode not in ("RGB", "L"):  # converted small: no third full-size copy
        clean = clean.convert("RGB")
    small = io.BytesIO()
    clean.save(small, "JPEG", quality=80)
    return out.getvalue(), content_type, width, height, small.getvalue()


def _without_metadata(img: Image.Image, fmt: str) -> Image.Image:
    """The pixels alone: a new image holds no EXIF, XMP, ICC, comments or text chunks.
    A palette becomes RGB(A) so its transparency is kept; JPEG has no alpha."""
    mode = img.mode
    if mode == "P" or (mode in ("LA", "PA", "RGBA", "CMYK", "I;16", "I", "F") and fmt == "JPEG"):
        mode = "RGB" if fmt == "JPEG" else "RGBA"
    elif mode not in ("1", "L", "LA", "RGB", "RGBA"):
        mode = "RGB"
    pixels = img if img.mode == mode else img.convert(mode)
    clean = Image.new(mode, img.size)
    clean.paste(pixels)
    return clean
