"""The verbs: enroll, verify, identify, embed, and gallery housekeeping.

`FaceID` wires the stages (load -> detect -> align -> encode -> gallery) and
nothing else; each stage lives in its own module. The encoder and detector are
loaded on first use, so constructing a FaceID (or running `faceid list`) is cheap.

    >>> from faceid import FaceID
    >>> fid = FaceID()  # the default gallery: $FACEID_GALLERY or the user's data folder
    >>> fid.enroll("ada.jpg", "Ada Lovelace")
    >>> fid.verify("a.jpg", "b.jpg").same
    >>> fid.identify("group.jpg", all_faces=True)

Photos may be paths, bytes, binary file objects, PIL images or numpy arrays (see
`faceid.imageio.load_photo`). Every failure is a `FaceIDError` subclass whose message
names this API's parameters in backquotes, never command-line flags.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from faceid.detect import DETECT_SIDE
from faceid.distance import MAX_DISTANCE, squared_l2
from faceid.distance import ratio as ratio_score
from faceid.errors import Duplicate, FaceIDError, ModelError, NoGallery, UsageError
from faceid.locations import default_gallery_path, gallery_location, is_url
from faceid.openset import Rule
from faceid.pipeline import Crop, Timings, crop_faces, crop_photo, crop_photos, describe

if TYPE_CHECKING:
    from faceid.detect import Detector

# New galleries search exactly until they hold this many faces, then switch to HNSW: around
# 100k a flat search costs ~2 ms a query on two cores and grows linearly, while HNSW stays
# well under 2 ms at 1M with recall@1 >= 0.99 (scripts/benchmark.py measures both).
DEFAULT_INDEX_SWITCH = 100_000
# A path, encoded bytes, a binary file object, a PIL image or a numpy array (gray, RGB or
# RGBA; uint8 or float in [0, 1]); arrays from OpenCV need channels="bgr".
Photo = Any


def _whole(value: Any, param: str, minimum: int, maximum: int | None = None) -> int:
    """An int parameter in range, or a UsageError naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise UsageError(f"`{param}` must be a whole number {bound}, not {value!r}", param=param)
    return value


def check_threshold(threshold: float | None) -> None:
    """A threshold override must be a squared distance between unit vectors: 0 to 4."""
    if threshold is not None and not (
        isinstance(threshold, (int, float))
        and not isinstance(threshold, bool)
        and math.isfinite(threshold)
        and 0 <= threshold <= MAX_DISTANCE
    ):
        raise UsageError(
            f"`threshold` must be a number from 0 to {MAX_DISTANCE:g} (a squared distance "
            f"between unit vectors), not {threshold!r}",
            param="threshold",
        )


@dataclass
class Verification:
    """The verdict, and which face of each photo it is about.

    faces: for photos a and b, the box used, as (left, top, right, bottom) pixels of the
    upright photo, and how many faces the photo has (with `largest`: the largest was used).
    """

    same: bool
    distance: float
    threshold: float
    faces: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "same": self.same,
            "distance": round(self.distance, 6),
            "threshold": self.threshold,
            "faces": self.faces,
        }


@dataclass
class Identification:
    """One face of a probe photo: its box and the nearest people, best first.

    box: (left, top, right, bottom) in pixels of the upright photo.
    """

    box: tuple[int, int, int, int]
    matches: list[dict]
    threshold: float
    rule: Rule | None = None  # how the threshold was chosen (see FaceID.identify_rule)
    second: float | None = None  # the next person's distance (None: nobody else in reach)

    @property
    def name(self) -> str:
        """The best match the rule accepts (within the distance threshold, or, for the ratio
        test, clearly closer than the next person), or 'unknown'."""
        if not self.matches:
            return "unknown"
        closest = self.matches[0]["distance"]
        rule = self.rule or Rule(self.threshold, "threshold")
        return self.matches[0]["name"] if rule.names(closest, self.second) else "unknown"

    @property
    def distance(self) -> float | None:
        return self.matches[0]["distance"] if self.matches else None

    @property
    def ratio(self) -> float | None:
        """Closest / next person's distance: the ratio test's score (None with one person)."""
        if not self.matches or self.second is None:
            return None
        return round(float(ratio_score(self.matches[0]["distance"], self.second)), 6)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "distance": self.distance,
            "ratio": self.ratio,
            "threshold": self.threshold,
            "rule": None if self.rule is None else self.rule.to_dict(),
            "box": list(self.box),
            "matches": self.matches,
        }


@dataclass
class EnrollReport:
    """What an enrollment did, photo by photo: nothing is dropped without a line here."""

    enrolled: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # read, but no usable face
    skipped: list[dict] = field(default_factory=list)  # left out unread: hidden, not an image
    duplicates: list[dict] = field(default_factory=list)  # already enrolled, or someone else
    index_switched: str | None = None  # the factory a write switched the gallery's index to
    # (factory, faces): the index asked for needs training; exact search until that many faces
    index_deferred: tuple[str, int] | None = None

    def to_dict(self) -> dict:
        data = {
            "enrolled": self.enrolled,
            "failed": self.failed,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
        }
        if self.index_switched:
            data["index_switched"] = self.index_switched
        if self.index_deferred:
            factory, faces = self.index_deferred
            data["index_deferred"] = {"index": factory, "until_faces": faces}
        return data


@dataclass
class DoctorReport:
    """What `FaceID.doctor` found, and what it repaired."""

    gallery: str
    problems: list[str]
    repaired: list[str]
    healthy: bool
    rule: Rule | None = None  # identify's threshold for this gallery, when the model loads
    note: str | None = None  # why there is no rule

    def to_dict(self) -> dict:
        return {
            "gallery": self.gallery,
            "problems": self.problems,
            "repaired": self.repaired,
            "healthy": self.healthy,
            "rule": None if self.rule is None else self.rule.to_dict(),
        }


class FaceID:
    """Face verification and recognition over one model and one gallery.

    threshold: overrides the model's calibrated squared-L2 thresholds (verification's and
    the stricter one identification uses); from 0 to 4, the range of squared distances
    between unit vectors.
    upsample: HOG detector upsampling (1 finds faces down to ~40 px).
    detect_side: detection runs on a copy of at most this long side (faces down to 1/20 of
    it are found in larger photos); raise it to find smaller faces in big photos, at a cost.
    index: FAISS factory string of a gallery this object creates ("Flat": exact).
    index_switch: rebuild the index as `approx_index` (default HNSW32) once the gallery holds
    more than this many faces (0: never); recorded in the gallery. None keeps what the gallery
    records, and gives a new gallery DEFAULT_INDEX_SWITCH.
    detector: any object with `detect(rgb_uint8_image) -> list[faceid.detect.Face]` (the
    `faceid.detect.Detector` protocol) instead of dlib's HOG detector. Parallel enrollment
    sends it to worker processes when it can be pickled, else detects in this process.
    """

    def __init__(
        self,
        gallery: str | os.PathLike | None = None,
        model: str | os.PathLike | None = None,
        *,
        threshold: float | None = None,
        device: str = "auto",
        upsample: int = 1,
        detect_side: int | None = None,
        index: str = "Flat",
        index_switch: int | None = None,
        approx_index: str | None = None,
        detector: Detector | None = None,
    ) -> None:
        check_threshold(threshold)
        if not isinstance(index, str) or not index.strip():
            raise UsageError(
                "`index` must be a FAISS index factory string, e.g. Flat or HNSW32", param="index"
            )
        if index_switch is not None and index_switch < 0:
            raise UsageError("`index_switch` must be 0 (never) or more", param="index_switch")
        for param, value in (("gallery", gallery), ("model", model)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise UsageError(
                    f"`{param}` must be a path, not a {type(value).__name__}", param=param
                )
        _whole(upsample, "upsample", 0, 4)
        if detect_side is not None:
            _whole(detect_side, "detect_side", 64)
        self.gallery_path = (
            gallery_location(gallery) if gallery is not None else default_gallery_path()
        )
        self.model_path = model
        self.device = device
        self.upsample = upsample
        self.detect_side = detect_side
        self.index = index.strip()
        self.index_switch = index_switch
        self.approx_index = approx_index
        self._threshold = threshold
        self._encoder = None
        self._detector = detector
        self._gallery = None
        # (factory, faces): a new gallery asked for an index that must be trained first, and
        # searches exactly until it holds that many faces.
        self.index_deferred: tuple[str, int] | None = None
        self.timings = Timings()

    # -- lazily built stages -------------------------------------------------
    @property
    def encoder(self):
        if self._encoder is None:
            from faceid.model.encoder import Encoder

            with self.timings.stage("load_model"):
                self._encoder = Encoder.load(self.model_path, self.device)
        return self._encoder

    @property
    def detector(self):
        if self._detector is None:
            from faceid.detect import DETECT_SIDE, DlibHOGDetector

            with self.timings.stage("load_detector"):
                self._detector = DlibHOGDetector(self.upsample, self.detect_side or DETECT_SIDE)
        return self._detector

    @property
    def gallery(self):
        if self._gallery is None:
            from faceid.gallery import GalleryBackend, training_size
            from faceid.gallery.locate import open_gallery as open_location

            model_id = self.encoder.model_id

            def open_gallery(
                factory: str, switch: int | None, approx: str | None
            ) -> GalleryBackend:
                return open_location(
                    self.gallery_path,
                    model_id=model_id,
                    index_factory=factory,
                    auto_switch=switch,
                    approx_factory=approx,
                    search_device=self.encoder.device,
                )

            gallery = open_gallery(self.index, self.index_switch, self.approx_index)
            if not gallery.exists:
                need = training_size(self.index)
                if need:  # e.g. IVF: exact until there are enough faces to train it
                    self.index_deferred = (self.index, need)
                    gallery = open_gallery("Flat", need - 1, self.index)
                elif self.index_switch is None:
                    gallery = open_gallery(self.index, DEFAULT_INDEX_SWITCH, self.approx_index)
            self._gallery = gallery
        return self._gallery

    @property
    def gallery_label(self) -> str:
        """The gallery as messages name it: a folder, or a database URL without its password."""
        from faceid.gallery.postgres import redact

        return redact(self.gallery_path) if is_url(self.gallery_path) else str(self.gallery_path)

    @property
    def threshold(self) -> float:
        return self._threshold if self._threshold is not None else self.encoder.threshold

    @property
    def identify_threshold(self) -> float:
        """Identification's threshold: stricter than verification's, because a stranger
        gets one chance to be mistaken for each enrolled person."""
        if self._threshold is not None:
            return self._threshold
        return self.encoder.identify_threshold

    @property
    def threshold_overridden(self) -> bool:
        """True when `threshold` was given: the model's calibrated thresholds are not in force."""
        return self._threshold is not None

    def _naming_threshold(self) -> float:
        """The distance within which identify would name someone in this gallery now."""
        from faceid import openset

        people = len(self.gallery.people()) if self.gallery.exists else 0
        rule = self.identify_rule(None, people)
        if rule.score == "ratio":  # a bound on a ratio, not a distance: the distance rule's
            return openset.threshold_for_fpir(self.encoder.openset, max(1, people))
        return rule.threshold

    def identify_rule(self, fpir: float | None = None, n_people: int | None = None) -> Rule:
        """The identification threshold for this gallery, and why.

        With an open-set calibration in the model, the threshold that gives `fpir` (default
        1 %) of strangers a name among the gallery's n_people (default: as many as it holds
        now), with the estimated share of enrolled people missed and a warning when the
        gallery is too large for the target. A `threshold` given to FaceID overrides it;
        models without a calibration use their stored identification threshold.
        """
        from faceid import openset

        if fpir is not None and (
            isinstance(fpir, bool) or not isinstance(fpir, (int, float)) or not 0.0 < fpir < 1.0
        ):
            raise UsageError(f"`fpir` must be a rate between 0 and 1, not {fpir!r}", param="fpir")
        if self._threshold is not None:
            if fpir is not None:
                raise UsageError(
                    "`threshold` and `fpir` contradict each other: give one",
                    param=("threshold", "fpir"),
                )
            return Rule(self._threshold, "threshold")
        calibration = self.encoder.openset
        if calibration is None:
            if fpir is not None:
                raise UsageError(
                    "this model has no open-set calibration, so `fpir` cannot be used: give a "
                    "`threshold`, or add one with scripts/validate.py --write-openset",
                    param="fpir",
                )
            return Rule(self.encoder.identify_threshold, "model")
        if n_people is None:
            n_people = len(self.people())
        target = openset.DEFAULT_FPIR if fpir is None else fpir
        try:
            return openset.rule_for(calibration, max(1, n_people), target)
        except ValueError as exc:
            raise UsageError(str(exc).replace("fpir", "`fpir`", 1), param="fpir") from None

    # -- embeddings ------------------------------------------------------------
    def _crop(
        self, photo: Photo, pick: str = "single", on_no_face: str = "error", channels: str = "rgb"
    ) -> Crop:
        # Both built before the stages start, so their own stages are not counted twice.
        detector, size = self.detector, self.encoder.input_size
        result = crop_photo(
            photo,
            detector,
            size,
            pick=pick,
            on_no_face=on_no_face,
            timings=self.timings,
            channels=channels,
        )
        result.raise_error()
        return result

    def _encode(self, crops: np.ndarray, threads: int | None = None) -> np.ndarray:
        with self.timings.stage("embed"):
            return self.encoder.embed(crops, threads=threads)

    def embed(self, photo: Photo, *, largest: bool = False, channels: str = "rgb") -> np.ndarray:
        """The 128-d unit embedding of the one face in a photo (or the largest).

        channels: "bgr" for arrays from OpenCV (`cv2.imread`): read as RGB, their red and
        blue are swapped and the face matches no one.
        """
        crop = self._crop(photo, "largest" if largest else "single", channels=channels)
        return self._encode(crop.crop[None])[0]

    def embed_many(
        self,
        photos: list[Photo],
        *,
        on_no_face: str = "error",
        largest: bool = False,
        pick: str | None = None,
        workers: int = 0,
        progress: bool = False,
    ) -> tuple[np.ndarray, list[dict]]:
        """Embeddings in input order, and one status row per photo.

        on_no_face: 'error' raises on the first photo without a usable face,
        'skip' leaves it out (its row says so), 'full-image' aligns a face
        assumed at the photo's centre. The array has one row per photo that
        produced an embedding, in input order: with 'error' and 'full-image' that
        is every photo, and a photo that cannot give one (unreadable, or several
        faces without `largest`) raises, naming every such photo.
        pick: 'single', 'largest' or 'center' when a photo has several faces;
        overrides `largest` (kept as the CLI's shorthand). 'center' suits
        datasets such as LFW whose photos are centred on their subject.
        Per-photo load/detect/align seconds (from worker processes too) are
        added to `timings`.
        """
        _whole(workers, "workers", 0)
        results = list(
            crop_photos(
                [os.fspath(p) if isinstance(p, os.PathLike) else p for p in _many(photos)],
                self.encoder.input_size,
                upsample=self.upsample,
                detect_side=self.detect_side or DETECT_SIDE,
                pick=pick or ("largest" if largest else "single"),
                on_no_face=on_no_face,
                workers=workers,
                progress=progress,
                detector=self._detector,
            )
        )
        rows, crops = [], []
        for r in results:
            for stage, seconds in r.timings.items():
                self.timings[stage] = self.timings.get(stage, 0.0) + seconds
            if on_no_face == "error":
                r.raise_error()
            rows.append({"source": r.source, "status": r.status, "error": r.error or None})
            if r.crop is not None:
                crops.append(r.crop)
        if on_no_face == "full-image":
            _refuse_missing_rows([r for r in results if r.crop is None])
        size = self.encoder.input_size
        stack = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
        return self._encode(stack), rows

    # -- verbs -------------------------------------------------------------------
    def verify(
        self, a: Photo, b: Photo, *, largest: bool = False, channels: str = "rgb"
    ) -> Verification:
        """Same person when ||f(a) - f(b)||² <= threshold."""
        pick = "largest" if largest else "single"
        ca, cb = self._crop(a, pick, channels=channels), self._crop(b, pick, channels=channels)
        ea, eb = self._encode(np.stack([ca.crop, cb.crop]))
        d = float(squared_l2(ea, eb))
        faces = [{"box": list(c.face.box), "faces_found": c.found} for c in (ca, cb)]
        return Verification(
            same=d <= self.threshold, distance=d, threshold=self.threshold, faces=faces
        )

    def enroll(
        self,
        photo: Photo,
        name: str,
        *,
        largest: bool = False,
        channels: str = "rgb",
        allow_duplicates: bool = False,
    ) -> int:
        """Add one photo's face under `name`; returns the new embedding id.

        Raises Duplicate when the face is already enrolled or would already be identified
        as someone else, unless `allow_duplicates`.
        """
        from faceid.duplicates import Candidate, duplicate_reasons
        from faceid.gallery import new_name

        name = new_name(name)
        emb = self.embed(photo, largest=largest, channels=channels)
        if not allow_duplicates:
            candidate = Candidate(name, describe(photo), emb)
            [reason] = duplicate_reasons([candidate], self.gallery, self._naming_threshold())
            if reason:
                raise Duplicate(
                    f"{describe(photo)}: {reason}; use `allow_duplicates` to enroll it anyway",
                    param="allow_duplicates",
                )
        with self.timings.stage("write"):
            return self.gallery.add(emb[None], [name], [describe(photo)])[0]

    def enroll_many(
        self,
        items: list[tuple[str, str | os.PathLike]],
        *,
        largest: bool = False,
        workers: int = 0,
        progress: bool = False,
        write_every: int = 1000,
        allow_duplicates: bool = False,
    ) -> EnrollReport:
        """Enroll (name, photo) pairs: detection in parallel, encoding in batches, and the
        gallery written at the end, plus every `write_every` photos on long runs.

        A face already enrolled, or one that identify would already name as someone else,
        is not enrolled but listed in the report's `duplicates` with who it matches
        (`faceid.duplicates`); `allow_duplicates` enrolls it anyway.

        Crops are encoded in encoder-sized batches as they arrive, overlapping detection; while
        detection workers hold every core the encoder keeps to one thread, since competing
        intra-op threads would stall each other. Each intermediate write rewrites the whole
        gallery, so writes are also spaced to cost at most ~10% of the run: a big gallery is
        written less often than every `write_every` photos. Photos that fail (no face, several
        faces, unreadable) are reported, not fatal. Worker seconds per stage are added to
        `timings` (summed over processes, so they can exceed the wall time).
        """
        import time

        from faceid.gallery import new_name
        from faceid.pipeline import resolve_workers

        _whole(workers, "workers", 0)
        if not all(isinstance(i, (tuple, list)) and len(i) == 2 for i in _many(items, "items")):
            raise UsageError("`items` must be (name, photo) pairs", param="items")
        items = [(new_name(n), os.fspath(p)) for n, p in items]
        report = EnrollReport()
        parallel = resolve_workers(workers) > 1 and len(items) >= 8
        batch: list[tuple[str, Crop]] = []
        done: list[tuple[str, str, np.ndarray]] = []  # encoded, not yet written
        last_write = {"at": time.perf_counter(), "took": 0.0}

        def encode(threads: int | None) -> None:
            if batch:
                emb = self._encode(np.stack([c.crop for _, c in batch]), threads=threads)
                done.extend((n, c.source, e) for (n, c), e in zip(batch, emb))
                batch.clear()

        def write() -> None:
            if not allow_duplicates:
                self._drop_duplicates(done, report)
            if not done:
                return
            start = time.perf_counter()
            with self.timings.stage("write"):
                ids = self.gallery.add(
                    np.stack([e for _, _, e in done]),
                    [n for n, _, _ in done],
                    [s for _, s, _ in done],
                )
            for (n, s, _), i in zip(done, ids):
                report.enrolled.append({"name": n, "source": s, "id": int(i)})
            report.index_switched = report.index_switched or self.gallery.switched
            report.index_deferred = self.index_deferred
            done.clear()
            last_write["at"] = time.perf_counter()
            last_write["took"] = last_write["at"] - start

        results = crop_photos(
            [p for _, p in items],
            self.encoder.input_size,
            upsample=self.upsample,
            detect_side=self.detect_side or DETECT_SIDE,
            pick="largest" if largest else "single",
            workers=workers,
            progress=progress,
            detector=self._detector,
        )
        for (name, _), result in zip(items, results):
            for stage, seconds in result.timings.items():
                self.timings[stage] = self.timings.get(stage, 0.0) + seconds
            if result.crop is None:
                report.failed.append({"name": name, "source": result.source, "error": result.error})
                continue
            batch.append((name, result))
            if len(batch) >= self.encoder.batch_size:
                encode(1 if parallel else None)
            since = time.perf_counter() - last_write["at"]
            if len(done) >= write_every and since >= 9 * last_write["took"]:
                write()
        encode(None)  # detection is over: the encoder may use every core
        write()
        return report

    def _drop_duplicates(self, done: list[tuple[str, str, np.ndarray]], report) -> None:
        from faceid.duplicates import Candidate, duplicate_reasons

        candidates = [Candidate(n, s, e) for n, s, e in done]
        with self.timings.stage("duplicates"):
            reasons = duplicate_reasons(candidates, self.gallery, self._naming_threshold())
        kept = []
        for entry, reason in zip(done, reasons):
            if reason is None:
                kept.append(entry)
            else:
                report.duplicates.append({"name": entry[0], "source": entry[1], "reason": reason})
        done[:] = kept

    def enroll_paths(
        self,
        paths: list[str | os.PathLike],
        name: str | None = None,
        *,
        one_person: bool = False,
        largest: bool = False,
        workers: int = 0,
        progress: bool = False,
        allow_duplicates: bool = False,
    ) -> EnrollReport:
        """Enroll photos and folders by the rules of `faceid.folders`: per-person folders under
        their folders' names, anything else under `name`. Every file left out unread is in the
        report's `skipped` with its reason, every photo without a usable face in `failed`."""
        from faceid.folders import plan_enrollment

        if isinstance(paths, (str, os.PathLike)):  # one path is a list of one
            paths = [paths]
        plan = plan_enrollment(paths, name, one_person=one_person)
        report = self.enroll_many(
            plan.items,
            largest=largest,
            workers=workers,
            progress=progress,
            allow_duplicates=allow_duplicates,
        )
        report.skipped = plan.skipped
        return report

    def identify(
        self,
        photo: Photo,
        *,
        top_k: int = 1,
        all_faces: bool = False,
        largest: bool = False,
        channels: str = "rgb",
        fpir: float | None = None,
    ) -> list[Identification]:
        """Nearest enrolled people for the face in a photo (or each face with all_faces).

        A person is scored by their closest embedding; the best match is
        returned as a name when the rule accepts it, else as 'unknown'. The rule
        follows `identify_rule`: by default the bound that gives 1 % of strangers a
        name (fpir) for the gallery's number of people, on the closest person's
        distance or, in larger galleries, on its ratio to the next person's.
        """
        _whole(top_k, "top_k", 1)
        if fpir is not None:
            self.identify_rule(fpir, 1)  # refuse a bad fpir before the photo's work
        if all_faces and largest:
            raise UsageError(
                "`all_faces` and `largest` contradict each other: choose one",
                param=("all_faces", "largest"),
            )
        if all_faces:
            detector, size = self.detector, self.encoder.input_size
            faces, crops = crop_faces(
                photo, detector, size, timings=self.timings, channels=channels
            )
        else:
            crop = self._crop(photo, "largest" if largest else "single", channels=channels)
            faces, crops = [crop.face], crop.crop[None]
        emb = self._encode(crops)
        with self.timings.stage("load_gallery"):  # manifest + index: once per process
            if not self.gallery.exists:
                raise self._no_gallery()
            empty = not self.gallery  # a backend may answer this faster than len()
        if empty:
            raise FaceIDError(f"the gallery {self.gallery_label} is empty: enroll someone first")
        with self.timings.stage("search"):
            # one person more than asked for: the ratio test reads the next person's distance
            hits = self.gallery.search(emb, top_k + 1)
        rule = self.identify_rule(fpir, len(self.gallery.people()))
        return [
            Identification(
                box=f.box,
                matches=[
                    {"name": m.name, "distance": round(float(m.distance), 6)} for m in h[:top_k]
                ],
                threshold=rule.threshold,
                rule=rule,
                second=round(float(h[1].distance), 6) if len(h) > 1 else None,
            )
            for f, h in zip(faces, hits)
        ]

    def people(self) -> dict[str, int]:
        """Enrolled names and how many photos each; reads only the manifest."""
        from faceid.gallery.locate import inspect

        info = inspect(self.gallery_path)
        if not info["exists"]:
            raise self._no_gallery()
        return info["people"]

    def _housekeeping_gallery(self):
        """The gallery for remove and rename, which embed nothing: with no model named, it is
        opened as the model its manifest records, so the model is never loaded for them."""
        from faceid.gallery.locate import inspect, open_gallery

        if self._gallery is not None or self.model_path is not None:
            return self.gallery
        info = inspect(self.gallery_path)
        if info["model_id"] is None:  # no gallery yet: the usual path says so
            return self.gallery
        self._gallery = open_gallery(
            self.gallery_path, model_id=info["model_id"], dim=info["dim"], index_factory=self.index
        )
        return self._gallery

    def remove(self, name: str) -> int:
        self._require_gallery()
        return self._housekeeping_gallery().remove(name)

    def rename(self, old: str, new: str, *, merge: bool = False) -> int:
        """Rename a person. Onto a name already enrolled only with `merge`, which files both
        people's photos under one name (there is no undo: the two cannot be told apart after)."""
        from faceid.gallery import new_name

        self._require_gallery()
        return self._housekeeping_gallery().rename(old, new_name(new), merge=merge)

    def _no_gallery(self) -> NoGallery:
        return NoGallery(f"no gallery at {self.gallery_label}: enroll someone to create it")

    def _require_gallery(self) -> None:
        """Reading verbs on a path that holds no gallery are an error, not an empty answer."""
        from faceid.gallery.locate import inspect

        if not inspect(self.gallery_path)["exists"]:
            raise self._no_gallery()

    def doctor(self, *, repair: bool = False, fpir: float | None = None) -> DoctorReport:
        """Check that the gallery's files agree with each other; with `repair`, fix what can be
        fixed without losing anyone. Needs no model, so it works when the model is lost; when
        the model loads, the report also carries identify's rule for this gallery at `fpir`,
        whose warning says when the gallery is too large for that target."""
        from faceid.gallery.locate import inspect, open_for_doctor

        path = self.gallery_path
        if is_url(path):
            empty = not inspect(path)["exists"]
        else:
            try:
                empty = not path.is_dir() or not any(path.iterdir())
            except OSError as exc:
                raise FaceIDError(f"cannot read {path}: {exc.strerror}") from None
        if empty:  # nothing there to check or repair
            raise self._no_gallery()
        gallery = open_for_doctor(path)
        problems = gallery.check()
        actions = gallery.repair() if (repair and problems) else []
        healthy = not problems or (repair and not gallery.check())
        report = DoctorReport(self.gallery_label, problems, actions, bool(healthy))
        people = len(self.people()) if healthy else 0
        if people:
            try:
                report.rule = self.identify_rule(fpir, people)
            except ModelError as exc:  # the gallery's health does not depend on the model
                report.note = f"identify's threshold unknown: {exc}"
        return report


def _many(values: Any, param: str = "photos") -> list:
    """A list of several things: one path or one byte string given alone would otherwise be
    read one character (or byte) at a time."""
    if isinstance(values, (str, bytes, os.PathLike, np.ndarray)) or not hasattr(values, "__iter__"):
        raise UsageError(
            f"`{param}` must be a list (one item: [item]), not a {type(values).__name__}",
            param=param,
        )
    return list(values)


def _refuse_missing_rows(failed: list[Crop]) -> None:
    """One row per photo was asked for: name every photo that cannot give one."""
    if not failed:
        return
    if len(failed) == 1:
        failed[0].raise_error()
    shown = "; ".join(c.error for c in failed[:5])
    more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
    first = failed[0].exception
    kind = type(first) if first is not None else FaceIDError
    params = first.params if first is not None else None
    raise kind(f"{len(failed)} photos cannot give a row: {shown}{more}", param=params)
