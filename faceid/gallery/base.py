"""What every gallery backend offers (the FAISS folder, PostgreSQL), and the checks they share.

The verbs (``faceid.api``) speak only to this protocol, so a backend is one file that
implements it; ``tests/test_gallery_contract.py`` runs the same behaviours against each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from faceid.errors import UsageError
from faceid.gallery.names import validate_name

_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Match:
    """One person's best hit for one query.

    ``distance`` is squared L2 (what FAISS's L2 indexes return), so thresholds tuned on
    ``IndexFlatL2`` output apply unchanged; ``id`` is the embedding that produced it, which lets
    callers show which enrolment photo matched.
    """

    name: str
    distance: float
    id: int


@runtime_checkable
class GalleryBackend(Protocol):
    """A gallery of enrolled people's embeddings, whatever stores them.

    Every write is atomic (all of it or none of it is visible) and refuses embeddings of
    another model: ``model_id`` is fixed by the first write, and a gallery made by another
    model is refused when opened, since embeddings of different models are not comparable.
    Distances are squared L2 between unit vectors, each person scored by their closest
    embedding.
    """

    model_id: str
    dim: int
    switched: str | None  # the index the last add() switched to, if it did

    @property
    def exists(self) -> bool:
        """Whether anything was ever written (a new gallery is created by its first write)."""

    def __len__(self) -> int:
        """How many embeddings are enrolled."""

    def add(
        self,
        embeddings: np.ndarray,
        names: list[str],
        sources: list[str],
        *,
        added: list[str] | None = None,
    ) -> list[int]:
        """Enroll unit embeddings in one atomic write; returns their new ids.

        ``added`` (ISO times, one per embedding) keeps the enrolment times of a copied gallery;
        by default it is now."""

    def remove(self, name: str) -> int:
        """Forget a person; returns how many embeddings went (NotEnrolled if none)."""

    def rename(self, old: str, new: str, *, merge: bool = True) -> int:
        """Rename a person, merging into ``new`` if enrolled; returns embeddings renamed.

        With ``merge`` false a ``new`` already enrolled is refused (``merge_refused``), checked
        inside the same write as the rename so that no other writer can slip in between."""

    def search(
        self, queries: np.ndarray, k: int = 1, *, per_person_pool: int = 50
    ) -> list[list[Match]]:
        """Up to k people per query, each scored by their closest embedding, best first."""

    def people(self) -> dict[str, int]:
        """Name -> number of embeddings, sorted by name."""

    def entries(self) -> list[dict]:
        """One row per embedding: id, name, source, added (ISO time), in id order."""

    def export(self) -> tuple[list[dict], np.ndarray]:
        """One consistent snapshot: ``entries()`` and their embeddings, row for row."""

    def check(self) -> list[str]:
        """Everything wrong with the gallery, one line each; [] means healthy. Never raises."""

    def repair(self) -> list[str]:
        """Fix what can be fixed without losing anyone; returns the actions taken."""


def merge_refused(old: str, new: str, taken: int) -> UsageError:
    """The error for a rename onto an enrolled name without ``merge``: a merge cannot be undone."""
    return UsageError(
        f"{new!r} is already enrolled ({taken} photo(s)): renaming {old!r} onto it "
        "would merge two people for good; use `merge` if that is what you want",
        param="merge",
    )


def as_matrix(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 (n, dim) matrix of finite values, or ValueError."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {np.shape(x)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return np.ascontiguousarray(arr)


def check_new_faces(
    embeddings: np.ndarray,
    names: Sequence[str],
    sources: Sequence[str],
    dim: int,
    added: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Validate what an add() is given, the same way for every backend.

    Returns the embeddings as a matrix and the names in canonical form. Embeddings must be
    L2-normalised: distance thresholds are calibrated on unit vectors, and an unnormalised one
    would silently never (or always) match.
    """
    x = as_matrix(embeddings, dim, "embeddings")
    if isinstance(names, str) or isinstance(sources, str):
        raise TypeError("names and sources must be lists of strings, one per embedding")
    names = list(names)
    sources = list(sources)
    if not len(x) == len(names) == len(sources):
        raise ValueError(f"got {len(x)} embeddings, {len(names)} names and {len(sources)} sources")
    if added is not None and len(added) != len(x):
        raise ValueError(f"got {len(x)} embeddings and {len(added)} enrolment times")
    if not len(x):
        return x, [], []
    norms = np.linalg.norm(x, axis=1)
    if np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
        raise ValueError("embeddings must be L2-normalised (unit length)")
    clean = [validate_name(n) for n in names]
    for s in [*sources, *(added or [])]:
        if not isinstance(s, str):
            raise TypeError(f"sources and times must be strings, got {type(s).__name__}")
    return x, clean, sources


# (distance, embedding id, person or None) for each neighbour of one query, nearest first.
Neighbours = list[tuple[float, int, "str | None"]]


def best_per_person(
    nearest: Callable[[list[int], int], list[Neighbours]],
    n_queries: int,
    k: int,
    per_person_pool: int,
    *,
    total: int | None = None,
    n_people: int | None = None,
) -> list[list[Match]]:
    """Up to k people per query, each scored by their closest embedding: the search every
    backend runs over its own nearest-neighbour call.

    Someone enrolled from 40 photos must not crowd everyone else out of the top k, so
    ``nearest(queries, fetch)`` is asked for k * per_person_pool neighbours and each person's
    first (closest) hit is kept. A query that yields fewer than k people widens (4x) until it
    does or the gallery is exhausted: ``fetch`` reaches ``total`` when the backend knows its
    size, else a neighbour list shorter than asked says there is no more. With an exact
    nearest() the result is exactly the k people with the smallest distances.
    """
    wanted = k if n_people is None else min(k, n_people)
    fetch = k * per_person_pool if total is None else min(total, k * per_person_pool)
    results: list[list[Match]] = [[] for _ in range(n_queries)]
    pending = list(range(n_queries))
    while pending:
        widen: list[int] = []
        for qi, hits in zip(pending, nearest(pending, fetch)):
            best: dict[str, Match] = {}
            for dist, label, name in hits:
                if name is not None and name not in best:
                    best[name] = Match(name, max(0.0, dist), label)
            more = fetch < total if total is not None else len(hits) >= fetch
            if len(best) < wanted and more:
                widen.append(qi)
                continue
            results[qi] = sorted(best.values(), key=lambda m: (m.distance, m.name))[:k]
        pending = widen
        fetch = fetch * 4 if total is None else min(total, fetch * 4)
    return results
