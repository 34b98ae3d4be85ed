"""Training data: detect and align every photo once into a compact cache.

Detection costs ~20 ms a photo and dominates an epoch if repeated, so crops are
prepared once, in worker processes, with the same detect and align code as
inference. The cache is a uint8 memmap (N x S x S x 3) plus a JSON index, and
optionally dlib's descriptors of the same photos as distillation targets.

`pack_cache` makes a JPEG copy about six times smaller, for training where a cache must
travel (a lent GPU machine takes 64 MiB) and where dlib cannot prepare one;
`FaceCache.load` reads either form. For consistent distillation there it packs the masters
instead (WebP), with the teacher's weight file: the crops are then cut from the masters on
loading, exactly as training cuts the student's views.
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
PACKED_MASTERS = "masters.webp.npy"  # likewise, each master's WebP bytes
MASTER_OFFSETS = "masters.offsets.npy"
TEACHER_WEIGHTS = "teacher.dat"  # dlib's network file, for a machine without it (never shipped)


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


def pack_cache(
    folder: Path, out: Path, *, quality: int = 95, masters_quality: int | None = None
) -> dict:
    """Copy a prepared cache with its crops as JPEGs; returns sizes and the pixel error.

    Quality 95 changes a 96 px crop by about one grey level on average, far below what the
    training augmentation does to it, for about a sixth of the bytes.

    With `masters_quality`, the masters are packed instead (WebP at that quality: 80 makes
    LFW DevTrain's 1.1 GB of 200 px masters about 30 MB, 2 grey levels off) with their maps
    and the teacher's weight file, and the crops are left to be cut from the masters on
    loading: what `--teacher online` needs on a machine that has neither dlib nor the cache.
    """
    folder, out = Path(folder), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if masters_quality is None:
        images = np.load(folder / (CROPS + ".npy"), mmap_mode="r")
        names = (PACKED, OFFSETS)
        fmt, q = "JPEG", quality
    else:
        from faceid.detect import model_file
        from faceid.train.teacher import MODEL_FILE

        images = np.load(folder / (MASTERS + ".npy"), mmap_mode="r")
        names = (PACKED_MASTERS, MASTER_OFFSETS)
        fmt, q = "WEBP", masters_quality
        shutil.copyfile(folder / STUDENT_FROM_MASTER, out / STUDENT_FROM_MASTER)
        shutil.copyfile(model_file(MODEL_FILE), out / TEACHER_WEIGHTS)
    packed_bytes, error = _pack_images(images, out / names[0], out / names[1], fmt, q)
    for name in (INDEX, TEACHER):
        if (folder / name).exists():
            shutil.copyfile(folder / name, out / name)
    return {
        "images": len(images),
        "format": fmt,
        "quality": q,
        "raw_bytes": int(images.nbytes),
        "packed_bytes": packed_bytes,
        "folder_bytes": sum(f.stat().st_size for f in out.iterdir() if f.is_file()),
        "mean_abs_error": round(error, 3),
    }


def _pack_images(images: np.ndarray, blobs_path: Path, offsets_path: Path, fmt: str, q: int):
    """Every image encoded one after another, their offsets, and the mean decoding error."""
    from PIL import Image
    from tqdm import tqdm

    blobs, error = [], 0.0
    for image in tqdm(images, desc=f"pack {fmt}", unit="img", disable=None):  # None: a TTY only
        buf = io.BytesIO()
        Image.fromarray(np.asarray(image)).save(buf, fmt, quality=q)
        blobs.append(buf.getvalue())
        error += float(np.abs(_decode(blobs[-1]).astype(np.int16) - image).mean())
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    np.save(blobs_path, np.frombuffer(b"".join(blobs), np.uint8))
    np.save(offsets_path, offsets)
    return int(offsets[-1]), error / max(1, len(blobs))


def teacher_weights(folder: Path) -> Path | None:
    """The teacher's weight file packed with a cache, if any (else the installed one is used)."""
    path = Path(folder) / TEACHER_WEIGHTS
    return path if path.is_file() else None


def _decode(blob: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        return np.asarray(im.convert("RGB"))


def _read_packed(folder: Path, blobs: str, offsets: str, rows: list[int]) -> np.ndarray:
    packed = np.load(folder / blobs, mmap_mode="r")
    at = np.load(folder / offsets)
    return np.stack([_decode(packed[at[i] : at[i + 1]].tobytes()) for i in rows])


def _read_crops(folder: Path, rows: list[int], size: int, masters, maps) -> np.ndarray:
    """The given rows' crops from any form of cache, as one in-memory array."""
    if (folder / (CROPS + ".npy")).exists():
        crops = np.load(folder / (CROPS + ".npy"), mmap_mode="r")
        return np.ascontiguousarray(crops[rows])
    if (folder / PACKED).exists():
        return _read_packed(folder, PACKED, OFFSETS, rows)
    if masters is None:
        raise FaceIDError(f"{folder} holds neither crops nor masters: not a training cache")
    from faceid.train.views import plain_crops

    return plain_crops(masters, maps, size)


def _read_masters(folder: Path, rows: list[int]) -> np.ndarray | None:
    path = folder / (MASTERS + ".npy")
    if path.exists():
        return np.ascontiguousarray(np.load(path, mmap_mode="r")[rows])
    if (folder / PACKED_MASTERS).exists():
        return _read_packed(folder, PACKED_MASTERS, MASTER_OFFSETS, rows)
    return None


@dataclass
class FaceCache:
    """A prepared cache in memory: uint8 crops, integer labels, names, optional teacher.

    masters / student_maps: the wide teacher-geometry views and their maps to the crop,
    present when the cache was prepared with `master` (memory-mapped, not copied).
    entries: each row's entry in the cache's index (what a view bank is indexed by).
    """

    crops: np.ndarray
    labels: np.ndarray
    names: list[str]
    teacher: np.ndarray | None
    masters: np.ndarray | None = None
    student_maps: np.ndarray | None = None
    entries: np.ndarray | None = None

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
        masters = _read_masters(folder, rows)
        maps = (
            np.load(folder / STUDENT_FROM_MASTER)[rows]
            if (folder / STUDENT_FROM_MASTER).exists()
            else None
        )
        return cls(
            crops=_read_crops(folder, rows, index["summary"]["size"], masters, maps),
            labels=labels,
            names=names,
            teacher=None if teacher is None else teacher[rows],
            masters=masters,
            student_maps=maps,
            entries=np.array(rows, np.int64),
        )
