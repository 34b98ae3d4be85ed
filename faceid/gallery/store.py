"""The FAISS folder gallery: embeddings in a FAISS index on disk, plus a JSON manifest.

People trust the gallery never to lose anyone, so the on-disk layout is built around one
atomic commit point and enough redundancy to rebuild everything else:

``manifest.json``
    The commit point. It names the current generation's files and their sha256 digests and
    lists every embedding's id, person name, source and time of enrolment. A write becomes
    visible at the single ``os.replace`` onto this file and not before.
``index-<gen>.faiss``
    ``IndexIDMap2(index_factory(dim, factory))`` serialised; what searches read.
``vectors-<gen>.npy``
    The raw embeddings with their ids (a structured array, never pickled) so a lost or corrupt
    index can be rebuilt, or the gallery moved to another index type.
``manifest-<gen>.json``
    A byte-identical copy of each generation's manifest, so a hand-damaged ``manifest.json``
    (the only place names live) can be restored by ``repair()`` instead of losing everyone.
``.lock``
    Serialises writers across processes.

Every write takes the lock, re-reads the state from disk, writes the new generation's files
(temp file, fsync, rename, fsync directory), then replaces ``manifest.json`` and finally deletes
files older than the previous generation (kept so lock-free readers that read the previous
manifest can still open its files). Readers take no lock; if a file they were told about has
vanished they re-read the manifest and try again.

Embedding ids are never reused, so an id's vector is the same in every generation that holds
it; ``repair()`` relies on that to recover vectors from whichever intact file still has them.

Search at scale: the index is exact (``Flat``) by default. A gallery can record an automatic
switch (``auto_switch``): the write that takes it above that many embeddings rebuilds the index
with ``approx_factory`` (HNSW by default) from the stored vectors, and the manifest records the
new factory, so every later reader and writer uses it. Approximate indexes get search-time
parameters (HNSW ``efSearch``, IVF ``nprobe``) chosen by size unless the manifest pins them
with ``index_params``; they are applied whenever an index is loaded or built, so they follow the
gallery's growth without rewriting its files.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from faceid.atomic import fsync_dir
from faceid.errors import GalleryError, NotEnrolled
from faceid.gallery.base import Match, as_matrix, check_new_faces, merge_refused
from faceid.gallery.doctor import Doctor, _Diagnosis, _disagree
from faceid.gallery.faiss_gpu import to_gpu
from faceid.gallery.faiss_index import (
    DEFAULT_APPROX_FACTORY,
    _build_index,
    _index_ids,
    _is_flat,
    _new_index,
    _parse_index,
    _same_ids,
    _serialize_index,
    search_people,
    tune_index,
)
from faceid.gallery.layout import (
    _TMP_RE,
    LOCK,
    MANIFEST,
    _atomic_write,
    _gen_name,
    _generation_files,
    _read_bytes,
    _refuse_orphans,
    _sha256,
)
from faceid.gallery.manifest import (
    FORMAT_VERSION,
    _head_length,
    _is,
    _Manifest,
    _ModelMismatch,
    _parse_manifest,
    _peek_json,
    _VersionMismatch,
)
from faceid.gallery.messages import REPAIR_HINT
from faceid.gallery.names import _short, validate_name
from faceid.gallery.vectors import _parse_vectors, _serialize_vectors, _vector_dtype

_READ_RETRIES = 20


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class _State:
    """One consistent snapshot: a manifest and the index it names."""

    raw: bytes  # manifest bytes; comparing them is how readers notice a new commit
    manifest: _Manifest
    index: Any
    names: dict[int, str]
    n_people: int = 0
    stamp: tuple[int, ...] | None = None  # manifest.json's stat when `raw` was read
    head: int = 0  # bytes of `raw` up to the entries: generation, digests, count
    searcher: Any = None  # the index searches use: `index`, or its GPU copy (faiss_gpu)

    def __post_init__(self) -> None:
        self.n_people = len(set(self.names.values()))
        self.head = _head_length(self.raw)


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Gallery(Doctor):
    """A directory of enrolled people that is safe against crashes and concurrent writers.

    Nothing is created until the first write, so pointing a Gallery at a path is free. The
    constructor refuses a gallery made by another model or another format version (their
    embeddings are not comparable), but does not validate the rest: a damaged gallery must stay
    openable so ``check()`` and ``repair()`` can run. Damage is reported by the first read.

    ``index_factory`` only applies when the gallery is created; afterwards the factory recorded
    in the manifest is used, so a config change cannot silently mix index types.

    ``auto_switch`` (embeddings; 0 = never), ``approx_factory`` and ``index_params`` (a FAISS
    ParameterSpace string such as ``"efSearch=256"`` for approximate indexes; empty = chosen by
    size) are the gallery's index policy. Given (not None), they are recorded in the manifest
    by the next write and kept from then on; None means "whatever the manifest records" (for a
    new gallery: no switch, ``DEFAULT_APPROX_FACTORY``, automatic parameters). The switch is
    one way: an approximate index stays approximate if people are later removed.

    ``search_device="cuda"`` searches a GPU copy of the index where FAISS has GPU support and
    the gallery is large enough for that to pay (``faceid.faiss_gpu``); otherwise, and always
    for writes, the CPU index serves.
    """

    lock_timeout: float = 120.0

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        model_id: str,
        dim: int = 128,
        index_factory: str = "Flat",
        auto_switch: int | None = None,
        approx_factory: str | None = None,
        index_params: str | None = None,
        search_device: str = "cpu",
    ) -> None:
        if not isinstance(model_id, str) or not model_id:
            raise ValueError("model_id must be a non-empty string")
        if type(dim) is not int or not 0 < dim <= 65536:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not isinstance(index_factory, str) or not index_factory.strip():
            raise ValueError("index_factory must be a non-empty FAISS factory string")
        if auto_switch is not None and (type(auto_switch) is not int or auto_switch < 0):
            raise ValueError(f"auto_switch must be an integer >= 0 or None, got {auto_switch!r}")
        if approx_factory is not None and (
            not isinstance(approx_factory, str) or not approx_factory.strip()
        ):
            raise ValueError("approx_factory must be a non-empty FAISS factory string")
        if approx_factory is not None and "idmap" in approx_factory.lower():
            raise ValueError(f"approx_factory {approx_factory!r} must not contain IDMap")
        if index_params is not None and not isinstance(index_params, str):
            raise ValueError("index_params must be a FAISS ParameterSpace string")
        if search_device not in ("cpu", "cuda"):
            raise ValueError(f"search_device must be 'cpu' or 'cuda', got {search_device!r}")
        self._setup(Path(path), model_id, dim, index_factory)
        self.search_device = search_device
        self._policy = {
            k: v
            for k, v in (
                ("auto_switch", auto_switch),
                ("approx_factory", approx_factory),
                ("index_params", index_params),
            )
            if v is not None
        }
        if self.path.exists() and not self.path.is_dir():
            raise GalleryError(f"gallery path {self.path} exists but is not a directory")
        try:
            raw = _read_bytes(self._manifest_path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise GalleryError(f"cannot read {self._manifest_path}: {exc.strerror}") from None
        self._check_identity(_peek_json(raw))

    @classmethod
    def open_for_doctor(cls, path: str | os.PathLike[str]) -> Gallery:
        """Open a gallery for check()/repair() without knowing which model made it.

        The doctor must work when the model is missing or the manifest is damaged, so the
        identity comes from whichever manifest still says it (manifest.json, then the newest
        backup) and nothing is refused here: check() reports what is wrong, repair() refuses.
        """
        path = Path(path)
        sources = [MANIFEST] + [
            name
            for (kind, _), name in sorted(_generation_files(path).items(), reverse=True)
            if kind == "manifest"
        ]
        model_id, dim, factory = "unknown", 128, "Flat"
        for name in sources:
            try:
                data = _peek_json(_read_bytes(path / name))
            except OSError:
                continue
            if (
                isinstance(data, dict)
                and isinstance(data.get("model_id"), str)
                and data["model_id"]
                and _is(data.get("dim"), int)
                and 0 < data["dim"] <= 65536
            ):
                model_id, dim = data["model_id"], data["dim"]
                if isinstance(data.get("index_factory"), str) and data["index_factory"].strip():
                    factory = data["index_factory"]
                break
        gallery = cls.__new__(cls)
        gallery._setup(path, model_id, dim, factory)
        return gallery

    def _setup(self, path: Path, model_id: str, dim: int, index_factory: str) -> None:
        self.path = path
        self.model_id = model_id
        self.dim = dim
        self.index_factory = index_factory
        self._manifest_path = path / MANIFEST
        self._cache: _State | None = None
        self._mutex = threading.RLock()
        self._policy: dict[str, Any] = {}
        self.switched: str | None = None  # the factory the last add() switched the index to
        self.search_device = "cpu"

    def __repr__(self) -> str:
        return f"Gallery({str(self.path)!r}, model_id={self.model_id!r})"

    # ---------------------------------------------------------------- identity

    def _check_identity(self, data: Any) -> None:
        """Refuse foreign galleries early, from whatever of the manifest is readable."""
        if not isinstance(data, dict):
            return
        version = data.get("format_version")
        if _is(version, int) and version != FORMAT_VERSION:
            raise _VersionMismatch(
                f"{self._manifest_path} has format version {version}, but this faceid reads "
                f"version {FORMAT_VERSION}; use a faceid release that supports it"
            )
        model = data.get("model_id")
        if isinstance(model, str) and model != self.model_id:
            raise _ModelMismatch(
                f"gallery {self.path} was made with model {_short(model)} but model "
                f"{_short(self.model_id)} is loaded; embeddings of different models are not "
                "comparable, so use another gallery or re-enroll everyone"
            )
        dim = data.get("dim")
        if _is(dim, int) and dim != self.dim:
            raise _ModelMismatch(
                f"gallery {self.path} holds {dim}-d embeddings but the loaded model makes "
                f"{self.dim}-d ones"
            )

    def _parse(self, raw: bytes, where: Path | None = None, *, lenient: bool = False) -> _Manifest:
        manifest = _parse_manifest(raw, where or self._manifest_path, lenient=lenient)
        self._check_identity({"model_id": manifest.model_id, "dim": manifest.dim})
        return manifest

    # ---------------------------------------------------------------- reading

    @property
    def exists(self) -> bool:
        return self._manifest_path.is_file()

    def _read_state(self) -> _State | None:
        """Latest committed snapshot, lock-free; None when no gallery exists yet.

        Retries when a concurrent writer deletes the files named by the manifest we just read;
        a file that stays missing while the manifest is unchanged is real damage.
        """
        for _ in range(_READ_RETRIES):
            with self._mutex:
                cache = self._cache
            try:
                raw, stamp = self._read_manifest(cache)
            except FileNotFoundError:
                self._refuse_orphans()
                return None
            except OSError as exc:
                raise GalleryError(f"cannot read {self._manifest_path}: {exc.strerror}") from None
            if raw is None:
                return cache
            with self._mutex:
                if self._cache is not None and self._cache.raw == raw:
                    self._cache.stamp = stamp
                    return self._cache
            manifest = self._parse(raw)
            index_path = self.path / manifest.index_file
            data = self._read_named(raw, index_path, manifest.index_sha256, "index")
            if data is None:
                continue
            index = _parse_index(data, index_path, manifest.dim)
            ids = manifest.ids
            index_ids = _index_ids(index)
            if not _same_ids(index_ids, ids):
                raise GalleryError(_disagree(index_path, self._manifest_path, index_ids, ids))
            tune_index(index, manifest.extra.get("index_params"))
            names = {e["id"]: e["name"] for e in manifest.entries}
            state = _State(raw, manifest, index, names, stamp=stamp)
            with self._mutex:
                self._cache = state
            return state
        raise GalleryError(f"gallery {self.path} kept changing while being read; try again")

    def _read_named(self, raw: bytes, path: Path, digest: str, kind: str) -> bytes | None:
        """A file that the manifest ``raw`` names, checked against its digest; None when a
        concurrent commit has replaced that manifest meanwhile (read the new one)."""
        try:
            data = _read_bytes(path)
        except FileNotFoundError:
            if self._manifest_changed(raw):
                return None
            raise GalleryError(f"{kind} file {path} is missing; {REPAIR_HINT}") from None
        except OSError as exc:
            raise GalleryError(f"cannot read {path}: {exc.strerror}") from None
        if _sha256(data) != digest:
            if self._manifest_changed(raw):
                return None
            raise GalleryError(
                f"{kind} file {path} is corrupt (sha256 does not match the manifest); {REPAIR_HINT}"
            )
        return data

    def _read_manifest(self, cache: _State | None) -> tuple[bytes | None, tuple[int, ...]]:
        """manifest.json's bytes and stat; None for the bytes when they are the cached ones.

        The stat and the bytes come from one open file, so a concurrent os.replace cannot pair
        one file's stat with the other's content.
        """
        with open(self._manifest_path, "rb") as fh:
            stamp = _stamp(os.fstat(fh.fileno()))
            if cache is not None and cache.head and cache.stamp == stamp:
                if fh.read(cache.head) == cache.raw[: cache.head]:
                    return None, stamp
                fh.seek(0)
            return fh.read(), stamp

    def _manifest_changed(self, raw: bytes) -> bool:
        try:
            return _read_bytes(self._manifest_path) != raw
        except OSError:
            return True

    def _refuse_orphans(self) -> None:
        _refuse_orphans(self.path)

    def __len__(self) -> int:
        state = self._read_state()
        return 0 if state is None else len(state.manifest.entries)

    def people(self) -> dict[str, int]:
        """Name -> number of embeddings, sorted by name, from one consistent snapshot."""
        state = self._read_state()
        if state is None:
            return {}
        counts = Counter(e["name"] for e in state.manifest.entries)
        return dict(sorted(counts.items()))

    def entries(self) -> list[dict]:
        """Copies of the manifest rows, so callers cannot alter the cached snapshot."""
        state = self._read_state()
        return [] if state is None else [dict(e) for e in state.manifest.entries]

    def export(self) -> tuple[list[dict], np.ndarray]:
        """The entries and, row for row, their embeddings, from one committed generation.

        The vectors come from the vectors file (checked against the manifest's digest), the
        source of truth that also rebuilds indexes: what copying to another backend reads.
        """
        for _ in range(_READ_RETRIES):
            state = self._read_state()
            if state is None:
                return [], np.zeros((0, self.dim), np.float32)
            manifest = state.manifest
            path = self.path / manifest.vectors_file
            data = self._read_named(state.raw, path, manifest.vectors_sha256, "vectors")
            if data is None:
                continue
            rows = _parse_vectors(data, path, manifest.dim)
            ids = manifest.ids
            if not np.array_equal(rows["id"], ids):
                raise GalleryError(_disagree(path, self._manifest_path, rows["id"], ids))
            return [dict(e) for e in manifest.entries], np.array(rows["vector"], np.float32)
        raise GalleryError(f"gallery {self.path} kept changing while being read; try again")

    def search(
        self, queries: np.ndarray, k: int = 1, *, per_person_pool: int = 50
    ) -> list[list[Match]]:
        """Up to k people per query, each scored by their closest embedding.

        Someone enrolled from 40 photos must not crowd everyone else out of the top k, so we
        fetch k*pool neighbours and keep each person's first (closest) hit. If that yields fewer
        than k people while the gallery holds more, the search widens until it does; for exact
        indexes the result is then exactly the k people with the smallest distances.
        """
        if type(k) is not int or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if type(per_person_pool) is not int or per_person_pool < 1:
            raise ValueError(f"per_person_pool must be a positive integer, got {per_person_pool!r}")
        q = as_matrix(queries, self.dim, "queries")
        state = self._read_state()
        if state is None or state.index.ntotal == 0:
            return [[] for _ in range(len(q))]
        return search_people(
            self._searcher(state),
            state.names,
            q,
            k,
            per_person_pool=per_person_pool,
            n_people=state.n_people,
        )

    def _searcher(self, state: _State) -> Any:
        """The snapshot's index, or once per snapshot its GPU copy when one can serve."""
        if self.search_device == "cpu":
            return state.index
        if state.searcher is None:
            state.searcher = to_gpu(state.index) or state.index
        return state.searcher

    @staticmethod
    def inspect(path: str | os.PathLike[str]) -> dict:
        """Describe a gallery from its manifest alone: no FAISS import, no model needed.

        A path with no gallery yet is described as empty (``exists`` False) rather than being
        an error, because listing a fresh install should just say nobody is enrolled.
        """
        manifest_path = Path(path) / MANIFEST
        try:
            raw = _read_bytes(manifest_path)
        except FileNotFoundError:
            _refuse_orphans(Path(path))
            return {
                "exists": False,
                "path": str(path),
                "model_id": None,
                "dim": None,
                "index_factory": None,
                "auto_switch": None,
                "approx_factory": None,
                "count": 0,
                "people": {},
            }
        except OSError as exc:
            raise GalleryError(f"cannot read {manifest_path}: {exc.strerror}") from None
        manifest = _parse_manifest(raw, manifest_path)
        return {
            "exists": True,
            "path": str(path),
            "model_id": manifest.model_id,
            "dim": manifest.dim,
            "index_factory": manifest.index_factory,
            "auto_switch": manifest.extra.get("auto_switch"),
            "approx_factory": manifest.extra.get("approx_factory"),
            "count": len(manifest.entries),
            "people": dict(sorted(Counter(e["name"] for e in manifest.entries).items())),
        }

    # ---------------------------------------------------------------- writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import filelock

        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GalleryError(f"cannot create gallery directory {self.path}: {exc}") from None
        lock = filelock.FileLock(str(self.path / LOCK), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise GalleryError(
                f"gallery {self.path} is locked by another faceid process; try again later"
            ) from None
        except OSError as exc:
            raise GalleryError(f"cannot lock gallery {self.path}: {exc}") from None
        try:
            yield
        finally:
            lock.release()

    def _empty_state(self) -> tuple[_Manifest, Any, np.ndarray]:
        manifest = _Manifest(
            model_id=self.model_id,
            dim=self.dim,
            index_factory=self.index_factory,
            generation=-1,
            index_file="",
            index_sha256="",
            vectors_file="",
            vectors_sha256="",
            next_id=0,
            entries=[],
        )
        empty = np.zeros(0, dtype=_vector_dtype(self.dim))
        return manifest, _new_index(self.dim, self.index_factory), empty

    def _load_for_write(self) -> tuple[_Manifest, Any, np.ndarray] | None:
        """Current state re-read under the lock, fully verified including the vectors file;
        None when there is no gallery yet.

        Writes refuse a damaged gallery: building a new generation on top of damage could turn
        a repairable problem into lost people.
        """
        try:
            raw = _read_bytes(self._manifest_path)
        except FileNotFoundError:
            self._refuse_orphans()
            return None
        manifest = self._parse(raw)
        diag = _Diagnosis(manifest=manifest)
        self._verify_files(diag)
        problem = diag.index_problem or diag.vectors_problem
        if problem:  # a missing backup manifest is not one: this write makes a fresh one
            raise GalleryError(problem)
        return manifest, diag.index, diag.vectors

    def _write(self, mutate: Callable[[_Manifest, Any, np.ndarray], tuple[Any, np.ndarray]]) -> Any:
        """Locked read-modify-write. A new gallery is first committed empty as generation 0,
        so a crash during the very first write can never leave people without a manifest."""
        if not self.path.exists():
            # Nothing on disk yet: try the change on an empty gallery first, so that a refused
            # first write (an unknown factory, too few faces to train an index) leaves no
            # folder behind. Only a first write pays for this rehearsal.
            manifest, index, vectors = self._empty_state()
            manifest.extra.update(self._policy)
            mutate(manifest, index, vectors)
        with self._mutex, self._locked():
            try:
                current = self._load_for_write()
                if current is None:
                    manifest, index, vectors = self._empty_state()
                    manifest.extra.update(self._policy)
                    index, vectors = mutate(manifest, index, vectors)  # may refuse: write nothing
                    self._commit(*self._empty_state(), generation=0)
                else:
                    manifest, index, vectors = current
                    manifest.extra.update(self._policy)
                    index, vectors = mutate(manifest, index, vectors)
                self._commit(manifest, index, vectors)
            except OSError as exc:
                raise GalleryError(f"cannot write gallery {self.path}: {exc}") from None

    def _commit(
        self, manifest: _Manifest, index: Any, vectors: np.ndarray, generation: int | None = None
    ) -> None:
        """Write a new generation and flip manifest.json to it; see the module docstring.

        New generations are numbered above every file on disk, so a dead writer's leftovers are
        never mistaken for (or half-overwrite) a committed generation's files.
        """
        if generation is None:
            on_disk = [gen for (_, gen) in _generation_files(self.path)]
            generation = max([manifest.generation, *on_disk]) + 1
        tune_index(index, manifest.extra.get("index_params"))  # a bad setting refuses the write
        index_bytes = _serialize_index(index)
        vector_bytes = _serialize_vectors(vectors)
        manifest.generation = generation
        manifest.index_file = _gen_name("index", generation)
        manifest.index_sha256 = _sha256(index_bytes)
        manifest.vectors_file = _gen_name("vectors", generation)
        manifest.vectors_sha256 = _sha256(vector_bytes)
        raw = manifest.to_json()
        _atomic_write(self.path, manifest.index_file, index_bytes)
        _atomic_write(self.path, manifest.vectors_file, vector_bytes)
        _atomic_write(self.path, _gen_name("manifest", generation), raw)
        fsync_dir(self.path)
        _atomic_write(self.path, MANIFEST, raw)  # the commit point
        fsync_dir(self.path)
        names = {e["id"]: e["name"] for e in manifest.entries}
        stamp = _stamp(os.stat(self._manifest_path))  # we hold the lock: still our file
        with self._mutex:
            self._cache = _State(raw, manifest, index, names, stamp=stamp)
        self._cleanup(generation)

    def _cleanup(self, generation: int) -> int:
        """Delete leftovers; keep generation-1 for readers that read the previous manifest.

        Only called under the lock, so every temp file is a dead writer's.
        """
        removed = 0
        for (_, gen), name in _generation_files(self.path).items():
            if gen not in (generation, generation - 1):
                with contextlib.suppress(OSError):
                    os.unlink(self.path / name)
        for name in os.listdir(self.path):
            if _TMP_RE.fullmatch(name):
                with contextlib.suppress(OSError):
                    os.unlink(self.path / name)
                    removed += 1
        return removed

    def add(
        self,
        embeddings: np.ndarray,
        names: list[str],
        sources: list[str],
        *,
        added: list[str] | None = None,
    ) -> list[int]:
        """Enroll embeddings in one atomic, locked write; returns their new ids.

        Embeddings must be unit vectors (``check_new_faces``); ``added`` keeps a copied
        gallery's enrolment times (default: now).
        """
        x, clean, sources = check_new_faces(embeddings, names, sources, self.dim, added)
        if not len(x):
            return []
        new_ids: list[int] = []
        switched: str | None = None

        def mutate(manifest: _Manifest, index: Any, vectors: np.ndarray) -> tuple[Any, np.ndarray]:
            nonlocal switched
            ids = np.arange(manifest.next_id, manifest.next_id + len(x), dtype=np.int64)
            times = added if added is not None else [_now()] * len(x)
            for i, name, source, when in zip(ids, clean, sources, times):
                manifest.entries.append(
                    {"id": int(i), "name": name, "source": source, "added": when}
                )
            manifest.next_id += len(x)
            rows = np.zeros(len(x), dtype=vectors.dtype)
            rows["id"] = ids
            rows["vector"] = x
            vectors = np.concatenate([vectors, rows])
            limit = manifest.extra.get("auto_switch", 0)
            approx = manifest.extra.get("approx_factory", DEFAULT_APPROX_FACTORY)
            if (
                limit
                and len(vectors) > limit
                and approx != manifest.index_factory
                and _is_flat(index)
            ):
                # Rebuilt from the stored vectors (not the index), like repair: the vectors
                # file is the source of truth. The new factory is recorded by this commit.
                index = _build_index(manifest.dim, approx, vectors)
                manifest.index_factory = approx
                switched = approx
            elif index.is_trained:
                index.add_with_ids(x, ids)
            else:
                index = _build_index(manifest.dim, manifest.index_factory, vectors)
            new_ids[:] = ids.tolist()
            return index, vectors

        self._write(mutate)
        self.switched = switched
        return new_ids

    def remove(self, name: str) -> int:
        """Forget a person entirely; returns how many embeddings went with them."""
        target = validate_name(name)
        removed = 0

        def mutate(manifest: _Manifest, index: Any, vectors: np.ndarray) -> tuple[Any, np.ndarray]:
            nonlocal removed
            gone = np.array([e["id"] for e in manifest.entries if e["name"] == target], np.int64)
            if not len(gone):
                raise NotEnrolled(f"{_short(target)} is not enrolled in {self.path}")
            manifest.entries = [e for e in manifest.entries if e["name"] != target]
            vectors = vectors[~np.isin(vectors["id"], gone)]
            if _is_flat(index):
                index.remove_ids(gone)
            else:
                index = _build_index(manifest.dim, manifest.index_factory, vectors)
            removed = len(gone)
            return index, vectors

        if not self.exists:
            self._refuse_orphans()
            raise NotEnrolled(f"{_short(target)} is not enrolled in {self.path}")
        self._write(mutate)
        return removed

    def rename(self, old: str, new: str, *, merge: bool = True) -> int:
        """Rename a person; renaming onto an existing person merges them (e.g. fixing a typo)."""
        source = validate_name(old)
        target = validate_name(new)
        renamed = 0

        def mutate(manifest: _Manifest, index: Any, vectors: np.ndarray) -> tuple[Any, np.ndarray]:
            nonlocal renamed
            taken = sum(e["name"] == target for e in manifest.entries)
            if taken and not merge:
                raise merge_refused(old, target, taken)
            for e in manifest.entries:
                if e["name"] == source:
                    e["name"] = target
                    renamed += 1
            if not renamed:
                raise NotEnrolled(f"{_short(source)} is not enrolled in {self.path}")
            return index, vectors

        if not self.exists:
            self._refuse_orphans()
            raise NotEnrolled(f"{_short(source)} is not enrolled in {self.path}")
        if source == target:
            count = self.people().get(source, 0)
            if not count:
                raise NotEnrolled(f"{_short(source)} is not enrolled in {self.path}")
            return count
        self._write(mutate)
        return renamed
