"""Issue: bad input never crashes faceid or corrupts a gallery.

Every hostile file, file name and person's name below goes through the real `faceid` command
(in-process, with the tiny untrained model) against a gallery that already holds one person.
A refusal must be exit code 1 and exactly one "faceid: error:" line on stderr, never a
traceback, and must leave every gallery file byte-for-byte as it was. Odd but valid photos
(CMYK, 16-bit, alpha, palette, animation, EXIF rotation, unicode and non-UTF-8 file names) and
unicode names must simply work.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FaceIDRun, Run

KNOWN = "Known Person"


# ---------------------------------------------------------------- helpers


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the body runs longer than `seconds`."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s: faceid hangs on this input")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(gallery: Path) -> dict[str, bytes]:
    """Every gallery file's bytes (the lock file aside): what "unchanged" means."""
    if not gallery.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(gallery.iterdir()) if p.name != ".lock"}


def refused(run: Run, *words: str, codes: tuple[int, ...] = (1,)) -> str:
    """Exit 1 (or one of `codes`), one 'faceid: error:' line, no traceback; returns the line."""
    assert run.code in codes, run
    run.assert_no_traceback()
    assert len(run.stderr_lines) == 1, run
    line = run.stderr_lines[0]
    assert line.startswith("faceid: error: "), run
    for word in words:
        assert word in line, run
    return line


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def write_bytes_path(directory: Path, name: bytes, data: bytes) -> str:
    """Create a file whose name is not valid UTF-8; return it as argv would carry it (PEP 383)."""
    path = os.path.join(os.fsencode(directory), name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return os.fsdecode(path)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def portrait(photos: dict[str, list[Path]]) -> Image.Image:
    with Image.open(photos["Alvaro_Uribe"][1]) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def seeded(
    tiny_model: Path, photos: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A gallery holding KNOWN, enrolled once per module through the API."""
    import torch

    from faceid import FaceID

    path = tmp_path_factory.mktemp("seeded") / "gallery"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        FaceID(gallery=path, model=tiny_model, device="cpu").enroll(
            photos["Amelie_Mauresmo"][0], KNOWN
        )
    finally:
        torch.set_num_threads(threads)
    assert (path / "manifest.json").is_file()
    return path


@pytest.fixture
def known_gallery(seeded: Path, gallery: Path) -> dict[str, bytes]:
    """This test's gallery: a copy of the seeded one. Returns its files' bytes."""
    shutil.copytree(seeded, gallery)
    return snapshot(gallery)


def _empty(d: Path, im: Image.Image) -> str:
    (d / "empty.jpg").write_bytes(b"")
    return str(d / "empty.jpg")


def _text_named_jpg(d: Path, im: Image.Image) -> str:
    (d / "notes.jpg").write_text("this is not a photo\n")
    return str(d / "notes.jpg")


def _truncated_jpeg(d: Path, im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    (d / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return str(d / "truncated.jpg")


def _png_bad_crc(d: Path, im: Image.Image) -> str:
    data = bytearray(png_bytes(im))
    at = data.index(b"IDAT") + 200  # a flipped bit inside the pixel data, CRC left as it was
    data[at] ^= 0x01
    (d / "badcrc.png").write_bytes(bytes(data))
    return str(d / "badcrc.png")


def _one_pixel(d: Path, im: Image.Image) -> str:
    Image.new("RGB", (1, 1), (200, 150, 120)).save(d / "onepixel.png")
    return str(d / "onepixel.png")


def _png_header(d: Path, name: str, side: int) -> str:
    """A tiny PNG whose header claims side x side RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    data += chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    (d / name).write_bytes(data)
    return str(d / name)


def _png_claims_30000x30000(d: Path, im: Image.Image) -> str:
    return _png_header(d, "bomb.png", 30000)  # Pillow's own bomb check refuses this one


def _png_claims_8000x8000(d: Path, im: Image.Image) -> str:
    return _png_header(d, "bomb64mp.png", 8000)  # under Pillow's limit, over faceid's 40 MP


def _directory(d: Path, im: Image.Image) -> str:
    (d / "folder.jpg").mkdir()
    return str(d / "folder.jpg")


def _missing(d: Path, im: Image.Image) -> str:
    return str(d / "missing.jpg")


def _non_utf8_name(d: Path, im: Image.Image) -> str:
    return write_bytes_path(d, b"nonutf8_\xff.jpg", b"garbage, not a JPEG at all")


def _symlink_loop(d: Path, im: Image.Image) -> str:
    (d / "selfloop.jpg").symlink_to("selfloop.jpg")
    return str(d / "selfloop.jpg")


def _fifo(d: Path, im: Image.Image) -> str:
    os.mkfifo(d / "namedpipe.jpg")
    return str(d / "namedpipe.jpg")


# id -> (builder, a word the one error line must contain: the file's name)
BAD_FILES: dict[str, tuple[Callable[[Path, Image.Image], str], str]] = {
    "empty-file": (_empty, "empty.jpg"),
    "text-file-named-jpg": (_text_named_jpg, "notes.jpg"),
    "truncated-jpeg": (_truncated_jpeg, "truncated.jpg"),
    "png-with-bad-crc": (_png_bad_crc, "badcrc.png"),
    "one-by-one-pixel": (_one_pixel, "onepixel.png"),
    "png-header-claims-30000x30000": (_png_claims_30000x30000, "bomb.png"),
    "png-header-claims-8000x8000": (_png_claims_8000x8000, "bomb64mp.png"),
    "directory-instead-of-file": (_directory, "folder.jpg"),
    "missing-file": (_missing, "missing.jpg"),
    "non-utf8-file-name": (_non_utf8_name, "nonutf8_"),
    "symlink-to-itself": (_symlink_loop, "selfloop.jpg"),
    "named-pipe": (_fifo, "namedpipe.jpg"),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, portrait: Image.Image) -> dict[str, str]:
    d = tmp_path_factory.mktemp("hostile")
    return {case: build(d, portrait) for case, (build, _) in BAD_FILES.items()}


# ---------------------------------------------------------------- bad files are refused


def _commands(case: str) -> list[str]:
    # A directory given to enroll is a folder of photos, which has its own tests.
    return (
        ["verify", "identify"]
        if case == "directory-instead-of-file"
        else [
            "enroll",
            "verify",
            "identify",
        ]
    )


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize(
    ("case", "command"),
    [pytest.param(c, cmd, id=f"{cmd}-{c}") for c in BAD_FILES for cmd in _commands(c)],
)
def test_bad_file_is_refused_in_one_line_and_the_gallery_is_untouched(
    faceid_run: FaceIDRun,
    bad_files: dict[str, str],
    known_gallery: dict[str, bytes],
    gallery: Path,
    face: Path,
    case: str,
    command: str,
    as_json: bool,
) -> None:
    bad = bad_files[case]
    args = {
        "enroll": ["enroll", bad, "--name", "Intruder"],
        "verify": ["verify", bad, face],
        "identify": ["identify", bad],
    }[command]
    with deadline(30):
        run = faceid_run(*args, *(["--json"] if as_json else []))
    refused(run, BAD_FILES[case][1])
    if as_json:
        data = run.json()
        if command == "enroll":
            assert data["enrolled"] == [] and len(data["failed"]) == 1, run
        else:
            assert data["kind"] == "BadImage", run
    assert snapshot(gallery) == known_gallery
    assert len(snapshot(gallery)) > 1  # the copy really is a gallery


def test_bad_file_as_the_second_photo_of_verify_is_refused_too(
    faceid_run: FaceIDRun, bad_files: dict[str, str], face: Path
) -> None:
    refused(faceid_run("verify", face, bad_files["truncated-jpeg"]), "truncated.jpg")


def test_enroll_of_good_and_bad_files_enrolls_the_good_and_reports_each_bad_one_once(
    faceid_run: FaceIDRun, bad_files: dict[str, str], known_gallery: dict[str, bytes], face: Path
) -> None:
    bad = [bad_files[c] for c in ("empty-file", "png-with-bad-crc", "missing-file")]
    # --allow-duplicates: the known gallery holds this very face already
    run = faceid_run(
        "enroll", bad[0], face, *bad[1:], "--name", "Mixed", "--json", "--allow-duplicates"
    )
    assert run.code == 0, run
    run.assert_no_traceback()
    data = run.json()
    assert [r["source"] for r in data["enrolled"]] == [str(face)]
    assert [r["source"] for r in data["failed"]] == bad
    assert run.stderr_lines == [], run  # in the report once, not repeated as warnings
    people = faceid_run("list", "--json").json()["people"]
    assert people == {KNOWN: 1, "Mixed": 1}


def test_enroll_of_an_empty_folder_is_a_usage_error_and_writes_nothing(
    faceid_run: FaceIDRun, known_gallery: dict[str, bytes], gallery: Path, tmp_path: Path
) -> None:
    (tmp_path / "nothing-here").mkdir()
    refused(faceid_run("enroll", tmp_path / "nothing-here"), "no photos", codes=(2,))
    assert snapshot(gallery) == known_gallery


# ---------------------------------------------------------------- odd but valid photos work


def _cmyk_jpeg(d: Path, im: Image.Image) -> Path:
    im.convert("CMYK").save(d / "cmyk.jpg", quality=95)
    assert Image.open(d / "cmyk.jpg").mode == "CMYK"
    return d / "cmyk.jpg"


def _png_16_bit(d: Path, im: Image.Image) -> Path:
    gray = np.asarray(im.convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray).save(d / "gray16.png")
    assert Image.open(d / "gray16.png").mode.startswith("I")
    return d / "gray16.png"


def _rgba_png(d: Path, im: Image.Image) -> Path:
    rgba = im.convert("RGBA")
    rgba.putalpha(Image.new("L", im.size, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # some real transparency
    rgba.save(d / "rgba.png")
    return d / "rgba.png"


def _paletted_png(d: Path, im: Image.Image) -> Path:
    im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(d / "palette.png")
    assert Image.open(d / "palette.png").mode == "P"
    return d / "palette.png"


def _animated_gif(d: Path, im: Image.Image) -> Path:
    # Only the first frame has a face: the loader must use that one.
    blank = Image.new("RGB", im.size, (128, 128, 128))
    im.save(d / "animated.gif", save_all=True, append_images=[blank], duration=100, loop=0)
    assert Image.open(d / "animated.gif").n_frames == 2
    return d / "animated.gif"


def _unicode_name(d: Path, im: Image.Image) -> Path:
    im.save(d / "Zoë_😀.jpg", quality=95)
    return d / "Zoë_😀.jpg"


GOOD_FILES: dict[str, Callable[[Path, Image.Image], Path]] = {
    "cmyk-jpeg": _cmyk_jpeg,
    "16-bit-png": _png_16_bit,
    "rgba-png": _rgba_png,
    "paletted-png": _paletted_png,
    "animated-gif": _animated_gif,
    "unicode-file-name": _unicode_name,
}


@pytest.fixture(scope="module")
def good_files(tmp_path_factory: pytest.TempPathFactory, portrait: Image.Image) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("odd-but-valid")
    return {case: build(d, portrait) for case, build in GOOD_FILES.items()}


@pytest.mark.parametrize("case", GOOD_FILES)
def test_odd_but_valid_photo_is_enrolled_verified_and_identified(
    faceid_run: FaceIDRun, good_files: dict[str, Path], known_gallery: dict[str, bytes], case: str
) -> None:
    photo = good_files[case]
    run = faceid_run("enroll", photo, "--name", "Odd", "--json")
    assert run.code == 0, run
    assert run.stderr == ""
    assert [r["source"] for r in run.json()["enrolled"]] == [str(photo)]
    assert faceid_run("list", "--json").json()["people"] == {KNOWN: 1, "Odd": 1}
    # the same file again is the same face: distance 0 for any model
    data = faceid_run("verify", photo, photo, "--json").json()
    assert data["same"] is True
    [hit] = faceid_run("identify", photo, "--json").json()["faces"]
    assert hit["name"] == "Odd" and hit["distance"] == pytest.approx(0, abs=1e-5)


def test_non_utf8_file_name_with_a_face_works_and_round_trips_through_json(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    real = photos["Carlos_Moya"][0]
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = write_bytes_path(folder, b"caf\xe9_latin1.jpg", real.read_bytes())
    run = faceid_run("enroll", photo, "--name", "Latin", "--json")
    assert run.code == 0, run
    [row] = run.json()["enrolled"]
    assert os.fsencode(row["source"]) == os.fsencode(photo)  # \udce9 in JSON gives the bytes back
    same = faceid_run("verify", photo, real, "--json")
    assert same.code == 0 and same.json()["distance"] < 1e-4, same
    text = faceid_run("identify", photo)
    assert text.code == 0 and text.stdout.startswith("Latin"), text
    # a folder holding it: the scan must pick it up as well
    run = faceid_run("enroll", folder, "--name", "Latin", "--json")
    assert run.code == 1, run  # the same face again: refused, naming the file it came from
    [dup] = run.json()["duplicates"]
    assert os.fsencode(dup["source"]) == os.fsencode(photo)
    run = faceid_run("enroll", folder, "--name", "Latin", "--json", "--allow-duplicates")
    assert run.code == 0, run
    assert faceid_run("list", "--json").json()["people"] == {"Latin": 2}


def test_non_utf8_name_of_a_photo_without_a_face_is_one_error_line_even_with_json(
    faceid_run: FaceIDRun, no_face_photo: Path, face: Path, tmp_path: Path
) -> None:
    photo = write_bytes_path(tmp_path, b"grey_\xff.png", no_face_photo.read_bytes())
    for args in (["verify", photo, face], ["identify", photo], ["embed", photo]):
        run = faceid_run(*args, "--json")
        refused(run, "no face")
        assert json.loads(run.stdout)["kind"] == "NoFace"


# ---------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize(
    ("orientation", "stored_as", "fmt"),
    [
        pytest.param(6, Image.Transpose.ROTATE_90, "JPEG", id="jpeg-orientation-6-rotate-cw"),
        pytest.param(8, Image.Transpose.ROTATE_270, "JPEG", id="jpeg-orientation-8-rotate-ccw"),
        pytest.param(3, Image.Transpose.ROTATE_180, "JPEG", id="jpeg-orientation-3-upside-down"),
        pytest.param(6, Image.Transpose.ROTATE_90, "PNG", id="png-orientation-6-lossless"),
    ],
)
def test_exif_rotated_photo_is_turned_upright_and_enrolled(
    faceid_run: FaceIDRun,
    portrait: Image.Image,
    photos: dict[str, list[Path]],
    tmp_path: Path,
    orientation: int,
    stored_as: Image.Transpose,
    fmt: str,
) -> None:
    pixels = portrait.transpose(stored_as)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = orientation  # how to display it: upright == the original
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    options = {"quality": 95} if fmt == "JPEG" else {}
    rotated = tmp_path / f"rotated{suffix}"
    pixels.save(rotated, fmt, exif=exif.tobytes(), **options)
    bare = tmp_path / f"bare{suffix}"
    pixels.save(bare, fmt, **options)
    # control: without the tag the face is sideways and HOG finds nothing
    refused(faceid_run("enroll", bare, "--name", "Sideways"), "no face")

    run = faceid_run("enroll", rotated, "--name", "Upright", "--json")
    assert run.code == 0, run
    assert faceid_run("list", "--json").json()["people"] == {"Upright": 1}
    data = faceid_run("verify", rotated, photos["Alvaro_Uribe"][1], "--json").json()
    # Lossless: the very same face crop. JPEG re-encoding the turned pixels moves the untrained
    # model's embedding by ~0.1, another person's photo is ~1 away.
    assert data["distance"] < (1e-4 if fmt == "PNG" else 0.3)


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="only-spaces"),
        pytest.param("x" * 300, id="300-characters"),
        pytest.param("Ann/Smith", id="slash"),
        pytest.param("Ann\\Smith", id="backslash"),
        pytest.param("Ann\nSmith", id="newline"),
        pytest.param("Ann\x07Smith", id="bell-control-char"),
        pytest.param("Ann\tSmith", id="tab"),
        pytest.param("Ann\u202eSmith", id="right-to-left-override"),
        pytest.param("Ann\u200bSmith", id="zero-width-space"),
    ],
)
def test_bad_name_is_refused_in_one_line_and_the_gallery_is_untouched(
    faceid_run: FaceIDRun, known_gallery: dict[str, bytes], gallery: Path, face: Path, name: str
) -> None:
    refused(faceid_run("enroll", face, "--name", name), codes=(1, 2))
    refused(faceid_run("rename", KNOWN, name), codes=(1, 2))
    assert snapshot(gallery) == known_gallery


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        pytest.param("Zoë Ångström", "Zoë Ångström", id="latin-accents"),
        pytest.param("李小龍", "李小龍", id="cjk"),
        pytest.param("Zoe\u0308 A\u030angstro\u0308m", "Zoë Ångström", id="decomposed-to-nfc"),
        pytest.param("  Padded  ", "Padded", id="surrounding-spaces"),
    ],
)
def test_unicode_name_round_trips_through_list_and_identify(
    faceid_run: FaceIDRun, face: Path, given: str, stored: str
) -> None:
    run = faceid_run("enroll", face, "--name", given, "--json")
    assert run.code == 0, run
    assert run.json()["enrolled"][0]["name"] == stored
    assert faceid_run("list", "--json").json() == {"people": {stored: 1}, "count": 1}
    assert faceid_run("list").stdout == f"{stored}\t1\n"
    [hit] = faceid_run("identify", face, "--json").json()["faces"]
    assert hit["name"] == stored
    assert faceid_run("remove", given, "--json").json()["embeddings"] == 1


# ---------------------------------------------------------------- folders


def test_symlink_loops_in_an_enroll_folder_neither_hang_nor_crash(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    root = tmp_path / "people"
    ann = root / "Ann"
    ann.mkdir(parents=True)
    for f in photos["Amelie_Mauresmo"]:
        shutil.copyfile(f, ann / f.name)
    (ann / "loop").symlink_to("..")  # Ann/loop/Ann/loop/...
    (ann / "self.jpg").symlink_to("self.jpg")  # a photo name that loops on itself
    (root / "again").symlink_to(".")  # the top folder inside itself
    with deadline(30):
        run = faceid_run("enroll", root, "--json")
    assert run.code == 0, run
    run.assert_no_traceback()
    enrolled = run.json()["enrolled"]
    assert sorted(Path(r["source"]).name for r in enrolled) == [
        f.name for f in photos["Amelie_Mauresmo"]
    ]
    assert faceid_run("list", "--json").json()["people"] == {"Ann": 2}


# ---------------------------------------------------------------- embed --from lists


def test_embed_from_a_list_with_a_non_utf8_path_embeds_it(
    faceid_run: FaceIDRun, face: Path, tmp_path: Path
) -> None:
    photo = write_bytes_path(tmp_path, b"caf\xe9.jpg", face.read_bytes())
    listing = tmp_path / "list.txt"
    listing.write_bytes(os.fsencode(photo) + b"\r\n\r\n" + os.fsencode(face) + b"\n")
    run = faceid_run("embed", "--from", listing, "--json")
    assert run.code == 0, run
    data = run.json()
    assert [os.fsencode(f["source"]) for f in data["files"]] == [
        os.fsencode(photo),
        os.fsencode(face),
    ]
    assert np.allclose(data["embeddings"][0], data["embeddings"][1], atol=1e-5)


def test_embed_from_a_binary_file_is_one_error_line(faceid_run: FaceIDRun, face: Path) -> None:
    # Every "line" of a JPEG is a nonsense path (some with NUL bytes): refused, not crashed.
    # --workers 1: dozens of paths would otherwise start a fork() pool inside this test process,
    # whose torch/OpenMP threads make fork unsafe (it hung here once; see the report).
    with deadline(60):
        refused(faceid_run("embed", "--from", face, "--json", "--workers", "1"))


# ---------------------------------------------------------------- index factories


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param("NotAFactory", id="unparsable"),
        pytest.param("IDMap,Flat", id="idmap-added-by-faceid"),
        pytest.param("PQ3", id="does-not-divide-128"),
        pytest.param("   ", id="blank"),
    ],
)
def test_unusable_index_factory_for_a_new_gallery_is_one_error_line_and_no_gallery(
    faceid_run: FaceIDRun, face: Path, gallery: Path, factory: str
) -> None:
    refused(faceid_run("enroll", face, "--name", "Ann", "--index", factory), codes=(1, 2))
    assert not (gallery / "manifest.json").exists()
