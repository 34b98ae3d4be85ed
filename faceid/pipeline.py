"""Photo -> aligned face crops: the stages every verb and the training data share.

Kept apart from the API so that training-data preparation and parallel
enrollment workers run exactly the code inference runs.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np

from faceid.align import TEMPLATE_5PT, align
from faceid.detect import DETECT_SIDE, Detector, DlibHOGDetector, Face, landmarks_in_box
from faceid.detect import DlibHOGDetector as _DlibHOG  # the class itself, for isinstance
from faceid.errors import FaceIDError, ManyFaces, NoFace, UsageError
from faceid.imageio import Picture, load_picture

ON_NO_FACE = ("error", "skip", "full-image")
PICK = ("single", "largest", "center")


class Timings(dict):
    """Seconds spent per stage, summed over calls: a `--timings` breakdown."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t0


def fallback_face(image: np.ndarray) -> Face:
    """A face assumed at the centre of the photo (a portrait or a face crop).

    Used only when the user asks for it (`--on-no-face full-image`): dlib's
    landmark predictor is run inside a central box covering 40% of each side.
    """
    h, w = image.shape[:2]
    box = (int(w * 0.3), int(h * 0.3), int(w * 0.7), int(h * 0.7))
    return Face(box=box, landmarks=landmarks_in_box(image, box), score=float("nan"))


def open_picture(source: object, detector: Detector, channels: str = "rgb") -> Picture:
    """Decode a photo for `detector`: a large JPEG at reduced size (its detection copy is
    shrunk to DETECT_SIDE anyway), anything else at full resolution. `source` is anything
    `imageio.load_picture` takes (a path, bytes, a file object, a PIL image, an array)."""
    side = getattr(detector, "max_side", DETECT_SIDE)
    return load_picture(source, reduce_to=side, channels=channels)


def find_faces(picture: Picture, detector: Detector) -> list[Face]:
    """Faces in full-resolution coordinates, whatever size the picture was decoded at."""
    return [f.scaled(picture.scale) for f in detector.detect(picture.image)]


# Source pixels per crop pixel a face needs: LFW photos, on which the encoder was trained,
# give 1.2-1.6 (5th percentile 1.21). A reduced decode with at least this many is used as is.
ENOUGH_PIXELS = 1.2
_TEMPLATE_EYES = float(np.linalg.norm(TEMPLATE_5PT[[0, 1]].mean(0) - TEMPLATE_5PT[[2, 3]].mean(0)))


def align_face(picture: Picture, face: Face, size: int) -> np.ndarray:
    """The aligned crop, from the coarsest decode that still holds ENOUGH_PIXELS of this face
    per crop pixel (the reduced one for a big face, finer ones up to full resolution for a
    small face in a big photo)."""
    eyes = float(np.linalg.norm(face.landmarks[[0, 1]].mean(0) - face.landmarks[[2, 3]].mean(0)))
    needed = eyes / (ENOUGH_PIXELS * _TEMPLATE_EYES * size)  # full-res pixels per source pixel
    image, scale = picture.at_scale(needed)
    points = face.landmarks if scale == 1.0 else (face.landmarks + 0.5) / scale - 0.5
    return align(image, points, size)


def choose_face(
    faces: list[Face], image: np.ndarray | tuple[int, ...], pick: str, source: str
) -> Face:
    """One face by policy: 'single' refuses several, 'largest' and 'center' choose.

    image: the photo, or its (height, width) at the faces' resolution."""
    if not faces:
        raise NoFace(f"{source}: no face found")
    if pick == "single":
        if len(faces) > 1:
            raise ManyFaces(
                f"{source}: {len(faces)} faces found; choose one with `largest` or crop the photo",
                param="largest",
            )
        return faces[0]
    if pick == "largest":
        return max(faces, key=lambda f: f.area)
    if pick == "center":
        shape = image.shape if isinstance(image, np.ndarray) else image
        cy, cx = shape[0] / 2, shape[1] / 2
        return min(
            faces,
            key=lambda f: (
                ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2
            ),
        )
    raise UsageError(f"unknown `pick` {pick!r}: use one of {', '.join(PICK)}", param="pick")


def describe(photo: object) -> str:
    """How messages and reports name a photo: its path, else what kind of object it is."""
    if isinstance(photo, (str, os.PathLike)):
        return os.fsdecode(photo)
    if isinstance(photo, np.ndarray):
        return "<array>"
    if isinstance(photo, (bytes, bytearray, memoryview)):
        return f"<{len(photo)} bytes>"
    name = getattr(photo, "filename", None) or getattr(photo, "name", None)
    if isinstance(name, (str, os.PathLike)) and os.fspath(name):
        return os.fsdecode(name)
    return f"<{type(photo).__name__}>"


@dataclass
class Crop:
    """One photo's outcome: the aligned crop (or None) and what happened."""

    source: str
    crop: np.ndarray | None
    face: Face | None = None
    status: str = "ok"  # ok | fallback | skipped | error
    error: str = ""
    timings: dict = field(default_factory=dict)
    exception: FaceIDError | None = None
    found: int = 0  # faces the detector found: a choice among several is worth saying

    def raise_error(self) -> None:
        """Re-raise a failure (also one from a worker process) with its own kind."""
        if self.exception is not None:
            raise self.exception


def _load_and_detect(
    source: object, detector: Detector, timings: Timings, channels: str
) -> tuple[Picture, list[Face]]:
    with timings.stage("load"):
        picture = open_picture(source, detector, channels)
    with timings.stage("detect"):
        faces = find_faces(picture, detector)
    return picture, faces


def crop_photo(
    source: object,
    detector: Detector,
    size: int,
    *,
    pick: str = "single",
    on_no_face: str = "error",
    timings: Timings | None = None,
    channels: str = "rgb",
) -> Crop:
    """Load, detect, choose one face and align it; failures become a Crop with status.

    `source` is anything `imageio.load_picture` takes (a path, bytes, an array...).
    """
    timings = timings if timings is not None else Timings()
    if on_no_face not in ON_NO_FACE:
        raise UsageError(
            f"unknown `on_no_face` {on_no_face!r}: use one of {', '.join(ON_NO_FACE)}",
            param="on_no_face",
        )
    name = describe(source)
    try:
        picture, faces = _load_and_detect(source, detector, timings, channels)
        status = "ok"
        if not faces and on_no_face == "skip":
            return Crop(
                name, None, status="skipped", error=f"{name}: no face found", timings=timings
            )
        if not faces and on_no_face == "full-image":
            face, status = fallback_face(picture.full()), "fallback"
        else:
            face = choose_face(faces, picture.full_shape, pick, name)
        with timings.stage("align"):
            crop = align_face(picture, face, size)
        return Crop(name, crop, face, status, timings=timings, found=len(faces))
    except FaceIDError as exc:
        return Crop(name, None, status="error", error=str(exc), timings=timings, exception=exc)


def crop_faces(
    source: object,
    detector: Detector,
    size: int,
    *,
    timings: Timings | None = None,
    channels: str = "rgb",
) -> tuple[list[Face], np.ndarray]:
    """Every face of a photo (largest first) and its aligned crop; NoFace when there is none."""
    timings = timings if timings is not None else Timings()
    picture, faces = _load_and_detect(source, detector, timings, channels)
    if not faces:
        raise NoFace(f"{describe(source)}: no face found")
    with timings.stage("align"):
        crops = np.stack([align_face(picture, f, size) for f in faces])
    return faces, crops


_worker: dict = {}


def resolve_workers(workers: int = 0) -> int:
    """Detection processes for `workers` (0: one per core this process may run on)."""
    if workers > 0:
        return workers
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _init(detector: Detector | tuple[int, int]) -> None:
    import cv2

    cv2.setNumThreads(1)  # one worker per core already
    # (upsample, side) are dlib's HOG detector's settings: built here, as dlib objects do
    # not pickle; anything else is a plugged-in detector sent over.
    _worker["detector"] = DlibHOGDetector(*detector) if isinstance(detector, tuple) else detector


def _for_workers(
    detector: Detector | None, upsample: int, detect_side: int
) -> Detector | tuple[int, int] | None:
    """What worker processes need to build or receive `detector`; None if it cannot travel."""
    if detector is None:
        return (upsample, detect_side)
    if isinstance(detector, _DlibHOG):
        return (detector.upsample, detector.max_side)
    try:
        pickle.dumps(detector)
    except Exception:  # a plugged-in detector that cannot be sent runs in this process
        return None
    return detector


def _run(args: tuple) -> Crop:
    source, size, pick, on_no_face = args
    return crop_photo(source, _worker["detector"], size, pick=pick, on_no_face=on_no_face)


def crop_photos(
    sources: list,
    size: int,
    *,
    upsample: int = 1,
    pick: str = "single",
    on_no_face: str = "error",
    workers: int = 0,
    progress: bool = False,
    detector: Detector | None = None,
    detect_side: int = DETECT_SIDE,
) -> Iterator[Crop]:
    """crop_photo over many photos, in input order, in worker processes when workers > 1.

    `detector` (default: dlib's HOG) is sent to the workers when it can be pickled, else
    detection stays in this process.

    Detection (~20 ms a photo) dominates, so it is what runs in parallel; the
    encoder then takes the crops in batches in the parent process.
    """
    from tqdm import tqdm

    workers = resolve_workers(workers)
    jobs = [(s, size, pick, on_no_face) for s in sources]
    bar = dict(total=len(jobs), desc="detect", unit="photo", disable=not progress)
    init = _for_workers(detector, upsample, detect_side) if workers > 1 and len(jobs) >= 8 else None
    if init is None:
        detector = detector or DlibHOGDetector(upsample, detect_side)
        for job in tqdm(jobs, **bar):
            yield crop_photo(job[0], detector, size, pick=pick, on_no_face=on_no_face)
        return
    # spawn, not fork: the parent may hold torch or OpenCV thread pools, which a forked
    # child can inherit locked and hang on (seen with OpenCV after torch was loaded).
    with get_context("spawn").Pool(workers, _init, (init,)) as pool:
        yield from tqdm(pool.imap(_run, jobs, chunksize=4), **bar)
