"""Doctor and repair for the FAISS folder: find every disagreement between its files, and
rebuild what can be rebuilt without losing anyone.

Names live only in manifests, vectors in the vectors and index files of any generation (ids are
never reused, so any intact copy will do). ``Doctor`` is a mixin of the folder gallery
(``faceid.gallery.store.Gallery``): it uses the gallery's lock, parser and commit, and the
gallery uses ``_verify_files`` to refuse writing on top of damage.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceid.errors import GalleryError
from faceid.gallery.faiss_index import _build_index, _index_ids, _parse_index, _same_ids
from faceid.gallery.layout import (
    MANIFEST,
    _gen_name,
    _generation_files,
    _read_bytes,
    _sha256,
)
from faceid.gallery.manifest import _Manifest, _ModelMismatch, _peek_json, _VersionMismatch
from faceid.gallery.messages import REPAIR_HINT, _one_line
from faceid.gallery.names import _short
from faceid.gallery.vectors import _parse_vectors, _vector_dtype


@dataclass
class _Diagnosis:
    problems: list[str] = field(default_factory=list)
    manifest: _Manifest | None = None
    fatal: GalleryError | None = None  # version/model mismatch: not ours to touch
    index: Any = None
    vectors: np.ndarray | None = None
    index_problem: str | None = None
    vectors_problem: str | None = None
    backup_ok: bool = True


def _disagree(index_path: Path, manifest_path: Path, index_ids: np.ndarray, ids: np.ndarray) -> str:
    if len(index_ids) != len(ids):
        detail = f"the index holds {len(index_ids)} embeddings, the manifest lists {len(ids)}"
    else:
        detail = "they hold different embedding ids"
    return f"{index_path} and {manifest_path} disagree: {detail}; {REPAIR_HINT}"


class Doctor:
    """check() and repair() of a FAISS folder gallery (mixed into ``Gallery``)."""

    path: Path
    _manifest_path: Path

    # ---------------------------------------------------------------- doctor

    def _read_checked(self, kind, path, digest, ids, parse, ids_of, same):
        """(parsed file, None) when `path` matches its digest and the manifest's ids,
        else (None, the problem in one line)."""
        try:
            data = _read_bytes(path)
            if _sha256(data) != digest:
                raise GalleryError(
                    f"{kind} file {path} is corrupt (sha256 does not match the manifest); "
                    f"{REPAIR_HINT}"
                )
            value = parse(data)
            found = ids_of(value)
            if not same(found, ids):
                raise GalleryError(_disagree(path, self._manifest_path, found, ids))
            return value, None
        except FileNotFoundError:
            return None, f"{kind} file {path} is missing; {REPAIR_HINT}"
        except OSError as exc:
            return None, f"cannot read {path}: {exc.strerror}"
        except GalleryError as exc:
            return None, str(exc)

    def _verify_files(self, diag: _Diagnosis) -> None:
        """Check the index, vectors and backup named by diag.manifest; record problems."""
        manifest = diag.manifest
        assert manifest is not None
        ids = manifest.ids
        index_path = self.path / manifest.index_file
        vectors_path = self.path / manifest.vectors_file
        index, diag.index_problem = self._read_checked(
            "index",
            index_path,
            manifest.index_sha256,
            ids,
            lambda data: _parse_index(data, index_path, manifest.dim),
            _index_ids,
            _same_ids,
        )
        vectors, diag.vectors_problem = self._read_checked(
            "vectors",
            vectors_path,
            manifest.vectors_sha256,
            ids,
            lambda data: _parse_vectors(data, vectors_path, manifest.dim),
            lambda v: v["id"],
            np.array_equal,
        )
        if index is not None:
            diag.index = index
        if vectors is not None:
            diag.vectors = vectors
        backup = self.path / _gen_name("manifest", manifest.generation)
        if not backup.is_file():
            diag.backup_ok = False
        diag.problems += [p for p in (diag.index_problem, diag.vectors_problem) if p]
        if not diag.backup_ok:
            diag.problems.append(f"backup manifest {backup} is missing; {REPAIR_HINT}")

    def _diagnose(self) -> _Diagnosis:
        diag = _Diagnosis()
        if not self.path.exists():
            return diag
        if not self.path.is_dir():
            diag.problems.append(f"gallery path {self.path} is not a directory")
            return diag
        try:
            raw = _read_bytes(self._manifest_path)
        except FileNotFoundError:
            try:
                self._refuse_orphans()
            except GalleryError as exc:
                diag.problems.append(str(exc))
            return diag
        except OSError as exc:
            diag.problems.append(f"cannot read {self._manifest_path}: {exc.strerror}")
            return diag
        try:
            diag.manifest = self._parse(raw)
        except (_VersionMismatch, _ModelMismatch) as exc:
            diag.fatal = exc
            diag.problems.append(str(exc))
            return diag
        except GalleryError as exc:
            diag.problems.append(str(exc))
            return diag
        self._verify_files(diag)
        return diag

    def check(self) -> list[str]:
        """Everything wrong with the gallery on disk, one line each; [] means healthy.

        Never raises for damage, since it is what you run when things are damaged. It takes
        the lock when it can so a concurrent writer's cleanup is not mistaken for damage.
        """
        try:
            if self.exists:
                with contextlib.suppress(GalleryError), self._locked():
                    return self._diagnose().problems
            return self._diagnose().problems
        except Exception as exc:  # last resort: a doctor that crashes is no use
            return [f"unexpected error while checking {self.path}: {_one_line(exc)}"]

    def repair(self) -> list[str]:
        """Fix what can be fixed without losing people; returns the actions taken.

        Names live only in manifests, vectors in vectors/index files of any generation (ids are
        never reused, so any intact copy will do). Repair picks the best readable manifest,
        collects each listed id's vector from files whose sha256 some manifest vouches for,
        rebuilds the index and commits a fresh generation. Entries are dropped only when no
        intact copy of their vector exists anywhere, and each drop is reported. Raises
        GalleryError when the gallery belongs to another model/format or no manifest at all
        can be recovered (nothing is deleted then).
        """
        if not self.path.is_dir() or (not self.exists and not _generation_files(self.path)):
            return []
        with self._mutex, self._locked():
            try:
                return self._repair_locked()
            except OSError as exc:
                raise GalleryError(f"cannot repair gallery {self.path}: {exc}") from None

    def _repair_locked(self) -> list[str]:
        actions: list[str] = []
        diag = self._diagnose()
        if diag.fatal is not None:
            raise diag.fatal
        if not diag.problems:
            leftovers = self._cleanup(diag.manifest.generation) if diag.manifest else 0
            if leftovers:
                actions.append(f"removed {leftovers} leftover temporary file(s)")
            return actions

        manifest = diag.manifest
        if manifest is None:
            manifest, how = self._recover_manifest()
            actions.append(how)
        vectors = self._recover_vectors(manifest, diag, actions)

        known = {int(i) for i in vectors["id"]}
        lost = [e for e in manifest.entries if e["id"] not in known]
        if lost:
            manifest.entries = [e for e in manifest.entries if e["id"] in known]
            for name, n in sorted(Counter(e["name"] for e in lost).items()):
                actions.append(
                    f"dropped {n} embedding(s) of {_short(name)}: no intact copy of their "
                    "vectors exists; re-enroll them"
                )
        if diag.index is not None and diag.vectors is not None and not lost:
            index = diag.index
        else:
            index = _build_index(manifest.dim, manifest.index_factory, vectors)
            if diag.index_problem or lost:
                actions.append(f"rebuilt the {manifest.index_factory!r} index from stored vectors")
        self._commit(manifest, index, vectors)
        actions.append(
            f"wrote generation {manifest.generation} ({manifest.index_file}, "
            f"{manifest.vectors_file}, manifest) holding {len(manifest.entries)} embedding(s) "
            f"of {len({e['name'] for e in manifest.entries})} people"
        )
        return actions

    def _recover_manifest(self) -> tuple[_Manifest, str]:
        """The best manifest still readable: its own generation's backup, a salvaged
        manifest.json (only the redundant count/next_id wrong), then the newest backup."""
        try:
            raw: bytes | None = _read_bytes(self._manifest_path)
        except FileNotFoundError:
            raw = None
        peek = _peek_json(raw) if raw is not None else None
        backups = sorted(
            (
                (gen, name)
                for (kind, gen), name in _generation_files(self.path).items()
                if kind == "manifest"
            ),
            reverse=True,
        )
        reason = "missing" if raw is None else "corrupt"
        own_gen = peek.get("generation") if isinstance(peek, dict) else None
        candidates: list[tuple[str, Callable[[], _Manifest]]] = []
        for gen, name in backups:
            if gen == own_gen:
                candidates.append((name, lambda n=name: self._parse_backup(n)))
        if raw is not None:
            candidates.append((MANIFEST, lambda: self._parse(raw, lenient=True)))
        for gen, name in backups:
            if gen != own_gen:
                candidates.append((name, lambda n=name: self._parse_backup(n)))
        errors: list[str] = []
        for name, load in candidates:
            try:
                manifest = load()
            except (_VersionMismatch, _ModelMismatch):
                if name == MANIFEST:
                    raise
                continue
            except (GalleryError, OSError) as exc:
                errors.append(_one_line(exc))
                continue
            if name == MANIFEST:
                return manifest, f"{MANIFEST} had inconsistent count/next_id; recomputed them"
            return manifest, f"{MANIFEST} was {reason}; restored it from backup {name}"
        raise GalleryError(
            f"{self._manifest_path} is {reason} and no backup manifest is usable, so the names "
            "of enrolled people cannot be recovered; nothing was changed"
        )

    def _parse_backup(self, name: str) -> _Manifest:
        return self._parse(_read_bytes(self.path / name), self.path / name)

    def _recover_vectors(
        self, manifest: _Manifest, diag: _Diagnosis, actions: list[str]
    ) -> np.ndarray:
        """Vectors for the manifest's ids, in its order, from every trustworthy source.

        A file is trusted only if its sha256 matches what some manifest recorded for it: FAISS
        is not robust to arbitrary bytes, and a silently wrong vector would misidentify people.
        """
        wanted = manifest.ids
        found: dict[int, np.ndarray] = {}
        if diag.manifest is manifest and diag.vectors is not None:
            found.update(zip(diag.vectors["id"].tolist(), diag.vectors["vector"]))
        if len(found) < len(wanted):
            for where, ids, vecs in self._trusted_sources(manifest):
                before = len(found)
                need = set(wanted.tolist()) - found.keys()
                for i, v in zip(ids.tolist(), vecs):
                    if i in need:
                        found[i] = v
                if len(found) > before:
                    actions.append(f"recovered {len(found) - before} vector(s) from {where}")
                if len(found) == len(wanted):
                    break
        rows = np.zeros(len(wanted), dtype=_vector_dtype(manifest.dim))
        keep = np.array([i in found for i in wanted.tolist()], dtype=bool)
        rows["id"] = wanted
        for pos, i in enumerate(wanted.tolist()):
            if keep[pos]:
                rows["vector"][pos] = found[i]
        return rows[keep]

    def _trusted_sources(self, manifest: _Manifest) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(file, ids, vectors) from files whose digest some manifest vouches for, best first:
        the target generation's vectors, then its index, then other generations newest first."""
        vouched: dict[str, set[str]] = {}

        def vouch(data: Any) -> None:
            if isinstance(data, dict):
                for kind in ("index", "vectors"):
                    name, digest = data.get(f"{kind}_file"), data.get(f"{kind}_sha256")
                    if isinstance(name, str) and isinstance(digest, str):
                        vouched.setdefault(name, set()).add(digest)

        vouch(
            {
                "index_file": manifest.index_file,
                "index_sha256": manifest.index_sha256,
                "vectors_file": manifest.vectors_file,
                "vectors_sha256": manifest.vectors_sha256,
            }
        )
        files = _generation_files(self.path)
        with contextlib.suppress(OSError):
            vouch(_peek_json(_read_bytes(self._manifest_path)))
        for (kind, _), name in files.items():
            if kind == "manifest":
                with contextlib.suppress(OSError):
                    vouch(_peek_json(_read_bytes(self.path / name)))

        def rank(item: tuple[tuple[str, int], str]) -> tuple[int, int, int]:
            (kind, gen), _ = item
            return (gen != manifest.generation, -gen, kind != "vectors")

        for (kind, _), name in sorted(files.items(), key=rank):
            if kind == "manifest" or name not in vouched:
                continue
            where = self.path / name
            try:
                data = _read_bytes(where)
                if _sha256(data) not in vouched[name]:
                    continue
                if kind == "vectors":
                    arr = _parse_vectors(data, where, manifest.dim)
                    yield name, arr["id"], arr["vector"]
                else:
                    index = _parse_index(data, where, manifest.dim)
                    ids = _index_ids(index)
                    vecs = (
                        np.stack([index.reconstruct(int(i)) for i in ids])
                        if len(ids)
                        else (np.zeros((0, manifest.dim), np.float32))
                    )
                    if np.isfinite(vecs).all():
                        yield name, ids, vecs
            except (OSError, GalleryError, RuntimeError):
                continue
