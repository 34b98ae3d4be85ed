"""The FAISS folder's files: their names, and reading and writing them whole.

Every generation of a gallery is three files named ``<kind>-<generation>.<suffix>`` beside the
commit point ``manifest.json``; storage, the manifest parser and the doctor all find files by
these names.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from faceid.atomic import atomic_open
from faceid.errors import GalleryError
from faceid.gallery.messages import REPAIR_HINT

MANIFEST = "manifest.json"
LOCK = ".lock"

_GEN_FILE_RE = re.compile(r"(index|vectors|manifest)-(\d{1,18})\.(faiss|npy|json)")
_TMP_RE = re.compile(r"\.(index|vectors|manifest)[-.][^/]*\.tmp")
_GEN_SUFFIX = {"index": "faiss", "vectors": "npy", "manifest": "json"}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gen_name(kind: str, generation: int) -> str:
    return f"{kind}-{generation}.{_GEN_SUFFIX[kind]}"


def _atomic_write(directory: Path, name: str, data: bytes) -> None:
    """Write a file so that it is either absent/old or complete, never partial.

    The caller fsyncs the directory once after a batch of these.
    """
    with atomic_open(directory / name) as fh:
        fh.write(data)


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _generation_files(directory: Path) -> dict[tuple[str, int], str]:
    """(kind, generation) -> file name, for the files this module owns."""
    found: dict[tuple[str, int], str] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return found
    for name in names:
        m = _GEN_FILE_RE.fullmatch(name)
        if m and _GEN_SUFFIX[m.group(1)] == m.group(3):
            found[(m.group(1), int(m.group(2)))] = name
    return found


def _refuse_orphans(path: Path) -> None:
    """Tell a lost manifest (damage) from an interrupted creation (harmless) when there is
    no manifest.json.

    The first write commits an empty generation 0 before anything else, so files of generation
    1 or later prove a manifest was committed and has since been lost; gen-0 files alone are an
    empty gallery whose creation was interrupted, which reads as no gallery at all.
    """
    later = sorted(name for (_, gen), name in _generation_files(path).items() if gen > 0)
    # A lock-free reader may have missed the manifest just before a writer created the
    # gallery and committed more: writers only ever replace the manifest, never remove it,
    # so one that is there now means that read came before the creation, not damage.
    if later and not (path / MANIFEST).exists():
        raise GalleryError(f"{path / MANIFEST} is missing but {later[-1]} exists; {REPAIR_HINT}")
