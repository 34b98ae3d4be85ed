"""Embeddings cached by model, pipeline settings and file content.

Detection dominates an evaluation's cost (~20 ms a photo against ~1 ms to
encode), and evaluations are rerun often (another threshold, another protocol
file over the same photos), so each photo's embedding is kept under a key that
changes whenever anything that could change the embedding changes: the model,
the pipeline settings, or the photo's bytes. Paths are not part of the key, so
a moved or copied dataset still hits.

One ``<model_id>.npz`` file per model under ``$FACEID_CACHE_DIR`` (default
``~/.cache/faceid/embeddings``): plain arrays, read with ``allow_pickle=False``
so a planted cache file cannot run code. A cache must never break an
evaluation, so an unreadable file is treated as empty and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from faceid.atomic import atomic_open

__all__ = ["EmbeddingCache", "cache_dir", "photo_key"]

STATUSES = ("ok", "fallback")


def cache_dir() -> Path:
    """$FACEID_CACHE_DIR, else ~/.cache/faceid/embeddings."""
    env = os.environ.get("FACEID_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "faceid" / "embeddings"


def photo_key(model_id: str, settings: dict, data: bytes) -> str:
    """sha256 over the model id, the settings (canonical JSON) and the photo's bytes."""
    h = hashlib.sha256()
    h.update(model_id.encode())
    h.update(b"\0")
    h.update(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode())
    h.update(b"\0")
    h.update(data)
    return h.hexdigest()


class EmbeddingCache:
    """One model's cached embeddings: key -> (vector, status).

    Entries added with :meth:`put` live in memory until :meth:`save`, which merges
    them with whatever another process saved meanwhile (last writer wins per key,
    none loses the other's keys unless both save at the same instant).
    """

    def __init__(self, model_id: str, directory: str | os.PathLike | None = None) -> None:
        if not model_id or any(c in model_id for c in "/\\\0") or model_id.startswith("."):
            raise ValueError(f"model id {model_id!r} cannot name a cache file")
        self.model_id = model_id
        self.path = Path(directory) if directory is not None else cache_dir()
        self.path = self.path / f"{model_id}.npz"
        self._vectors: dict[str, np.ndarray] = {}
        self._status: dict[str, str] = {}
        self._dirty = False
        self._merge(self._read())

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, key: str) -> bool:
        return key in self._vectors

    def get(self, key: str) -> tuple[np.ndarray, str] | None:
        if key not in self._vectors:
            return None
        return self._vectors[key], self._status[key]

    def put(self, keys: Iterable[str], vectors: np.ndarray, statuses: Iterable[str]) -> None:
        keys, statuses = list(keys), list(statuses)
        vectors = np.asarray(vectors, dtype=np.float32)
        if not (len(keys) == len(statuses) == len(vectors)):
            raise ValueError("keys, vectors and statuses must be equally long")
        for k, v, s in zip(keys, vectors, statuses):
            if s not in STATUSES:
                raise ValueError(f"only embedded photos are cached, not status {s!r}")
            self._vectors[k] = v.copy()
            self._status[k] = s
        self._dirty = self._dirty or bool(keys)

    def save(self) -> None:
        """Merge with the file on disk and replace it atomically (temp file + os.replace)."""
        if not self._dirty:
            return
        mine_v, mine_s = self._vectors, self._status
        self._vectors, self._status = {}, {}
        self._merge(self._read())
        self._vectors.update(mine_v)
        self._status.update(mine_s)
        keys = sorted(self._vectors)
        dims = {self._vectors[k].shape for k in keys}
        if len(dims) > 1:  # only a corrupt merge could do this; keep ours
            self._vectors, self._status = mine_v, mine_s
            keys = sorted(mine_v)
        vectors = np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, 0))
        with atomic_open(self.path) as fh:
            np.savez(
                fh,
                keys=np.asarray(keys, dtype="U64"),
                vectors=vectors.astype(np.float32),
                statuses=np.asarray([self._status[k] for k in keys], dtype="U16"),
            )
        self._dirty = False

    def _read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        try:
            with np.load(self.path, allow_pickle=False) as z:
                keys, vectors, statuses = z["keys"], z["vectors"], z["statuses"]
        except Exception:  # zipfile, numpy and OS errors alike: a cache never fails a run
            return None  # missing or unreadable: start afresh, the next save repairs it
        if not (
            keys.ndim == 1 and vectors.ndim == 2 and len(keys) == len(vectors) == len(statuses)
        ):
            return None
        return keys, vectors, statuses

    def _merge(self, data: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> None:
        if data is None:
            return
        keys, vectors, statuses = data
        for k, v, s in zip(keys.tolist(), vectors, statuses.tolist()):
            if s in STATUSES:
                self._vectors[k] = v
                self._status[k] = s
