"""Training data: detect and align every photo once into a compact cache.

Detection costs ~20 ms a photo and dominates an epoch if repeated, so crops are
prepared once, in worker processes, with the same detect and align code as
inference. The cache is a uint8 memmap (N x S x S x 3) plus a JSON index, and
optionally dlib's descriptors of the same photos as distillation targets.
"""

from __future__ import annotations

import json
import os
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


@dataclass
class _Job:
    size: int
    upsample: int
    teacher: bool


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
    return result.crop, teacher, note


def prepare_cache(
    items: list[tuple[str, Path]],
    out: Path,
    *,
    size: int = 64,
    upsample: int = 1,
    workers: int | None = None,
    teacher: bool = False,
) -> dict:
    """Detect, align (and optionally describe with dlib) every item into `out`."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(items)
    crops = np.lib.format.open_memmap(out / (CROPS + ".npy"), "w+", np.uint8, (n, size, size, 3))
    targets = np.zeros((n, 128), np.float32) if teacher else None
    keep = np.zeros(n, bool)
    notes: dict[str, str] = {}
    workers = workers or os.cpu_count() or 1
    # spawn, not fork: the parent may hold torch or OpenCV thread pools, which a
    # forked child can inherit locked and hang on.
    ctx = get_context("spawn")
    paths = [str(p) for _, p in items]
    with ctx.Pool(workers, _init_worker, (_Job(size, upsample, teacher),)) as pool:
        results = pool.imap(_prepare_one, paths, chunksize=8)
        for i, (crop, target, note) in enumerate(
            tqdm(results, total=n, desc="prepare", unit="img")
        ):
            if crop is not None:
                crops[i] = crop
                keep[i] = True
                if targets is not None:
                    targets[i] = target
            if note:
                notes[paths[i]] = note
    crops.flush()
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
    }
    if targets is not None:
        np.save(out / TEACHER, targets)
    (out / INDEX).write_text(json.dumps({"summary": summary, "entries": entries}, indent=1))
    return summary


@dataclass
class FaceCache:
    """A prepared cache in memory: uint8 crops, integer labels, names, optional teacher."""

    crops: np.ndarray
    labels: np.ndarray
    names: list[str]
    teacher: np.ndarray | None

    @classmethod
    def load(cls, folder: Path, people: list[str] | None = None) -> FaceCache:
        folder = Path(folder)
        index = json.loads((folder / INDEX).read_text())
        crops = np.load(folder / (CROPS + ".npy"), mmap_mode="r")
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
            crops=np.ascontiguousarray(crops[rows]),
            labels=labels,
            names=names,
            teacher=None if teacher is None else teacher[rows],
        )
