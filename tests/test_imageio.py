"""Pin what load_image promises: upright 8-bit RGB for every input, or one BadImage line.

Every fixture is generated here with Pillow so the repository carries no binary files.
"""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageFile

from faceid import imageio
from faceid.errors import BadImage
from faceid.imageio import MAX_PIXELS, SUPPORTED_SUFFIXES, image_format, is_image_path, load_image

RED = (255, 0, 0)
BLUE = (0, 0, 255)


# ---------------------------------------------------------------- helpers


def save(im: Image.Image, path: Path | str | bytes, fmt: str, **kw: object) -> Path | str | bytes:
    with open(path, "wb") as f:
        im.save(f, fmt, **kw)
    return path


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def bad(source: object, *words: str, **kw: object) -> str:
    """Assert load_image refuses ``source`` with one line containing ``words``; return it."""
    with pytest.raises(BadImage) as info:
        load_image(source, **kw)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    message.encode("utf-8")  # printable on any UTF-8 terminal, whatever the file name
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims a size, with valid CRCs, but almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_chunk_offsets(data: bytes) -> dict[bytes, tuple[int, int]]:
    """Map chunk type -> (offset of its length field, payload length)."""
    pos, found = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        found.setdefault(data[pos + 4 : pos + 8], (pos, length))
        pos += 12 + length
    return found


def corner_image(size: tuple[int, int]) -> Image.Image:
    """Blue image with a red block in the top-left corner, big enough to survive JPEG."""
    im = Image.new("RGB", size, BLUE)
    im.paste(RED, (0, 0, 16, 16))
    return im


def is_red(pixel: np.ndarray) -> bool:
    return pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60


def is_blue(pixel: np.ndarray) -> bool:
    return pixel[0] < 60 and pixel[1] < 60 and pixel[2] > 200


def assert_rgb(arr: np.ndarray, height: int, width: int) -> None:
    assert arr.dtype == np.uint8
    assert arr.shape == (height, width, 3)
    assert arr.flags.c_contiguous


# ---------------------------------------------------------------- contract


def test_public_constants_match_the_contract() -> None:
    assert MAX_PIXELS == 120_000_000  # a 108 MP phone photo fits
    assert SUPPORTED_SUFFIXES == frozenset(
        {".heic", ".heif", ".avif"}
        | {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
    )


@pytest.mark.parametrize(
    "name", ["a.jpg", "b.JPEG", "c.Png", "d.bmp", "e.webp", "f.GIF", "g.tif", "h.TIFF"]
)
def test_is_image_path_accepts_supported_suffixes_in_any_case(name: str) -> None:
    assert is_image_path(name)
    assert is_image_path(Path("dir") / name)
    assert is_image_path(os.fsencode(name))


@pytest.mark.parametrize("name", ["notes.txt", "photo", "photo.jpg.txt", "archive.zip", "x.psd"])
def test_is_image_path_rejects_other_suffixes(name: str) -> None:
    assert not is_image_path(name)


def test_is_image_path_handles_non_utf8_names() -> None:
    assert is_image_path(b"\xff\xfe.jpg")
    assert is_image_path(os.fsdecode(b"\xff\xfe.jpg"))


def test_rgb_png_round_trips_pixel_exact_as_a_writable_contiguous_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    path = save(Image.fromarray(pixels), tmp_path / "rgb.png", "PNG")
    arr = load_image(path)
    assert_rgb(arr, 20, 30)
    assert arr.flags.writeable
    np.testing.assert_array_equal(arr, pixels)
    assert np.array_equal(load_image(str(path)), pixels)


def test_non_path_non_bytes_source_is_a_programming_error_not_bad_image() -> None:
    with pytest.raises(TypeError):
        load_image(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------- orientation


def test_exif_orientation_6_jpeg_is_turned_upright(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display = stored rotated 90 degrees clockwise
    path = save(corner_image((64, 32)), tmp_path / "o6.jpg", "JPEG", exif=exif, quality=95)
    arr = load_image(path)
    assert_rgb(arr, 64, 32)  # width and height swapped
    assert is_red(arr[4, 32 - 5])  # stored top-left ends up top-right
    assert is_blue(arr[4, 4])
    assert is_blue(arr[64 - 5, 32 - 5])


def test_exif_orientation_3_jpeg_is_turned_upside_up(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 3  # stored upside down
    path = save(corner_image((64, 32)), tmp_path / "o3.jpg", "JPEG", exif=exif, quality=95)
    arr = load_image(path)
    assert_rgb(arr, 32, 64)  # shape unchanged by a half turn
    assert is_red(arr[32 - 5, 64 - 5])  # top-left ends up bottom-right
    assert is_blue(arr[4, 4])


def test_jpeg_without_exif_orientation_is_left_as_stored(tmp_path: Path) -> None:
    path = save(corner_image((64, 32)), tmp_path / "plain.jpg", "JPEG", quality=95)
    arr = load_image(path)
    assert_rgb(arr, 32, 64)
    assert is_red(arr[4, 4])


# ---------------------------------------------------------------- colour modes


def test_grayscale_png_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    arr = load_image(save(Image.fromarray(gray, "L"), tmp_path / "gray.png", "PNG"))
    assert_rgb(arr, 16, 16)
    for channel in range(3):
        np.testing.assert_array_equal(arr[:, :, channel], gray)


def test_bilevel_image_becomes_black_and_white(tmp_path: Path) -> None:
    im = Image.new("1", (16, 16), 0)
    im.putpixel((3, 3), 1)
    arr = load_image(save(im, tmp_path / "bw.png", "PNG"))
    assert arr[3, 3].tolist() == [255, 255, 255]
    assert arr[0, 0].tolist() == [0, 0, 0]


def test_rgba_transparent_pixels_become_white_not_their_hidden_colour(tmp_path: Path) -> None:
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[:, :] = (10, 20, 30, 255)  # opaque
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black
    rgba[0, 1] = (0, 0, 0, 128)  # half transparent black
    arr = load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png", "PNG"))
    assert_rgb(arr, 16, 16)
    assert arr[0, 0].tolist() == [255, 255, 255]
    assert all(abs(int(v) - 127) <= 1 for v in arr[0, 1])
    assert arr[5, 5].tolist() == [10, 20, 30]


def test_gray_with_alpha_is_composited_onto_white(tmp_path: Path) -> None:
    im = Image.new("LA", (16, 16), (40, 255))
    im.putpixel((2, 2), (0, 0))
    arr = load_image(save(im, tmp_path / "la.png", "PNG"))
    assert arr[2, 2].tolist() == [255, 255, 255]
    assert arr[0, 0].tolist() == [40, 40, 40]


def test_palette_png_with_transparent_index_maps_colours_and_whitens_transparency(
    tmp_path: Path,
) -> None:
    im = Image.new("P", (16, 16), 1)
    im.putpalette([0, 0, 0] + list(RED) + list(BLUE) + [0, 0, 0] * 253)
    im.putpixel((0, 0), 2)
    im.putpixel((1, 0), 0)  # index 0 is declared transparent below
    path = save(im, tmp_path / "pal.png", "PNG", transparency=0)
    arr = load_image(path)
    assert_rgb(arr, 16, 16)
    assert arr[5, 5].tolist() == list(RED)
    assert arr[0, 0].tolist() == list(BLUE)
    assert arr[0, 1].tolist() == [255, 255, 255]


def test_palette_gif_without_transparency_maps_through_the_palette(tmp_path: Path) -> None:
    im = Image.new("P", (16, 16), 1)
    im.putpalette([0, 0, 0] + list(RED) + [0, 0, 0] * 254)
    arr = load_image(save(im, tmp_path / "pal.gif", "GIF"))
    assert arr[8, 8].tolist() == list(RED)


def test_16bit_png_is_scaled_by_bit_depth_not_clipped(tmp_path: Path) -> None:
    values = np.zeros((16, 16), dtype=np.uint16)
    values[0, :4] = [65535, 32768, 256, 255]
    im = Image.fromarray(values)
    assert im.mode == "I;16"
    path = save(im, tmp_path / "deep.png", "PNG")
    assert Image.open(path).mode.startswith("I")  # really stored and reopened as 16-bit
    arr = load_image(path)
    assert_rgb(arr, 16, 16)
    assert arr[0, :4, 0].tolist() == [255, 128, 1, 0]
    assert np.all(arr[0, :4, 0:1] == arr[0, :4, :])


def test_16bit_big_endian_tiff_is_scaled_by_bit_depth(tmp_path: Path) -> None:
    values = np.full((16, 16), 40000, dtype=">u2")
    im = Image.frombytes("I;16B", (16, 16), values.tobytes())
    arr = load_image(save(im, tmp_path / "deep.tif", "TIFF"))
    assert arr[0, 0].tolist() == [40000 >> 8] * 3


def test_16bit_rgb_png_keeps_the_high_byte_of_each_sample() -> None:
    ihdr = struct.pack(">IIBBBBB", 16, 16, 16, 2, 0, 0, 0)  # 16 bits per channel, RGB
    row = b"\x00" + struct.pack(">HHH", 65535, 32768, 256) * 16
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(row * 16))
        + png_chunk(b"IEND", b"")
    )
    assert load_image(data)[0, 0].tolist() == [255, 128, 1]


def test_32bit_integer_image_uses_its_real_range(tmp_path: Path) -> None:
    values = np.zeros((16, 16), dtype=np.int32)
    values[0, 0] = 65535
    values[0, 1] = -5  # negative samples have no meaning as light: black
    arr = load_image(save(Image.fromarray(values, "I"), tmp_path / "int.tif", "TIFF"))
    assert arr[0, 0, 0] == 255 and arr[0, 1, 0] == 0


def test_float_tiff_in_unit_range_is_scaled_to_255(tmp_path: Path) -> None:
    values = np.zeros((16, 16), dtype=np.float32)
    values[0, :3] = [1.0, 0.5, 0.0]
    arr = load_image(save(Image.fromarray(values, "F"), tmp_path / "float.tif", "TIFF"))
    assert_rgb(arr, 16, 16)
    assert arr[0, :3, 0].tolist() == [255, 128, 0]


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    im = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    arr = load_image(save(im, tmp_path / "cmyk.jpg", "JPEG", quality=95))
    assert_rgb(arr, 32, 32)
    assert is_red(arr[16, 16])


@pytest.mark.parametrize(
    ("fmt", "suffix", "kw"),
    [
        ("BMP", ".bmp", {}),
        ("WEBP", ".webp", {"lossless": True}),
        ("TIFF", ".tiff", {}),
        ("PNG", ".png", {}),
    ],
)
def test_lossless_formats_round_trip_exactly(
    tmp_path: Path, fmt: str, suffix: str, kw: dict[str, object]
) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    arr = load_image(save(Image.fromarray(pixels), tmp_path / f"x{suffix}", fmt, **kw))
    np.testing.assert_array_equal(arr, pixels)


def test_animated_gif_yields_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 16), colour) for colour in (RED, (0, 255, 0), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    arr = load_image(path)
    assert_rgb(arr, 16, 20)
    assert np.all(arr == np.array(RED, dtype=np.uint8))


def test_animated_webp_yields_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 16), colour) for colour in (BLUE, RED)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    assert Image.open(path).n_frames == 2
    arr = load_image(path)
    assert_rgb(arr, 16, 20)
    assert np.all(arr == np.array(BLUE, dtype=np.uint8))


def test_content_decides_format_not_the_suffix(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (16, 16), RED), tmp_path / "really_a_png.jpg", "PNG")
    assert load_image(path)[0, 0].tolist() == list(RED)


# ---------------------------------------------------------------- bytes input


def test_encoded_bytes_load_like_the_file(tmp_path: Path) -> None:
    im = corner_image((32, 24))
    data = encode(im, "PNG")
    from_bytes = load_image(data)
    assert_rgb(from_bytes, 24, 32)
    np.testing.assert_array_equal(from_bytes, np.asarray(im))
    np.testing.assert_array_equal(load_image(bytearray(data)), from_bytes)


def test_empty_bytes_are_refused() -> None:
    bad(b"", "empty")


def test_garbage_bytes_are_not_an_image() -> None:
    bad(b"hello, this is not an image at all", "not an image")


# ---------------------------------------------------------------- file-system failures


def test_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    message = bad(tmp_path / "nope.jpg", "no such file")
    assert "nope.jpg" in message


def test_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "photos.jpg"
    folder.mkdir()
    message = bad(folder, "directory")
    assert "photos.jpg" in message


def test_broken_symlink_counts_as_missing(tmp_path: Path) -> None:
    link = tmp_path / "gone.jpg"
    link.symlink_to(tmp_path / "deleted.jpg")
    bad(link, "no such file", "gone.jpg")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_blocking_on_open(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    bad(fifo, "not a regular file")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read a chmod 000 file"
)
def test_unreadable_file_reports_permission_denied(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (16, 16)), tmp_path / "secret.png", "PNG")
    path.chmod(0)
    try:
        bad(path, "permission denied", "secret.png")
    finally:
        path.chmod(0o600)


def test_permission_error_while_opening_becomes_bad_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same as the chmod test, but also runs as root (as in CI containers)."""
    path = save(Image.new("RGB", (16, 16)), tmp_path / "secret.png", "PNG")

    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(imageio, "open", deny, raising=False)
    bad(path, "permission denied", "secret.png")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    bad(path, "empty", "empty.jpg")


def test_text_file_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("Dear diary, today I enrolled my face.\n")
    bad(path, "not an image", "notes.jpg")


# ---------------------------------------------------------------- corrupt data


def test_truncated_jpeg_is_refused_not_padded_with_grey(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    noise = Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    data = encode(noise, "JPEG", quality=90)
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    bad(path, "truncated", "half.jpg")


def test_truncation_is_refused_even_if_another_library_enabled_lenient_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(corner_image((64, 64)), "JPEG")
    bad(data[: len(data) // 2], "truncated")


def test_truncated_png_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")
    bad(data[: len(data) // 2], "truncated")


def test_png_with_corrupted_idat_crc_is_refused(tmp_path: Path) -> None:
    """Pillow itself never checks IDAT CRCs, so this would otherwise decode silently."""
    data = bytearray(encode(corner_image((32, 32)), "PNG"))
    pos, length = png_chunk_offsets(bytes(data))[b"IDAT"]
    data[pos + 8 + length] ^= 0xFF  # first CRC byte
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    bad(path, "CRC", "IDAT", "crc.png")


def test_png_with_flipped_pixel_data_byte_is_refused(tmp_path: Path) -> None:
    data = bytearray(encode(corner_image((32, 32)), "PNG"))
    pos, length = png_chunk_offsets(bytes(data))[b"IDAT"]
    data[pos + 8 + length // 2] ^= 0x01
    bad(bytes(data), "CRC")


def test_png_with_corrupted_ihdr_crc_names_the_crc_problem(tmp_path: Path) -> None:
    data = bytearray(encode(corner_image((32, 32)), "PNG"))
    pos, length = png_chunk_offsets(bytes(data))[b"IHDR"]
    data[pos + 8 + length] ^= 0xFF
    bad(bytes(data), "CRC", "IHDR")


# ---------------------------------------------------------------- size limits


def test_one_pixel_image_is_too_small_to_contain_a_face(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (1, 1)), tmp_path / "dot.png", "PNG")
    bad(path, "too small to contain a face", "dot.png")


@pytest.mark.parametrize("size", [(15, 200), (200, 15)])
def test_images_under_16_pixels_on_either_side_are_too_small(size: tuple[int, int]) -> None:
    bad(encode(Image.new("RGB", size), "PNG"), "too small")


def test_16_by_16_is_just_big_enough() -> None:
    assert_rgb(load_image(encode(Image.new("RGB", (16, 16)), "PNG")), 16, 16)


def test_header_claiming_30000x30000_is_refused_quickly_by_the_pixel_limit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(30_000, 30_000))
    start = time.perf_counter()
    bad(path, "pixel limit", "bomb.png")
    assert time.perf_counter() - start < 2.0


def test_header_just_over_max_pixels_is_refused_by_our_limit_before_decoding() -> None:
    # 12000 x 11000 = 132M: above MAX_PIXELS but below Pillow's own bomb threshold.
    message = bad(png_header_only(12_000, 11_000), "pixel limit")
    assert "120,000,000" in message and "12000x11000" in message


def test_header_between_our_limit_and_pillows_warning_gives_one_message_and_no_warning() -> None:
    # 12000 x 12000 = 144M: above Pillow's warning level (89M), below its error level.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail the test
        message = bad(png_header_only(12_000, 12_000), "pixel limit")
    assert f"{MAX_PIXELS:,}" in message and "89,478,485" not in message


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims another size."""
    data = bytearray(encode(Image.new("RGB", (64, 64)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_jpeg_claiming_60000x60000_quotes_faceids_limit_not_pillows() -> None:
    message = bad(jpeg_claiming(60_000, 60_000), "pixel limit")
    assert f"{MAX_PIXELS:,}" in message and "178,956,970" not in message
    assert "3,600,000,000" in message


def test_formats_are_recognised_by_their_first_bytes() -> None:
    im = Image.new("RGB", (32, 32))
    for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "AVIF"):
        assert image_format(encode(im, fmt)[:16]) == fmt
    assert image_format(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00") == "HEIF"
    assert image_format(b"hello, world") is None
    assert image_format(b"") is None


def test_avif_photos_load() -> None:
    arr = load_image(encode(corner_image((64, 64)), "AVIF", quality=95))
    assert_rgb(arr, 64, 64)
    assert is_red(arr[2, 2]) and is_blue(arr[60, 60])


def test_heic_photos_load_through_pillow_heif(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "IMG_0001.HEIC"
    pillow_heif.from_pillow(corner_image((64, 64))).save(path, quality=95)
    arr = load_image(path)
    assert_rgb(arr, 64, 64)
    assert is_red(arr[2, 2]) and is_blue(arr[60, 60])


def test_heic_without_pillow_heif_is_refused_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import faceid.imageio

    monkeypatch.setattr(faceid.imageio, "_enable_heif", lambda: False)
    bad(b"\x00\x00\x00\x18ftypheic" + bytes(64), "HEIC", "pip install pillow-heif")


def test_max_pixels_argument_lowers_the_limit() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    assert_rgb(load_image(data, max_pixels=10_000), 100, 100)
    bad(data, "pixel limit", max_pixels=9_999)


# ---------------------------------------------------------------- file names


def test_unicode_file_name_loads_and_appears_in_errors(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (16, 16), RED), tmp_path / "Zoë_😀.png", "PNG")
    assert load_image(path)[0, 0].tolist() == list(RED)
    missing = tmp_path / "Zoë_😀_missing.png"
    assert "Zoë_😀_missing.png" in bad(missing, "no such file")


def test_non_utf8_file_name_loads_and_its_error_message_stays_printable(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xff.png"
    save(Image.new("RGB", (16, 16), BLUE), raw, "PNG")
    as_str = os.fsdecode(raw)  # surrogate-escaped str: how os.listdir hands it over
    assert load_image(as_str)[0, 0].tolist() == list(BLUE)
    assert load_image(Path(as_str))[0, 0].tolist() == list(BLUE)

    broken = os.fsencode(tmp_path) + b"/broken\xff.jpg"
    with open(broken, "wb") as f:
        f.write(b"not a jpeg")
    message = bad(os.fsdecode(broken), "not an image")
    assert "broken" in message and "\\udcff" in message


def test_newline_in_file_name_does_not_break_the_one_line_message(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines.jpg"
    path.write_text("text")
    message = bad(path, "not an image")
    assert "two\\nlines.jpg" in message


# ---------------------------------------------------------------- properties


@st.composite
def small_images(draw: st.DrawFn) -> tuple[np.ndarray, str]:
    mode = draw(st.sampled_from(["RGB", "L", "RGBA"]))
    height = draw(st.integers(16, 40))
    width = draw(st.integers(16, 40))
    shape = (height, width) if mode == "L" else (height, width, len(mode))
    return draw(hnp.arrays(np.uint8, shape)), mode


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_images())
def test_any_small_rgb_gray_or_rgba_png_loads_as_uint8_rgb_of_the_same_size(
    image: tuple[np.ndarray, str],
) -> None:
    pixels, mode = image
    arr = load_image(encode(Image.fromarray(pixels, mode), "PNG"))
    assert_rgb(arr, pixels.shape[0], pixels.shape[1])
    if mode == "RGB":
        np.testing.assert_array_equal(arr, pixels)
    elif mode == "L":
        np.testing.assert_array_equal(arr[:, :, 1], pixels)
    else:
        opaque = pixels[:, :, 3] == 255
        np.testing.assert_array_equal(arr[opaque], pixels[opaque][:, :3])


def _seed_files() -> list[bytes]:
    """Small valid files of every format, for the fuzzer to mutate."""
    im = corner_image((16, 16))
    seeds = [
        encode(im, "PNG"),
        encode(im, "JPEG", quality=80),
        encode(im, "GIF"),
        encode(im, "BMP"),
        encode(im, "WEBP"),
        encode(im, "TIFF"),
        encode(Image.new("I;16", (16, 16)), "PNG"),
    ]
    return seeds


_SEEDS = _seed_files()


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), mutated_files()))
def test_arbitrary_bytes_give_an_rgb_array_or_bad_image_never_anything_else(
    data: bytes,
) -> None:
    try:
        arr = load_image(data)
    except BadImage as exc:
        assert "\n" not in str(exc)
        return
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert arr.shape[0] >= 16 and arr.shape[1] >= 16
