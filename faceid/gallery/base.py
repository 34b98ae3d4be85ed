"""What every gallery backend offers (the FAISS folder, PostgreSQL), and the checks they share.

The verbs (``faceid.api``) speak only to this protocol, so a backend is one file that
implements it; ``tests/test_gallery_contract.py`` runs the same behaviours against each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


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

    def add(self, embeddings: np.ndarray, names: list[str], sources: list[str]) -> list[int]:
        """Enroll unit embeddings in one atomic write; returns their new ids."""

    def remove(self, name: str) -> int:
        """Forget a person; returns how many embeddings went (NotEnrolled if none)."""

    def rename(self, old: str, new: str) -> int:
        """Rename a person, merging into ``new`` if enrolled; returns embeddings renamed."""

    def search(
        self, queries: np.ndarray, k: int = 1, *, per_person_pool: int = 50
    ) -> list[list[Match]]:
        """Up to k people per query, each scored by their closest embedding, best first."""

    def people(self) -> dict[str, int]:
        """Name -> number of embeddings, sorted by name."""

    def entries(self) -> list[dict]:
        """One row per embedding: id, name, source, added (ISO time), in id order."""

    def vectors(self) -> np.ndarray:
        """Every embedding with its id (``faceid.gallery.vectors`` dtype), in id order."""

    def check(self) -> list[str]:
        """Everything wrong with the gallery, one line each; [] means healthy. Never raises."""

    def repair(self) -> list[str]:
        """Fix what can be fixed without losing anyone; returns the actions taken."""
