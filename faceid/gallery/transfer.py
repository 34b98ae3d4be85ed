"""Copying a gallery between backends (a FAISS folder and PostgreSQL, either way).

Embeddings are copied as stored, never re-encoded: no photos or model are needed, and the copy
answers exactly as the original. Both galleries must belong to one model.
"""

from __future__ import annotations

from faceid.errors import GalleryError
from faceid.gallery.locate import Location, inspect, open_gallery


def copy_gallery(source: Location, destination: Location, *, batch: int = 50_000) -> dict:
    """Copy every embedding of ``source`` into ``destination`` (created if absent).

    The destination must be empty or hold the same model's embeddings of nobody in the source
    (copying twice would enroll everyone twice), and is refused when it was made by another
    model. A new destination searches exactly up to the source's index switch and builds its
    own approximate index (its backend's default) past it. Returns what was copied.
    """
    info = inspect(source)
    if not info["exists"]:
        raise GalleryError(f"there is no gallery at {info['path']} to copy")
    model_id, dim = info["model_id"], info["dim"]
    src = open_gallery(source, model_id=model_id, dim=dim)
    target = inspect(destination)
    if target["exists"] and target["model_id"] != model_id:
        raise GalleryError(
            f"gallery {target['path']} was made with model {target['model_id']!r} but "
            f"{info['path']} with {model_id!r}; embeddings of different models are not "
            "comparable, so copy into another gallery"
        )
    both = sorted(set(target["people"]) & set(info["people"]))
    if both:
        raise GalleryError(
            f"{target['path']} already holds {len(both)} of the people being copied (e.g. "
            f"{both[0]!r}); copy into an empty gallery"
        )
    dst = open_gallery(
        destination,
        model_id=model_id,
        dim=dim,
        auto_switch=None if target["exists"] else (info["auto_switch"] or 0),
    )
    entries, vectors = src.export()
    for start in range(0, len(entries), batch):
        rows = entries[start : start + batch]
        dst.add(
            vectors[start : start + batch],
            [e["name"] for e in rows],
            [e["source"] for e in rows],
            added=[e["added"] for e in rows],
        )
    return {
        "source": info["path"],
        "destination": target["path"],
        "model_id": model_id,
        "faces": len(entries),
        "people": len({e["name"] for e in entries}),
    }
