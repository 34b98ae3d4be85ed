"""The raw embeddings beside every index: a structured array of (id, vector), never pickled.

They are the source of truth an index is (re)built from, in the FAISS folder, by repair and
when copying a gallery to another backend.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from faceid.errors import GalleryError
from faceid.gallery.messages import REPAIR_HINT, _one_line


def _vector_dtype(dim: int) -> np.dtype:
    return np.dtype([("id", "<i8"), ("vector", "<f4", (dim,))])


def _parse_vectors(raw: bytes, where: Path, dim: int) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError for damaged files
        raise GalleryError(f"{where} cannot be read ({_one_line(exc)}); {REPAIR_HINT}") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype != _vector_dtype(dim):
        raise GalleryError(f"{where} does not hold {dim}-d vectors with ids; {REPAIR_HINT}")
    if not np.isfinite(arr["vector"]).all():
        raise GalleryError(f"{where} holds non-finite values; {REPAIR_HINT}")
    return arr


def _serialize_vectors(vectors: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, vectors, allow_pickle=False)
    return buf.getvalue()
