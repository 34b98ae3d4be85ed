"""Before a face is enrolled: is it already there, or does it already pass for someone else?

Both are usually mistakes (the same photo enrolled again; a photo filed under the wrong
name), and both are cheap to catch at enrollment and expensive later, when identify starts
answering with the wrong person. The checks:

- the same face: the embedding is (numerically) the one of a face already enrolled, or of
  another photo in the same enrollment. Identical pixels give identical crops and embeddings,
  so this catches an exact duplicate photo whatever its file name or format.
- someone else: the nearest enrolled person is another name and within the identification
  threshold, i.e. `identify` would answer with that name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceid.distance import squared_l2

# Squared distance under which two embeddings are the same face: rounding between batch sizes
# moves an embedding by ~1e-7; two different photos of one person are ~0.1 or more apart.
SAME_FACE = 1e-4


@dataclass
class Candidate:
    name: str
    source: str
    embedding: np.ndarray


def duplicate_reasons(candidates: list[Candidate], gallery, threshold: float) -> list[str | None]:
    """For each candidate, why it should not be enrolled (naming who), or None.

    Candidates are judged in order against the gallery and against the earlier candidates
    that passed, as if each were enrolled in turn.
    """
    if not candidates:
        return []
    hits: list[list] = [[] for _ in candidates]
    if gallery.exists and len(gallery):
        hits = gallery.search(np.stack([c.embedding for c in candidates]), 2)
    sources: dict[int, str] | None = None
    passed: list[Candidate] = []
    reasons: list[str | None] = []
    for cand, hit in zip(candidates, hits):
        nearest = [(float(m.distance), m.name, ("id", m.id)) for m in hit[:1]]
        if passed:
            d = squared_l2(np.stack([p.embedding for p in passed]), cand.embedding)
            j = int(np.argmin(d))
            nearest.append((float(d[j]), passed[j].name, ("source", passed[j].source)))
        reason = None
        if nearest:
            dist, other, (kind, ref) = min(nearest, key=lambda t: t[0])
            if dist <= SAME_FACE:
                if kind == "id":
                    if sources is None:
                        sources = {e["id"]: e["source"] for e in gallery.entries()}
                    ref = sources.get(ref, "?")
                reason = f"the same face is already enrolled as {other!r} (from {ref})"
            elif other != cand.name and dist <= threshold:
                reason = (
                    f"looks like {other!r}, who is already enrolled: distance {dist:.4f} is "
                    f"within the identification threshold {threshold:.4f}"
                )
        reasons.append(reason)
        if reason is None:
            passed.append(cand)
    return reasons
