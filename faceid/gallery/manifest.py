"""The manifest: the FAISS folder's commit point and the only place names live.

``manifest.json`` names the current generation's files and their sha256 digests and lists
every embedding's id, person, source and time of enrolment. This module writes it as
diff-friendly ASCII JSON and validates it completely on the way back in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceid.errors import BadName, GalleryError
from faceid.gallery.layout import _gen_name
from faceid.gallery.messages import REPAIR_HINT, _one_line
from faceid.gallery.names import _short, validate_name

FORMAT_VERSION = 1

_MAX_INT = 2**62  # ids and generations must fit FAISS's int64 with room to spare
_SHA_RE = re.compile(r"[0-9a-f]{64}")
# Optional manifest keys (older galleries lack them): the index policy a gallery carries.
_POLICY_FIELDS: dict[str, type] = {"auto_switch": int, "approx_factory": str, "index_params": str}


class _VersionMismatch(GalleryError):
    """Written by another faceid release; must not be 'repaired' by this one."""


class _ModelMismatch(GalleryError):
    """Written for another model; must not be mixed with or 'repaired' by this one."""


@dataclass
class _Manifest:
    model_id: str
    dim: int
    index_factory: str
    generation: int
    index_file: str
    index_sha256: str
    vectors_file: str
    vectors_sha256: str
    next_id: int
    entries: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> np.ndarray:
        return np.fromiter((e["id"] for e in self.entries), dtype=np.int64, count=len(self.entries))

    def to_json(self) -> bytes:
        """ASCII-only JSON, one entry per line so a person can read and diff it.

        ASCII because any str json.loads produced (even a lone surrogate) can then be written
        back; UTF-8 output would make such a manifest impossible to rewrite.
        """
        head = {
            **{k: v for k, v in self.extra.items() if k != "entries"},
            "format_version": FORMAT_VERSION,
            "model_id": self.model_id,
            "dim": self.dim,
            "index_factory": self.index_factory,
            "generation": self.generation,
            "index_file": self.index_file,
            "index_sha256": self.index_sha256,
            "vectors_file": self.vectors_file,
            "vectors_sha256": self.vectors_sha256,
            "count": len(self.entries),
            "next_id": self.next_id,
        }
        lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=True)}," for k, v in head.items()]
        rows = ",\n".join(f"  {json.dumps(e, ensure_ascii=True)}" for e in self.entries)
        text = "{\n" + "\n".join(lines) + '\n "entries": [\n' + rows + "\n ]\n}\n"
        return text.encode("ascii")


_FIELDS: dict[str, type] = {
    "model_id": str,
    "dim": int,
    "index_factory": str,
    "generation": int,
    "index_file": str,
    "index_sha256": str,
    "vectors_file": str,
    "vectors_sha256": str,
    "count": int,
    "next_id": int,
    "entries": list,
}
_ENTRY_FIELDS: dict[str, type] = {"id": int, "name": str, "source": str, "added": str}


def _is(value: Any, typ: type) -> bool:
    # bool is an int subclass; a manifest saying "dim": true is corrupt, not 1.
    if typ is int:
        return type(value) is int
    return isinstance(value, typ)


def _peek_json(raw: bytes) -> Any:
    """Best-effort peek at format_version/generation without full validation."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _parse_manifest(raw: bytes, where: Path, *, lenient: bool = False) -> _Manifest:
    """Validate a manifest completely; anything odd is a one-line GalleryError naming the file.

    ``lenient`` recomputes the redundant fields (count, next_id) instead of refusing, which is
    how repair() salvages a manifest whose only damage is a bad count.
    """

    def corrupt(detail: str) -> GalleryError:
        return GalleryError(f"{where} is corrupt: {detail}; {REPAIR_HINT}")

    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise corrupt(f"not valid JSON ({_one_line(exc)})") from None
    if not isinstance(data, dict):
        raise corrupt("the top level is not a JSON object")
    version = data.get("format_version")
    if not _is(version, int):
        raise corrupt("format_version is missing or not an integer")
    if version != FORMAT_VERSION:
        raise _VersionMismatch(
            f"{where} has format version {version}, but this faceid reads version "
            f"{FORMAT_VERSION}; use a faceid release that supports it"
        )
    for key, typ in _FIELDS.items():
        if key not in data:
            raise corrupt(f"field {key!r} is missing")
        if not _is(data[key], typ):
            raise corrupt(f"field {key!r} should be {typ.__name__}")
    if not data["model_id"] or not data["index_factory"]:
        raise corrupt("model_id and index_factory must not be empty")
    if not 0 < data["dim"] <= 65536:
        raise corrupt(f"dim {data['dim']} is out of range")
    generation = data["generation"]
    if not 0 <= generation < 10**18:
        raise corrupt("generation is out of range")
    for kind in ("index", "vectors"):
        if data[f"{kind}_file"] != _gen_name(kind, generation):
            raise corrupt(f"{kind}_file should be {_gen_name(kind, generation)!r}")
        if not _SHA_RE.fullmatch(data[f"{kind}_sha256"]):
            raise corrupt(f"{kind}_sha256 is not a sha256 hex digest")

    entries: list[dict[str, Any]] = []
    last_id = -1
    for pos, entry in enumerate(data["entries"]):
        if not isinstance(entry, dict):
            raise corrupt(f"entry {pos} is not an object")
        for key, typ in _ENTRY_FIELDS.items():
            if not _is(entry.get(key), typ):
                raise corrupt(f"entry {pos} has no valid {key!r}")
        if not 0 <= entry["id"] < _MAX_INT:
            raise corrupt(f"entry {pos} has an out-of-range id")
        if entry["id"] <= last_id:
            raise corrupt(f"entry ids are not unique and increasing at entry {pos}")
        last_id = entry["id"]
        try:
            ok = validate_name(entry["name"]) == entry["name"]
        except BadName:
            ok = False
        if not ok:
            raise corrupt(f"entry {pos} has an invalid name {_short(entry['name'])}")
        entries.append({k: entry[k] for k in _ENTRY_FIELDS})

    next_id = data["next_id"]
    if lenient:
        next_id = max(next_id, last_id + 1)
    else:
        if data["count"] != len(entries):
            raise corrupt(f"count is {data['count']} but {len(entries)} entries are listed")
        if next_id <= last_id:
            raise corrupt(f"next_id {next_id} is not above the largest id {last_id}")
    if not 0 <= next_id < _MAX_INT:
        raise corrupt("next_id is out of range")
    for key, typ in _POLICY_FIELDS.items():
        if key in data and not _is(data[key], typ):
            raise corrupt(f"field {key!r} should be {typ.__name__}")
    if data.get("auto_switch", 0) < 0:
        raise corrupt("auto_switch must not be negative")
    if data.get("approx_factory") == "":
        raise corrupt("approx_factory must not be empty")
    extra = {k: v for k, v in data.items() if k not in _FIELDS and k != "format_version"}
    return _Manifest(
        model_id=data["model_id"],
        dim=data["dim"],
        index_factory=data["index_factory"],
        generation=generation,
        index_file=data["index_file"],
        index_sha256=data["index_sha256"],
        vectors_file=data["vectors_file"],
        vectors_sha256=data["vectors_sha256"],
        next_id=next_id,
        entries=entries,
        extra=extra,
    )


def _head_length(raw: bytes) -> int:
    """Length of a manifest's head (everything before the entries), or 0 if unrecognised.

    Every commit writes a new generation number into the head, so an unchanged head of an
    unchanged file (same stat) is the same commit: readers of a 1M-face gallery then compare a
    few hundred bytes per search instead of re-reading ~100 MB of entries.
    """
    end = raw.find(b'\n "entries": [')
    if end < 0 or raw.find(b'"generation"', 0, end) < 0:
        return 0
    return end
