"""FAISS indexes as galleries build, tune and search them.

An index is ``IndexIDMap2(index_factory(dim, factory))``: exact (``Flat``) by default, and
approximate (HNSW by default) above a gallery's automatic switch. Approximate indexes get
search-time parameters (HNSW ``efSearch``, IVF ``nprobe``) chosen by size unless a gallery pins
them, applied whenever an index is loaded or built, so they follow the gallery's growth.
Benchmarks and tools build indexes here too (``make_index``), exactly as a gallery does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from faceid.errors import GalleryError
from faceid.gallery.base import Match
from faceid.gallery.messages import REPAIR_HINT, _one_line
from faceid.gallery.vectors import _vector_dtype

DEFAULT_APPROX_FACTORY = "HNSW32"
# HNSW efSearch by gallery size: (largest size, efSearch). Recall falls as the graph grows, so
# efSearch grows with it; the target is recall@1 against exact search >= 0.99 at 1M faces in
# well under 2 ms a query (scripts/benchmark.py measures both, with an efSearch sweep, so this
# table can be checked on real embeddings). Searches fetch k * per_person_pool (>= 50)
# neighbours anyway, which is why no value is below 64.
HNSW_EF_SEARCH: tuple[tuple[int, int], ...] = ((100_000, 64), (1_000_000, 128), (2**62, 256))


def _new_index(dim: int, factory: str) -> Any:
    import faiss

    if "idmap" in factory.lower():
        raise GalleryError(f"index factory {factory!r} must not contain IDMap; faceid adds it")
    try:
        inner = faiss.index_factory(dim, factory, faiss.METRIC_L2)
    except RuntimeError as exc:
        raise GalleryError(
            f"FAISS cannot build index factory {factory!r}: {_one_line(exc)}"
        ) from None
    return faiss.IndexIDMap2(inner)


# FAISS warns below 39 training points per centroid (k-means would be poor); PQ-like codes
# train 256 centroids per sub-quantizer.
POINTS_PER_CENTROID = 39


def training_size(factory: str, dim: int = 128) -> int:
    """How many faces an index from `factory` needs before it can be trained (0: none).

    A new gallery asked for such an index (e.g. IVF4096,Flat) starts exact instead, and
    switches once it holds this many, so that the first enrollment does not fail.
    """
    import faiss

    index = _new_index(dim, factory)
    if index.is_trained:
        return 0
    try:
        return POINTS_PER_CENTROID * int(faiss.extract_index_ivf(index.index).nlist)
    except RuntimeError:  # not IVF: product or scalar quantizers
        return POINTS_PER_CENTROID * 256


def _build_index(dim: int, factory: str, vectors: np.ndarray) -> Any:
    """A fresh index holding exactly ``vectors``; trains it first if the factory needs it."""
    index = _new_index(dim, factory)
    if len(vectors):
        x = np.ascontiguousarray(vectors["vector"], dtype=np.float32)
        if not index.is_trained:
            try:
                index.train(x)
            except RuntimeError as exc:
                raise GalleryError(
                    f"cannot train index {factory!r} on {len(x)} embeddings: {_one_line(exc)}"
                ) from None
        index.add_with_ids(x, np.ascontiguousarray(vectors["id"], dtype=np.int64))
    return index


def _parse_index(raw: bytes, where: Path, dim: int) -> Any:
    import faiss

    try:
        index = faiss.deserialize_index(np.frombuffer(raw, dtype=np.uint8).copy())
    except Exception as exc:  # FAISS raises RuntimeError, but allocation failures vary
        raise GalleryError(f"{where} cannot be read ({_one_line(exc)}); {REPAIR_HINT}") from None
    if not isinstance(index, faiss.IndexIDMap2):
        raise GalleryError(f"{where} is not an IndexIDMap2 index; {REPAIR_HINT}")
    if index.d != dim:
        raise GalleryError(f"{where} holds {index.d}-d vectors, expected {dim}; {REPAIR_HINT}")
    return index


def _index_ids(index: Any) -> np.ndarray:
    import faiss

    return faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)


def _is_flat(index: Any) -> bool:
    """Only a flat inner index renumbers on removal the way IndexIDMap2.remove_ids assumes.

    IVF keeps its old internal labels (so the id map would silently point at the wrong
    people) and HNSW cannot remove at all; those are rebuilt from the stored vectors instead.
    """
    import faiss

    return isinstance(faiss.downcast_index(index.index), faiss.IndexFlat)


def inner_index(index: Any) -> Any:
    """The index doing the work, under the IDMap2 (and any IndexPreTransform) wrapper."""
    import faiss

    inner = faiss.downcast_index(index)
    while isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2, faiss.IndexPreTransform)):
        inner = faiss.downcast_index(inner.index)
    return inner


def auto_index_params(index: Any) -> str:
    """Search-time parameters by index type and size, as a FAISS ParameterSpace string.

    HNSW's efSearch grows with the gallery (see HNSW_EF_SEARCH); IVF probes 1/16 of its lists
    (at least 8), which keeps recall@1 near 0.99 for the usual nlist ~ 4*sqrt(n). Exact indexes
    need nothing.
    """
    import faiss

    inner = inner_index(index)
    if isinstance(inner, faiss.IndexHNSW):
        n = int(index.ntotal)
        return f"efSearch={next(ef for limit, ef in HNSW_EF_SEARCH if n <= limit)}"
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        return f"nprobe={min(ivf.nlist, max(8, ivf.nlist // 16))}"
    return ""


def tune_index(index: Any, params: str | None = None) -> str:
    """Apply search-time parameters (``params``, else auto_index_params); returns what was set.

    Exact indexes take none, so a gallery's ``index_params`` wait, harmlessly, until its
    automatic switch makes the index approximate.
    """
    import faiss

    auto = auto_index_params(index)
    if not auto:
        return ""
    chosen = params or auto
    try:
        faiss.ParameterSpace().set_index_parameters(index, chosen)
    except RuntimeError as exc:
        raise GalleryError(f"cannot apply index parameters {chosen!r}: {_one_line(exc)}") from None
    return chosen


def make_index(
    factory: str, vectors: np.ndarray, ids: np.ndarray | None = None, params: str | None = None
) -> Any:
    """An index exactly as a gallery builds and tunes it, for benchmarks and tools.

    Gives scripts the same FAISS construction and search parameters as ``Gallery`` without a
    gallery on disk.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = x.shape[1]
    rows = np.zeros(len(x), dtype=_vector_dtype(dim))
    rows["id"] = np.arange(len(x)) if ids is None else ids
    rows["vector"] = x
    index = _build_index(dim, factory, rows)
    tune_index(index, params)
    return index


@contextlib.contextmanager
def _faiss_threads(n: int) -> Iterator[None]:
    """FAISS's OpenMP threads for this thread's searches in the block (0: unchanged)."""
    import faiss

    before = faiss.omp_get_max_threads()
    if not n or n == before:
        yield
        return
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


# Searches of fewer queries than this run on one thread: a single query has little to split,
# and when other cores are busy (detection, another request) an OpenMP barrier waiting for a
# descheduled thread turned 1.5 ms flat searches at 100k into 16 ms.
_SMALL_SEARCH = 4


def search_people(
    index: Any,
    names: dict[int, str],
    queries: np.ndarray,
    k: int = 1,
    *,
    per_person_pool: int = 50,
    n_people: int | None = None,
) -> list[list[Match]]:
    """Up to k people per query from an IDMap index whose ids ``names`` maps to people.

    The search behind ``Gallery.search`` (see there), usable on an index built in memory.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if index.ntotal == 0:
        return [[] for _ in range(len(q))]
    total = int(index.ntotal)
    people = n_people if n_people is not None else len(set(names.values()))
    wanted = min(k, people)
    fetch = min(total, k * per_person_pool)
    results: list[list[Match]] = [[] for _ in range(len(q))]
    pending = list(range(len(q)))
    while pending:
        with _faiss_threads(1 if len(pending) < _SMALL_SEARCH else 0):
            distances, labels = index.search(q[pending], fetch)
        widen: list[int] = []
        for row, qi in enumerate(pending):
            best: dict[str, Match] = {}
            for dist, label in zip(distances[row].tolist(), labels[row].tolist()):
                name = names.get(label) if label >= 0 else None
                if name is not None and name not in best:
                    best[name] = Match(name, max(0.0, dist), label)
            if len(best) < wanted and fetch < total:
                widen.append(qi)
                continue
            ranked = sorted(best.values(), key=lambda m: (m.distance, m.name))
            results[qi] = ranked[:k]
        pending = widen
        fetch = min(total, fetch * 4)
    return results


def _serialize_index(index: Any) -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()


def _same_ids(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) == len(b) and bool(np.array_equal(np.sort(a), np.sort(b)))
