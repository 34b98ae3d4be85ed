"""The verbs: enroll, verify, identify, embed, and gallery housekeeping.

`FaceID` wires the stages (load -> detect -> align -> encode -> gallery) and
nothing else; each stage lives in its own module. The encoder and detector are
loaded on first use, so constructing a FaceID (or running `faceid list`) is cheap.

    >>> from faceid import FaceID
    >>> fid = FaceID(gallery="galleries/default")
    >>> fid.enroll("ada.jpg", "Ada Lovelace")
    >>> fid.verify("a.jpg", "b.jpg").same
    >>> fid.identify("group.jpg", all_faces=True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceid.detect import DETECT_SIDE
from faceid.errors import FaceIDError, NoFace, UsageError
from faceid.pipeline import Crop, Timings, crop_photo, crop_photos

DEFAULT_GALLERY = "galleries/default"
# New galleries search exactly until they hold this many faces, then switch to HNSW: around
# 100k a flat search costs ~2 ms a query on two cores and grows linearly, while HNSW stays
# well under 2 ms at 1M with recall@1 >= 0.99 (scripts/benchmark.py measures both).
DEFAULT_INDEX_SWITCH = 100_000
Photo = str | os.PathLike | np.ndarray


def default_gallery_path() -> Path:
    """FACEID_GALLERY if set, else galleries/default under the current directory."""
    return Path(os.environ.get("FACEID_GALLERY") or DEFAULT_GALLERY)


@dataclass
class Verification:
    same: bool
    distance: float
    threshold: float

    def to_dict(self) -> dict:
        return {"same": self.same, "distance": round(self.distance, 6), "threshold": self.threshold}


@dataclass
class Identification:
    """One face of a probe photo: its box and the nearest people, best first."""

    box: tuple[int, int, int, int]
    matches: list[dict]
    threshold: float

    @property
    def name(self) -> str:
        """The best match within the threshold, or 'unknown'."""
        if self.matches and self.matches[0]["distance"] <= self.threshold:
            return self.matches[0]["name"]
        return "unknown"

    @property
    def distance(self) -> float | None:
        return self.matches[0]["distance"] if self.matches else None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "distance": self.distance,
            "threshold": self.threshold,
            "box": list(self.box),
            "matches": self.matches,
        }


@dataclass
class EnrollReport:
    """What an enrollment did, photo by photo: nothing is dropped without a line here."""

    enrolled: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    index_switched: str | None = None  # the factory a write switched the gallery's index to

    def to_dict(self) -> dict:
        data = {"enrolled": self.enrolled, "failed": self.failed}
        if self.index_switched:
            data["index_switched"] = self.index_switched
        return data


class FaceID:
    """Face verification and recognition over one model and one gallery.

    threshold: overrides the model's calibrated squared-L2 thresholds (verification's and
    the stricter one identification uses).
    upsample: HOG detector upsampling (1 finds faces down to ~40 px).
    detect_side: detection runs on a copy of at most this long side (faces down to 1/20 of
    it are found in larger photos); raise it to find smaller faces in big photos, at a cost.
    index: FAISS factory string of a gallery this object creates ("Flat": exact).
    index_switch: rebuild the index as `approx_index` (default HNSW32) once the gallery holds
    more than this many faces (0: never); recorded in the gallery. None keeps what the gallery
    records, and gives a new gallery DEFAULT_INDEX_SWITCH.
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
    ) -> None:
        self.gallery_path = Path(gallery) if gallery is not None else default_gallery_path()
        self.model_path = model
        self.device = device
        self.upsample = upsample
        self.detect_side = detect_side
        self.index = index
        self.index_switch = index_switch
        self.approx_index = approx_index
        self._threshold = threshold
        self._encoder = None
        self._detector = None
        self._gallery = None
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
            from faceid.gallery import Gallery

            model_id = self.encoder.model_id

            def open_gallery(switch: int | None) -> Gallery:
                return Gallery(
                    self.gallery_path,
                    model_id=model_id,
                    index_factory=self.index,
                    auto_switch=switch,
                    approx_factory=self.approx_index,
                    search_device=self.encoder.device,
                )

            gallery = open_gallery(self.index_switch)
            if self.index_switch is None and not gallery.exists:
                gallery = open_gallery(DEFAULT_INDEX_SWITCH)
            self._gallery = gallery
        return self._gallery

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

    # -- embeddings ------------------------------------------------------------
    def _crop(self, photo: Photo, pick: str = "single", on_no_face: str = "error") -> Crop:
        result = crop_photo(
            photo if isinstance(photo, np.ndarray) else os.fspath(photo),
            self.detector,
            self.encoder.input_size,
            pick=pick,
            on_no_face=on_no_face,
            timings=self.timings,
        )
        result.raise_error()
        return result

    def _encode(self, crops: np.ndarray, threads: int | None = None) -> np.ndarray:
        with self.timings.stage("embed"):
            return self.encoder.embed(crops, threads=threads)

    def embed(self, photo: Photo, *, largest: bool = False) -> np.ndarray:
        """The 128-d unit embedding of the one face in a photo (or the largest)."""
        crop = self._crop(photo, "largest" if largest else "single")
        return self._encode(crop.crop[None])[0]

    def embed_many(
        self,
        photos: list[str | os.PathLike],
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
        produced an embedding, in input order.
        pick: 'single', 'largest' or 'center' when a photo has several faces;
        overrides `largest` (kept as the CLI's shorthand). 'center' suits
        datasets such as LFW whose photos are centred on their subject.
        Per-photo load/detect/align seconds (from worker processes too) are
        added to `timings`.
        """
        results = list(
            crop_photos(
                [os.fspath(p) for p in photos],
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
        size = self.encoder.input_size
        stack = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
        return self._encode(stack), rows

    # -- verbs -------------------------------------------------------------------
    def verify(self, a: Photo, b: Photo, *, largest: bool = False) -> Verification:
        """Same person when ||f(a) - f(b)||² <= threshold."""
        pick = "largest" if largest else "single"
        crops = np.stack([self._crop(a, pick).crop, self._crop(b, pick).crop])
        ea, eb = self._encode(crops)
        d = float(((ea - eb) ** 2).sum())
        return Verification(same=d <= self.threshold, distance=d, threshold=self.threshold)

    def enroll(self, photo: Photo, name: str, *, largest: bool = False) -> int:
        """Add one photo's face under `name`; returns the new embedding id."""
        from faceid.gallery import validate_name

        name = validate_name(name)
        emb = self.embed(photo, largest=largest)
        source = "<array>" if isinstance(photo, np.ndarray) else os.fsdecode(photo)
        with self.timings.stage("write"):
            return self.gallery.add(emb[None], [name], [source])[0]

    def enroll_many(
        self,
        items: list[tuple[str, str | os.PathLike]],
        *,
        largest: bool = False,
        workers: int = 0,
        progress: bool = False,
        write_every: int = 1000,
    ) -> EnrollReport:
        """Enroll (name, photo) pairs: detection in parallel, encoding in batches, and the
        gallery written at the end, plus every `write_every` photos on long runs.

        Crops are encoded in encoder-sized batches as they arrive, overlapping detection; while
        detection workers hold every core the encoder keeps to one thread, since competing
        intra-op threads would stall each other. Each intermediate write rewrites the whole
        gallery, so writes are also spaced to cost at most ~10% of the run: a big gallery is
        written less often than every `write_every` photos. Photos that fail (no face, several
        faces, unreadable) are reported, not fatal. Worker seconds per stage are added to
        `timings` (summed over processes, so they can exceed the wall time).
        """
        import time

        from faceid.gallery import validate_name
        from faceid.pipeline import resolve_workers

        items = [(validate_name(n), os.fspath(p)) for n, p in items]
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

    @staticmethod
    def enroll_items(
        paths: list[str | os.PathLike], name: str | None = None
    ) -> list[tuple[str, str]]:
        """(name, photo) pairs for enroll: photos under `name`, or one folder.

        A folder of per-person folders gives each subfolder's photos its name;
        photos directly inside a folder need `name`. Only one level is read, so
        symlink loops cannot trap the scan; what is not a readable image file is
        left for the loader to report.
        """
        from faceid.errors import BadImage
        from faceid.imageio import is_image_path

        items: list[tuple[str, str]] = []
        for raw in paths:
            path = Path(raw)
            if not path.is_dir():
                if name is None:
                    raise UsageError(f"{os.fsdecode(path)}: give the person's name with --name")
                items.append((name, os.fspath(path)))
                continue
            try:
                entries = sorted(path.iterdir())
            except OSError as exc:
                raise BadImage(
                    f"{os.fsdecode(path)}: cannot read folder ({exc.strerror})"
                ) from None
            before = len(items)
            flat = [p for p in entries if is_image_path(p) and p.is_file()]
            if flat:
                if name is None:
                    raise UsageError(
                        f"{os.fsdecode(path)} holds photos directly: give their person with --name"
                    )
                items += [(name, os.fspath(p)) for p in flat]
            for sub in entries:
                if sub.is_dir() and not sub.is_symlink():
                    try:
                        photos = sorted(
                            p for p in sub.iterdir() if is_image_path(p) and p.is_file()
                        )
                    except OSError:
                        continue
                    items += [(name or sub.name, os.fspath(p)) for p in photos]
            if len(items) == before:
                raise UsageError(f"{os.fsdecode(path)}: no photos found")
        return items

    def identify(
        self, photo: Photo, *, top_k: int = 1, all_faces: bool = False, largest: bool = False
    ) -> list[Identification]:
        """Nearest enrolled people for the face in a photo (or each face with all_faces).

        A person is scored by their closest embedding; the best match is
        returned as a name when within the threshold, else as 'unknown'.
        """
        from faceid.pipeline import align_face, choose_face, find_faces, open_picture

        if top_k < 1:
            raise UsageError("--top-k must be at least 1")
        source = "<array>" if isinstance(photo, np.ndarray) else os.fsdecode(photo)
        # Loaded before the stages start, so their own stages are not counted twice.
        detector, size = self.detector, self.encoder.input_size
        with self.timings.stage("load"):
            picture = open_picture(photo, detector)
        with self.timings.stage("detect"):
            faces = find_faces(picture, detector)
        if not faces:
            raise NoFace(f"{source}: no face found")
        if not all_faces:
            pick = "largest" if largest else "single"
            faces = [choose_face(faces, picture.full_shape, pick, source)]
        with self.timings.stage("align"):
            crops = np.stack([align_face(picture, f, size) for f in faces])
        emb = self._encode(crops)
        with self.timings.stage("load_gallery"):  # manifest + index: once per process
            empty = len(self.gallery) == 0
        if empty:
            raise FaceIDError(f"the gallery {self.gallery_path} is empty: enroll someone first")
        with self.timings.stage("search"):
            hits = self.gallery.search(emb, top_k)
        return [
            Identification(
                box=f.box,
                matches=[{"name": m.name, "distance": round(float(m.distance), 6)} for m in h],
                threshold=self.identify_threshold,
            )
            for f, h in zip(faces, hits)
        ]

    def people(self) -> dict[str, int]:
        """Enrolled names and how many photos each; reads only the manifest."""
        from faceid.gallery import Gallery

        return Gallery.inspect(self.gallery_path)["people"]

    def _housekeeping_gallery(self):
        """The gallery for remove and rename, which embed nothing: with no model named, it is
        opened as the model its manifest records, so the model is never loaded for them."""
        from faceid.gallery import Gallery

        if self._gallery is not None or self.model_path is not None:
            return self.gallery
        info = Gallery.inspect(self.gallery_path)
        if info["model_id"] is None:  # no gallery yet: the usual path says so
            return self.gallery
        self._gallery = Gallery(
            self.gallery_path, model_id=info["model_id"], dim=info["dim"], index_factory=self.index
        )
        return self._gallery

    def remove(self, name: str) -> int:
        return self._housekeeping_gallery().remove(name)

    def rename(self, old: str, new: str) -> int:
        from faceid.gallery import validate_name

        return self._housekeeping_gallery().rename(old, validate_name(new))
