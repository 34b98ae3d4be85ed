"""Training data: detect and align every photo once into a compact cache.

Detection costs ~20 ms a photo and dominates an epoch if repeated, so crops are
prepared once, in worker processes, with the same detect and align code as
inference. The cache is a uint8 memmap (N x S x S x 3) plus a JSON index, and
optionally dlib's descriptors of the same photos as distillation targets.

`pack_cache` makes a JPEG copy about six times smaller, for training where a cache must
travel (a lent GPU machine takes 64 MiB) and where dlib cannot prepare one;
`FaceCache.load` reads either form.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from faceid.errors import FaceIDError
from faceid.imageio import load_image
from faceid.model.dlib_teacher import dlib_descriptor
from faceid.pipeline import crop_photo

CROPS = "crops.u8"
INDEX = "index.json"
TEACHER = "teacher.npy"
MASTERS = "masters.u8"  # wide views in the teacher's chip geometry (see faceid/train/views.py)
STUDENT_FROM_MASTER = "student_from_master.npy"  # per photo: 2x3 map, master px -> crop px
PACKED = "crops.jpg.npy"  # every crop's JPEG bytes, one after another
OFFSETS = "crops.offsets.npy"  # crop i is PACKED[OFFSETS[i]:OFFSETS[i + 1]]


@dataclass
class _Job:
    size: int
    upsample: int
    teacher: bool
    master: int = 0


_state: dict = {}


def _init_worker(job: _Job) -> None:
    import cv2

    cv2.setNumThreads(1)
    from faceid.detect import DlibHOGDetector

    _state["job"] = job
    _state["detector"] = DlibHOGDetector(job.upsample)


def _prepare_one(path: str):
    job: _Job = _state["job"]
    # LFW-style photos are centred on their subject: take the central face, and when
    # none is detected keep the photo through the central-box fallback.
    try:
        image = load_image(path)
    except FaceIDError as exc:
        return None, None, f"unreadable: {exc}"
    result = crop_photo(image, _state["detector"], job.size, pick="center", on_no_face="full-image")
    if result.crop is None:
        return None, None, f"unreadable: {result.error}"
    note = "no face detected: central-box fallback" if result.status == "fallback" else ""
    teacher = dlib_descriptor(image, result.face.box) if job.teacher else None
    views = None
    if job.master:
        from faceid.train.views import master_view

        views = master_view(image, result.face.landmarks, job.master, job.size)
    return result.crop, teacher, note, views


def prepare_cache(
    items: list[tuple[str, Path]],
    out: Path,
    *,
    size: int = 64,
    upsample: int = 1,
    workers: int | None = None,
    teacher: bool = False,
    master: int = 0,
) -> dict:
    """Detect, align (and optionally describe with dlib) every item into `out`.

    master > 0 also stores each face in the teacher's chip geometry at that side (with
    room around it) and the map from it to the crop, for consistent distillation.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(items)
    crops = np.lib.format.open_memmap(out / (CROPS + ".npy"), "w+", np.uint8, (n, size, size, 3))
    targets = np.zeros((n, 128), np.float32) if teacher else None
    masters = maps = None
    if master:
        masters = np.lib.format.open_memmap(
            out / (MASTERS + ".npy"), "w+", np.uint8, (n, master, master, 3)
        )
        maps = np.zeros((n, 2, 3), np.float32)
    keep = np.zeros(n, bool)
    notes: dict[str, str] = {}
    workers = workers or os.cpu_count() or 1
    # spawn, not fork: the parent may hold torch or OpenCV thread pools, which a
    # forked child can inherit locked and hang on.
    ctx = get_context("spawn")
    paths = [str(p) for _, p in items]
    with ctx.Pool(workers, _init_worker, (_Job(size, upsample, teacher, master),)) as pool:
        results = pool.imap(_prepare_one, paths, chunksize=8)
        for i, (crop, target, note, views) in enumerate(
            tqdm(results, total=n, desc="prepare", unit="img")
        ):
            if crop is not None:
                crops[i] = crop
                keep[i] = True
                if targets is not None:
                    targets[i] = target
                if views is not None:
                    masters[i], maps[i] = views
            if note:
                notes[paths[i]] = note
    crops.flush()
    if masters is not None:
        masters.flush()
        np.save(out / STUDENT_FROM_MASTER, maps)
    entries = [
        {"name": name, "path": str(path), "ok": bool(k)} for (name, path), k in zip(items, keep)
    ]
    summary = {
        "size": size,
        "count": n,
        "usable": int(keep.sum()),
        "fallback": sum(1 for v in notes.values() if v.startswith("no face")),
        "unreadable": sum(1 for v in notes.values() if v.startswith("unreadable")),
        "notes": notes,
        "teacher": "dlib_face_recognition_resnet_model_v1" if teacher else None,
        "master": master or None,
    }
    if targets is not None:
        np.save(out / TEACHER, targets)
    (out / INDEX).write_text(json.dumps({"summary": summary, "entries": entries}, indent=1))
    return summary


def pack_cache(folder: Path, out: Path, *, quality: int = 95) -> dict:
    """Copy a prepared cache with its crops as JPEGs; returns sizes and the pixel error.

    Quality 95 changes a 96 px crop by about one grey level on average, far below what the
    training augmentation does to it, for about a sixth of the bytes.
    """
    from PIL import Image

    folder, out = Path(folder), Path(out)
    crops = np.load(folder / (CROPS + ".npy"), mmap_mode="r")
    out.mkdir(parents=True, exist_ok=True)
    blobs, error = [], 0.0
    for crop in crops:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(crop)).save(buf, "JPEG", quality=quality)
        blobs.append(buf.getvalue())
        error += float(np.abs(_decode(blobs[-1]).astype(np.int16) - crop).mean())
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    np.save(out / PACKED, np.frombuffer(b"".join(blobs), np.uint8))
    np.save(out / OFFSETS, offsets)
    for name in (INDEX, TEACHER):
        if (folder / name).exists():
            shutil.copyfile(folder / name, out / name)
    return {
        "crops": len(blobs),
        "raw_bytes": int(crops.nbytes),
        "packed_bytes": int(offsets[-1]),
        "mean_abs_error": round(error / max(1, len(blobs)), 3),
        "quality": quality,
    }


def _decode(blob: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        return np.asarray(im.convert("RGB"))


def _read_crops(folder: Path, rows: list[int]) -> np.ndarray:
    """The given rows' crops from either form of cache, as one in-memory array."""
    if (folder / (CROPS + ".npy")).exists():
        crops = np.load(folder / (CROPS + ".npy"), mmap_mode="r")
        return np.ascontiguousarray(crops[rows])
    packed = np.load(folder / PACKED, mmap_mode="r")
    offsets = np.load(folder / OFFSETS)
    return np.stack([_decode(packed[offsets[i] : offsets[i + 1]].tobytes()) for i in rows])


def _read_masters(folder: Path, rows: list[int]) -> np.ndarray | None:
    path = folder / (MASTERS + ".npy")
    if not path.exists():
        return None
    return np.ascontiguousarray(np.load(path, mmap_mode="r")[rows])


@dataclass
class FaceCache:
    """A prepared cache in memory: uint8 crops, integer labels, names, optional teacher.

    masters / student_maps: the wide teacher-geometry views and their maps to the crop,
    present when the cache was prepared with `master` (memory-mapped, not copied).
    """

    crops: np.ndarray
    labels: np.ndarray
    names: list[str]
    teacher: np.ndarray | None
    masters: np.ndarray | None = None
    student_maps: np.ndarray | None = None

    @classmethod
    def load(cls, folder: Path, people: list[str] | None = None) -> FaceCache:
        folder = Path(folder)
        index = json.loads((folder / INDEX).read_text())
        teacher = np.load(folder / TEACHER) if (folder / TEACHER).exists() else None
        wanted = set(people) if people is not None else None
        rows = [
            i
            for i, e in enumerate(index["entries"])
            if e["ok"] and (wanted is None or e["name"] in wanted)
        ]
        names = sorted({index["entries"][i]["name"] for i in rows})
        label_of = {n: j for j, n in enumerate(names)}
        labels = np.array([label_of[index["entries"][i]["name"]] for i in rows], np.int64)
        return cls(
            crops=_read_crops(folder, rows),
            labels=labels,
            names=names,
            teacher=None if teacher is None else teacher[rows],
            masters=_read_masters(folder, rows),
            student_maps=(
                np.load(folder / STUDENT_FROM_MASTER)[rows]
                if (folder / STUDENT_FROM_MASTER).exists()
                else None
            ),
        )
