"""Turn whatever a user points at into an upright 8-bit RGB array, or a one-line BadImage.

Everything downstream (detection, alignment, the encoder) assumes HxWx3 uint8 RGB, so all
format quirks live here: EXIF rotation, palettes, alpha, CMYK, 16-bit and float samples,
animations. Decoding untrusted files is also where things go wrong, so every failure is
turned into :class:`~faceid.errors.BadImage` naming the file and the reason.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from faceid.errors import BadImage, UsageError

__all__ = [
    "MAX_PIXELS",
    "MIN_SIDE",
    "SUPPORTED_SUFFIXES",
    "Picture",
    "image_format",
    "is_image_path",
    "load_image",
    "load_photo",
    "load_picture",
]

MAX_PIXELS: int = 120_000_000
"""Refuse images above this many pixels, from the header, before decoding them (decompression
bombs). Phones make 48-108 MP photos; a large JPEG is decoded at reduced size for detection
(`load_picture`), so only a face that needs them costs its full-resolution pixels."""

MIN_SIDE: int = 16
"""Below this many pixels on a side there is no face to find, so say so early."""

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
    | {".heic", ".heif", ".avif"}
)

# Only these decoders may run. Pillow would otherwise try every plugin it has, some of
# which are rarely exercised or shell out (EPS runs Ghostscript), on untrusted input.
# AVIF is Pillow's own (11.2+); HEIF (iPhone photos) comes from the pillow-heif plugin.
_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF", "AVIF", "HEIF")
_FORMAT_NAMES = "JPEG, PNG, BMP, WebP, GIF, TIFF, HEIC/HEIF, AVIF"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# File signatures, so that a folder scan judges files by content, not by their names.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (_PNG_SIGNATURE, "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"heif"}
_AVIF_BRANDS = {b"avif", b"avis"}

_CRC_BLOCK = 1 << 20

# A process-wide Pillow switch that makes truncated files decode "successfully" with
# grey padding; a face model fed such images fails silently, so keep it off.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def is_image_path(path: str | os.PathLike[str] | os.PathLike[bytes] | bytes) -> bool:
    """Say whether an enroll-folder scan should pick this file up (judged by suffix only)."""
    name = os.fsdecode(path)
    return os.path.splitext(name)[1].lower() in SUPPORTED_SUFFIXES


def image_format(head: bytes) -> str | None:
    """The image format a file's first 16 bytes announce (JPEG, PNG, ..., HEIF, AVIF), or None.

    Folder scans use this instead of file names: photos come without extensions, with
    upper-case ones, or with the wrong one, and a `.jpg` may be a text file.
    """
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF"
    return None


def _enable_heif() -> bool:
    """Register pillow-heif's HEIC/HEIF decoder on first need (importing it costs ~50 ms)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def load_photo(photo: object, *, channels: str = "rgb", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any photo a user may hold -> an upright HxWx3 uint8 RGB array, or BadImage.

    Accepted: a path (``str`` or ``os.PathLike``), encoded bytes, a binary file object, a PIL
    image, or a numpy array: HxW gray, HxWx3 colour or HxWx4 colour with alpha (composited onto
    white), uint8 (0-255) or float (0.0-1.0). ``channels`` says how a numpy array's colours are
    ordered: "rgb" (PIL, imageio, matplotlib) or "bgr" (OpenCV's ``cv2.imread``); a BGR array
    read as RGB swaps red and blue and quietly ruins recognition, so it must be said. Files
    and PIL images carry their own colour order.
    """
    return load_picture(photo, channels=channels, max_pixels=max_pixels).image


def _in_memory(photo: object, channels: str, max_pixels: int) -> np.ndarray | bytes:
    """An array, PIL image or file object as RGB pixels, or (a file object) as its bytes."""
    if channels not in ("rgb", "bgr"):
        raise UsageError(f"`channels` must be 'rgb' or 'bgr', not {channels!r}", param="channels")
    if isinstance(photo, np.ndarray):
        return _array_to_rgb(photo, channels == "bgr", max_pixels)
    if isinstance(photo, Image.Image):
        _check_size(photo.size, "<PIL image>", max_pixels)
        try:  # as for files: Image.open leaves the EXIF orientation to the caller
            photo = ImageOps.exif_transpose(photo)
        except Exception:
            pass
        return _to_rgb_array(photo, "<PIL image>")
    if isinstance(photo, io.TextIOBase):
        name = _display(str(getattr(photo, "name", "<file>")))
        raise BadImage(f"{name}: opened in text mode; open photos with 'rb'")
    if callable(getattr(photo, "read", None)):
        name = _display(getattr(photo, "name", "") or "") or "<file object>"
        try:
            data = photo.read()
        except Exception as exc:
            raise BadImage(f"{name}: cannot read ({_one_line(exc)})") from None
        if not isinstance(data, (bytes, bytearray)):
            raise BadImage(f"{name}: read() gave {type(data).__name__}, not bytes")
        return bytes(data)
    raise BadImage(
        f"a {type(photo).__name__} object is not a photo: give a path, bytes, a binary file "
        "object, a PIL image or a numpy array"
    )


def _array_to_rgb(array: np.ndarray, bgr: bool, max_pixels: int) -> np.ndarray:
    """Check and convert an in-memory array; every way it can be wrong is a BadImage."""
    shape = array.shape
    if array.ndim == 3 and shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and shape[2] in (3, 4))):
        raise BadImage(
            f"<array>: shape {shape} is not a photo: expected HxW (gray), HxWx3 (colour) "
            "or HxWx4 (colour and alpha)"
        )
    _check_size((shape[1], shape[0]), "<array>", max_pixels)
    if array.dtype == np.uint8:
        values = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise BadImage("<array>: float photo holds NaN or infinite values")
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise BadImage(
                "<array>: float photos must hold values in [0, 1] "
                f"(this one spans {float(array.min()):g} to {float(array.max()):g}); "
                "scale it, or pass uint8"
            )
        values = np.rint(array * 255.0).astype(np.uint8)
    else:
        raise BadImage(
            f"<array>: dtype {array.dtype} is not supported: pass uint8 or float in [0, 1]"
        )
    if values.ndim == 2:
        return np.ascontiguousarray(np.repeat(values[:, :, None], 3, axis=2))
    if bgr:
        values = values[:, :, [2, 1, 0, 3][: values.shape[2]]]
    if values.shape[2] == 4:
        return _over_white(values)
    # Already what detection takes: used as it is (only read, never written), not copied.
    return np.ascontiguousarray(values)


def _check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise BadImage(
            f"{name}: too many pixels ({width}x{height} = {width * height:,}), "
            f"above the pixel limit of {max_pixels:,}"
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        raise BadImage(
            f"{name}: {width}x{height} is too small to contain a face "
            f"(need at least {MIN_SIDE}x{MIN_SIDE})"
        )


def load_image(
    source: str | os.PathLike[str] | os.PathLike[bytes] | bytes,
    *,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Return an upright HxWx3 uint8 RGB C-contiguous (and writable) array.

    ``source`` is a path (``str`` or ``os.PathLike``) or the encoded file content as
    ``bytes``. A non-UTF-8 file name therefore has to be passed as ``os.fsdecode(name)``
    or a ``pathlib.Path``, never as raw bytes. Raises BadImage for anything unusable.
    """
    opener, name = _opener(source, "load_image")
    return _decode(opener, name, max_pixels)[0]


@dataclass
class Picture:
    """A photo as detection needs it: `image` may be a reduced decode of a large JPEG.

    `scale` is full-resolution pixels per pixel of `image` (1.0: full resolution). A face
    that needs more pixels than `image` has asks `at_scale` for a finer decode.
    """

    image: np.ndarray
    scale: float = 1.0
    _decode: Callable[[int | None], tuple[np.ndarray, int]] | None = field(default=None, repr=False)
    _finer: dict = field(default_factory=dict, repr=False)

    @property
    def full_shape(self) -> tuple[int, int]:
        """(height, width) at full resolution, the coordinates faces are reported in."""
        h, w = self.image.shape[:2]
        return round(h * self.scale), round(w * self.scale)

    def at_scale(self, scale: float) -> tuple[np.ndarray, float]:
        """Pixels at `scale` full-resolution pixels per pixel or finer, and their own scale:
        `image` when it is fine enough, else the coarsest JPEG reduction (1/2, 1/4) that is,
        else the full resolution. Decodes are kept for the next face."""
        if scale >= self.scale or self._decode is None:
            return self.image, self.scale
        long_side = max(self.full_shape)
        reduce_to = math.ceil(long_side / max(scale, 1.0)) if scale > 1.0 else None
        if reduce_to not in self._finer:
            image, full_long = self._decode(reduce_to)
            self._finer[reduce_to] = (image, full_long / max(image.shape[:2]))
        return self._finer[reduce_to]

    def full(self) -> np.ndarray:
        """The full-resolution pixels."""
        return self.at_scale(1.0)[0]


def load_picture(
    source: object,
    *,
    reduce_to: int | None = None,
    max_pixels: int = MAX_PIXELS,
    channels: str = "rgb",
) -> Picture:
    """Like load_photo, but a JPEG whose long side exceeds twice `reduce_to` is decoded at
    1/2, 1/4 or 1/8 size (libjpeg's DCT scaling: Pillow's draft mode), keeping a long side
    of at least `reduce_to`. A 12 MP photo then decodes in about a quarter of the time and
    memory. Arrays and PIL images pass through at full resolution."""
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        source = _in_memory(source, channels, max_pixels)
        if isinstance(source, np.ndarray):
            return Picture(source)
    opener, name = _opener(source, "load_picture")
    image, long_side = _decode(opener, name, max_pixels, reduce_to)
    scale = long_side / max(image.shape[:2])
    if scale == 1.0:
        return Picture(image)
    return Picture(image, scale, lambda side: _decode(opener, name, max_pixels, side))


def _opener(source: object, caller: str) -> tuple[Callable[[], BinaryIO], str]:
    """A way to (re)open the source, and its name for messages; file mistakes raise here."""
    # Another library may have flipped the switch since import; truncation must raise.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = source if isinstance(source, bytes) else bytes(source)
        name = f"<{len(data)} bytes>"
        if len(data) == 0:
            raise BadImage(f"{name}: empty, not an image")
        return (lambda: io.BytesIO(data)), name
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{caller}() takes a path or bytes, not {type(source).__name__}")
    path = os.fspath(source)
    name = _display(path)
    _check_file(path, name)
    return (lambda: open(path, "rb")), name


def _display(path: str | bytes) -> str:
    """Show a file name on one printable line, even if it is not valid UTF-8."""
    text = os.fsdecode(path)
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _one_line(text: object) -> str:
    """Pillow's messages sometimes span lines; ours must not."""
    return " ".join(str(text).split())


def _check_file(path: str | bytes, name: str) -> None:
    """Give the common file-system mistakes their own words before Pillow sees them."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise BadImage(f"{name}: no such file") from None
    except PermissionError:
        raise BadImage(f"{name}: permission denied") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise BadImage(f"{name}: cannot read ({_one_line(reason)})") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadImage(f"{name}: is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise BadImage(f"{name}: not a regular file")
    if info.st_size == 0:
        raise BadImage(f"{name}: empty file, not an image")


def _decode(
    opener: Callable[[], BinaryIO], name: str, max_pixels: int, reduce_to: int | None = None
) -> tuple[np.ndarray, int]:
    """Open, vet the header, then decode; every failure becomes one BadImage.

    Returns the pixels and the full-resolution long side (they differ after a reduced decode).
    """
    try:
        # Pillow warns about what it salvages or suspects (truncated reads, corrupt EXIF,
        # decompression bombs): we either decode the photo or refuse it in our own words.
        with warnings.catch_warnings(), opener() as fp:
            warnings.simplefilter("ignore")
            return _decode_stream(fp, opener, name, max_pixels, reduce_to)
    except BadImage:
        raise
    except PermissionError:
        raise BadImage(f"{name}: permission denied") from None
    except IsADirectoryError:
        raise BadImage(f"{name}: is a directory, not an image file") from None
    except FileNotFoundError:
        raise BadImage(f"{name}: no such file") from None
    except Image.DecompressionBombError as exc:
        # Pillow refuses some headers before we can measure them: say it with our limit.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f" ({int(found.group(1)):,})" if found else ""
        raise BadImage(
            f"{name}: too many pixels{size}, above the pixel limit of {max_pixels:,}"
        ) from None
    except MemoryError:
        raise BadImage(f"{name}: not enough memory to decode the image") from None
    except OSError as exc:
        # Pillow reports truncated and corrupt data as plain OSError.
        text = _one_line(exc)
        if "truncated" in text.lower():
            raise BadImage(f"{name}: truncated image ({text})") from None
        raise BadImage(f"{name}: corrupt image data ({text})") from None
    except Exception as exc:  # fuzzed input makes Pillow raise almost anything
        raise BadImage(
            f"{name}: corrupt image data ({type(exc).__name__}: {_one_line(exc)})"
        ) from None


def _decode_stream(
    fp: BinaryIO,
    opener: Callable[[], BinaryIO],
    name: str,
    max_pixels: int,
    reduce_to: int | None = None,
) -> tuple[np.ndarray, int]:
    head = fp.read(16)
    fp.seek(0)
    is_png = head.startswith(_PNG_SIGNATURE)
    if image_format(head) == "HEIF" and not _enable_heif():
        raise BadImage(
            f"{name}: a HEIC/HEIF photo, which needs the pillow-heif package "
            "(pip install pillow-heif), or convert it to JPEG"
        )
    try:
        # HEIF only once pillow-heif has registered it (Pillow refuses unknown names).
        im = Image.open(fp, formats=[f for f in _FORMATS if f != "HEIF" or f in Image.OPEN])
    except (UnidentifiedImageError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        if is_png:
            # Pillow hides a broken IHDR checksum behind "cannot identify"; say what it is.
            _check_png_crcs(opener, name)
        if isinstance(exc, UnidentifiedImageError):
            raise BadImage(
                f"{name}: not an image, or not a supported format ({_FORMAT_NAMES})"
            ) from None
        raise BadImage(f"{name}: corrupt image header ({_one_line(exc)})") from None

    width, height = im.size
    _check_size(im.size, name, max_pixels)
    if im.format == "PNG":
        # Pillow never checks IDAT checksums, so a flipped bit decodes to wrong pixels.
        _check_png_crcs(opener, name)

    im.seek(0)  # animated GIF / WebP / multi-page TIFF: the first frame only
    long_side = max(width, height)
    if reduce_to and im.format == "JPEG" and long_side >= 2 * reduce_to:
        # libjpeg picks the largest of 1/2, 1/4, 1/8 that keeps the size at least this
        ratio = reduce_to / long_side
        im.draft(None, (math.ceil(width * ratio), math.ceil(height * ratio)))
    im.load()
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block should not cost a good photo
        upright = im
    return _to_rgb_array(upright, name), long_side


def _check_png_crcs(opener: Callable[[], BinaryIO], name: str) -> None:
    """Walk the PNG chunks on a fresh stream and verify every CRC, reading 1 MiB at a time."""
    with opener() as fp:
        if fp.read(len(_PNG_SIGNATURE)) != _PNG_SIGNATURE:
            return
        while True:
            header = fp.read(8)
            if len(header) < 8:
                raise BadImage(f"{name}: truncated image (PNG ends without an IEND chunk)")
            length = int.from_bytes(header[:4], "big")
            kind = header[4:]
            label = kind.decode("latin-1")
            if length > 0x7FFF_FFFF:
                raise BadImage(f"{name}: corrupt PNG (impossible length in {label!r} chunk)")
            crc = zlib.crc32(kind)
            left = length
            while left:
                block = fp.read(min(left, _CRC_BLOCK))
                if not block:
                    raise BadImage(f"{name}: truncated image (PNG {label!r} chunk is cut off)")
                crc = zlib.crc32(block, crc)
                left -= len(block)
            stored = fp.read(4)
            if len(stored) < 4:
                raise BadImage(f"{name}: truncated image (PNG {label!r} chunk is cut off)")
            if int.from_bytes(stored, "big") != crc:
                raise BadImage(f"{name}: corrupt PNG (bad CRC in {label!r} chunk)")
            if kind == b"IEND":
                return


def _to_rgb_array(im: Image.Image, name: str) -> np.ndarray:
    """Bring every Pillow mode to 8-bit RGB the way a viewer would display it."""
    mode = im.mode
    if mode.startswith("I"):
        gray = _int_to_uint8(im)
    elif mode == "F":
        gray = _float_to_uint8(np.asarray(im, dtype=np.float64))
    elif mode == "RGB" and "transparency" not in im.info:
        gray = None
    elif im.has_transparency_data:
        return _over_white(np.asarray(im.convert("RGBA")))
    else:
        try:
            im = im.convert("RGB")
        except ValueError as exc:
            raise BadImage(f"{name}: unsupported colour mode {mode} ({_one_line(exc)})") from None
        gray = None
    if gray is not None:
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        rgb = np.asarray(im, dtype=np.uint8)
    return np.array(rgb, dtype=np.uint8, order="C", copy=True)


def _int_to_uint8(im: Image.Image) -> np.ndarray:
    """Scale by the real bit depth (65535 -> 255), because clipping would turn 16-bit white."""
    values = np.asarray(im.convert("I") if im.mode != "I" else im).astype(np.int64)
    values = np.clip(values, 0, None)
    bits = 16
    if im.mode == "I" and values.size:
        # 32-bit integer images: widen past 16 bits only if the data actually needs it.
        bits = max(16, int(values.max()).bit_length())
    return (values >> (bits - 8)).astype(np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Floats are usually 0..1 (scale up) or already 0..255 (clip); NaN/inf become black/white."""
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """Composite onto white: dropping alpha would expose arbitrary colours under it."""
    rgb = rgba[:, :, :3].astype(np.uint32)
    alpha = rgba[:, :, 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(out.astype(np.uint8))
