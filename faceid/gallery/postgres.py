"""A gallery in PostgreSQL with pgvector, for galleries that several machines share.

Selected by a URL (``postgresql://user@host:port/db``, libpq's syntax: a password, ``sslmode``
or ``options=-csearch_path=...`` go there too). Four tables, created and migrated by faceid on
the first write:

``faceid_meta``
    key/value: ``format_version``, ``model_id``, ``dim``, ``index`` (``hnsw`` or ``ivfflat``)
    and ``switch`` (the size above which that index is built; 0 = at once).
``faceid_people``
    one row per person: ``id``, ``name`` (unique, canonical form of ``validate_name``).
``faceid_faces``
    one row per embedding: ``id`` (from the ``faceid_face_ids`` sequence, never reused),
    ``person_id``, ``embedding vector(dim)``, ``source``, ``added`` and ``model_id``.

Every write is one transaction, so a crash or a lost connection leaves the gallery as it was
before the write or after it, never with half a person. Searches are squared L2 (pgvector's
``<->`` is L2, squared here so thresholds are the FAISS gallery's) with each person scored by
their closest embedding. Like the FAISS folder, a gallery searches exactly (a sequential scan)
until it holds more than ``switch`` faces; the write that crosses it builds the approximate
index (HNSW by default; IVFFlat as an option), which later writes maintain.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import numpy as np

from faceid.errors import GalleryError, NotEnrolled
from faceid.gallery.base import (
    Match,
    Neighbours,
    as_matrix,
    best_per_person,
    check_new_faces,
    merge_refused,
)
from faceid.gallery.faiss_index import HNSW_EF_SEARCH
from faceid.gallery.messages import _one_line
from faceid.gallery.names import _short, validate_name

FORMAT_VERSION = 1
ANN_INDEX = "faceid_faces_embedding_ann"
INDEX_KINDS = ("hnsw", "ivfflat")
# Serialises schema creation, migration and the index switch across every client.
_SCHEMA_LOCK = 0x66616365_6964  # "faceid"
_HNSW_MAX_EF = 1000  # pgvector's limit on hnsw.ef_search
_PLAN_TTL = 1.0  # seconds a reader trusts what it knows of the index (see _plan)

# Whether faceid's tables exist, read from the catalog with the statement's snapshot. Not
# to_regclass(): its name lookup may answer from a cache that a transaction which waited on
# _SCHEMA_LOCK has not refreshed, and miss tables another writer has just created.
_META_EXISTS = (
    "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = 'faceid_meta' AND n.nspname = current_schema())"
)

# Steps from version v to v + 1 (none yet: version 1 is the first). A newer faceid adds
# MIGRATIONS[1] = [...] and bumps FORMAT_VERSION; older galleries are upgraded on first write.
MIGRATIONS: dict[int, list[str]] = {}


def _schema(dim: int) -> list[str]:
    return [
        "CREATE TABLE faceid_people (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE)",
        "CREATE SEQUENCE faceid_face_ids",
        f"""CREATE TABLE faceid_faces (
            id bigint PRIMARY KEY,
            person_id bigint NOT NULL REFERENCES faceid_people (id),
            embedding vector({dim}) NOT NULL,
            source text NOT NULL,
            added timestamptz NOT NULL,
            model_id text NOT NULL)""",
        "CREATE INDEX faceid_faces_person ON faceid_faces (person_id)",
    ]


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
    except Exception:
        return url.split("://", 1)[0] + "://..."
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def index_kind(factory: str | None) -> str | None:
    """pgvector's index for a FAISS-style factory: HNSW* -> hnsw, IVF* -> ivfflat, Flat ->
    None (exact). The names faceid's options take keep their meaning on both backends."""
    if factory is None:
        return None
    name = factory.strip().lower()
    if name in ("flat", "exact"):
        return None
    for kind, prefix in (("hnsw", "hnsw"), ("ivfflat", "ivf")):
        if name.startswith(prefix):
            return kind
    raise GalleryError(
        f"PostgreSQL galleries index with 'hnsw' or 'ivfflat' (or search exactly: 'Flat'), "
        f"not {factory!r}"
    )


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


class PostgresGallery:
    """A gallery in a PostgreSQL database with the pgvector extension (see the module doc).

    Nothing is created until the first write. Opening refuses a gallery made by another model
    or a newer format, as the FAISS folder does; ``check()``/``repair()`` are the doctor.
    One connection per object, opened on first use and reopened after it breaks; calls from
    several threads take turns on it. The constructor takes the folder gallery's options
    (``index_factory``/``approx_factory`` as FAISS factory names: Flat, HNSW*, IVF*);
    ``search_device`` is accepted for that symmetry only: the database server searches.
    """

    def __init__(
        self,
        url: str,
        *,
        model_id: str,
        dim: int = 128,
        index_factory: str = "Flat",
        auto_switch: int | None = None,
        approx_factory: str | None = None,
        index_params: str | None = None,
        search_device: str = "cpu",
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(model_id, str) or not model_id:
            raise ValueError("model_id must be a non-empty string")
        if type(dim) is not int or not 0 < dim <= 16000:
            raise ValueError(f"dim must be a positive integer up to 16000, got {dim!r}")
        if auto_switch is not None and (type(auto_switch) is not int or auto_switch < 0):
            raise ValueError(f"auto_switch must be an integer >= 0 or None, got {auto_switch!r}")
        self._setup(url, model_id, dim, connect_timeout)
        self.index_params = index_params
        # How a new gallery is made: its approximate index, built at once for an approximate
        # index_factory, else when it grows past auto_switch faces (0/None: never).
        self._build_now = index_kind(index_factory) is not None
        self._create = {
            "index": index_kind(approx_factory) or index_kind(index_factory) or "hnsw",
            "switch": str(auto_switch or 0),
        }
        # What is recorded over an existing gallery's policy, as the FAISS folder does.
        self._policy: dict[str, str] = {}
        if approx_factory is not None:
            self._policy["index"] = self._create["index"]
        if auto_switch is not None:
            self._policy["switch"] = str(auto_switch)
        self._check_identity(self._meta())

    def _setup(self, url: str, model_id: str, dim: int, connect_timeout: float) -> None:
        self.url = url
        self.path = redact(url)  # what messages call the gallery, as the folder's path
        self.model_id = model_id
        self.dim = dim
        self.connect_timeout = connect_timeout
        self.index_params: str | None = None
        self._build_now = False
        self._create: dict[str, str] = {}
        self._policy: dict[str, str] = {}
        self.switched: str | None = None
        self._conn: Any = None
        self._vector_ready = False  # numpy <-> vector adapters registered on self._conn
        self._settings: dict[str, int] = {}  # session settings sent on self._conn
        self._plan_cache: tuple[float, tuple[str | None, int]] | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"PostgresGallery({self.path!r}, model_id={self.model_id!r})"

    @classmethod
    def open_for_doctor(cls, url: str) -> PostgresGallery:
        """Open without knowing the model: whatever the gallery records, nothing refused."""
        gallery = cls.__new__(cls)
        gallery._setup(url, "unknown", 128, 10.0)
        return gallery

    # ------------------------------------------------------------- connection

    @contextlib.contextmanager
    def _session(self, what: str) -> Iterator[Any]:
        """The connection, with every database failure turned into a one-line GalleryError."""
        try:
            import pgvector.psycopg  # noqa: F401 - needed by _register, checked here once
            import psycopg
        except ImportError:
            raise GalleryError(
                "a postgresql:// gallery needs psycopg and pgvector: pip install 'faceid[postgres]'"
            ) from None

        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn, self._vector_ready, self._settings = None, False, {}
                try:
                    conn = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
                    )
                    conn.execute("SET TIME ZONE 'UTC'")
                except psycopg.Error as exc:
                    raise GalleryError(f"cannot connect to {self.path}: {_one_line(exc)}") from None
                self._conn = conn
            try:
                yield self._conn
            except psycopg.OperationalError as exc:
                if not self._conn.broken:
                    raise GalleryError(f"cannot {what} in {self.path}: {_one_line(exc)}") from None
                self._conn = None
                raise GalleryError(
                    f"lost the connection to {self.path} while trying to {what} "
                    f"({_one_line(exc)}); PostgreSQL rolls back an unfinished write, so none of "
                    "it was stored"
                ) from None
            except psycopg.Error as exc:
                raise GalleryError(f"cannot {what} in {self.path}: {_one_line(exc)}") from None

    def _register(self, conn: Any) -> None:
        """Send and receive numpy vectors in binary, once the extension exists."""
        from pgvector.psycopg import register_vector

        if (
            not self._vector_ready
            and conn.execute("SELECT 1 FROM pg_type WHERE typname = 'vector'").fetchone()
        ):
            register_vector(conn)
            self._vector_ready = True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --------------------------------------------------------------- identity

    def _meta(self) -> dict[str, str] | None:
        """The meta table, or None when no gallery was created in this database yet."""
        with self._session("read the gallery") as conn:
            return self._read_meta(conn)

    def _read_meta(self, conn: Any) -> dict[str, str] | None:
        if not conn.execute(_META_EXISTS).fetchone()[0]:
            return None
        self._register(conn)
        return dict(conn.execute("SELECT key, value FROM faceid_meta").fetchall())

    def _check_identity(self, meta: dict[str, str] | None) -> None:
        if meta is None:
            return
        version = int(meta.get("format_version", "0"))
        if version > FORMAT_VERSION:
            raise GalleryError(
                f"gallery {self.path} has format version {version}, but this faceid reads "
                f"version {FORMAT_VERSION}; use a faceid release that supports it"
            )
        model = meta.get("model_id")
        if model is not None and model != self.model_id:
            raise GalleryError(
                f"gallery {self.path} was made with model {_short(model)} but model "
                f"{_short(self.model_id)} is loaded; embeddings of different models are not "
                "comparable, so use another gallery or re-enroll everyone"
            )
        if meta.get("dim") not in (None, str(self.dim)):
            raise GalleryError(
                f"gallery {self.path} holds {meta['dim']}-d embeddings but the loaded model "
                f"makes {self.dim}-d ones"
            )

    def _ensure_schema(self, conn: Any) -> dict[str, str]:
        """Create or migrate the tables (inside the caller's transaction); returns the meta.

        An advisory lock makes concurrent first writers take turns, so exactly one creates.
        """
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        meta = self._read_meta(conn)
        if meta is None:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except Exception as exc:
                raise GalleryError(
                    f"cannot enable pgvector in {self.path} ({_one_line(exc)}); have a "
                    "superuser run CREATE EXTENSION vector in that database"
                ) from None
            self._register(conn)
            conn.execute("CREATE TABLE faceid_meta (key text PRIMARY KEY, value text NOT NULL)")
            for statement in _schema(self.dim):
                conn.execute(statement)
            meta = {
                "format_version": str(FORMAT_VERSION),
                "model_id": self.model_id,
                "dim": str(self.dim),
                **self._create,
            }
            self._write_meta(conn, meta)
        self._check_identity(meta)
        version = int(meta["format_version"])
        while version < FORMAT_VERSION:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            version += 1
            self._write_meta(conn, {"format_version": str(version)})
        changed = {k: v for k, v in self._policy.items() if meta.get(k) != v}
        if changed:
            self._write_meta(conn, changed)
            meta.update(changed)
        return meta

    @staticmethod
    def _write_meta(conn: Any, values: dict[str, str]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO faceid_meta (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                list(values.items()),
            )

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[tuple[Any, dict[str, str]]]:
        """One transaction with the schema in place; commits on a clean exit."""
        self._plan_cache = None  # this write may create the gallery or its index
        with self._session(what) as conn, conn.transaction():
            yield conn, self._ensure_schema(conn)
        self._plan_cache = None

    # ---------------------------------------------------------------- reading

    @property
    def exists(self) -> bool:
        return self._meta() is not None

    def __len__(self) -> int:
        with self._session("count faces") as conn:
            if self._read_meta(conn) is None:
                return 0
            return int(conn.execute("SELECT count(*) FROM faceid_faces").fetchone()[0])

    def __bool__(self) -> bool:
        """Whether anyone is enrolled: one row looked up, where len() counts them all (a
        noticeable cost per identify at a million faces)."""
        with self._session("read the gallery") as conn:
            if self._read_meta(conn) is None:
                return False
            return conn.execute("SELECT EXISTS (SELECT 1 FROM faceid_faces)").fetchone()[0]

    def people(self) -> dict[str, int]:
        with self._session("list people") as conn:
            if self._read_meta(conn) is None:
                return {}
            rows = conn.execute(
                "SELECT p.name, count(*) FROM faceid_faces f "
                "JOIN faceid_people p ON p.id = f.person_id GROUP BY p.name"
            ).fetchall()
        return dict(sorted((name, int(n)) for name, n in rows))

    def entries(self) -> list[dict]:
        return self.export(vectors=False)[0]

    def export(self, vectors: bool = True) -> tuple[list[dict], np.ndarray]:
        """Entries in id order and, row for row, their embeddings, from one snapshot."""
        columns = "f.id, p.name, f.source, f.added" + (", f.embedding" if vectors else "")
        with self._session("read the gallery") as conn, conn.transaction():
            if self._read_meta(conn) is None:
                return [], np.zeros((0, self.dim), np.float32)
            rows = conn.execute(
                f"SELECT {columns} FROM faceid_faces f JOIN faceid_people p "
                "ON p.id = f.person_id ORDER BY f.id"
            ).fetchall()
        entries = [
            {"id": int(r[0]), "name": r[1], "source": r[2], "added": _utc(r[3])} for r in rows
        ]
        if not vectors:
            return entries, np.zeros((0, self.dim), np.float32)
        matrix = np.array([_array(r[4]) for r in rows], np.float32).reshape(len(rows), self.dim)
        return entries, matrix

    @staticmethod
    def inspect(url: str) -> dict:
        """Describe a gallery without a model, as ``Gallery.inspect`` does for folders."""
        gallery = PostgresGallery.open_for_doctor(url)
        meta = gallery._meta()
        if meta is None:
            return {
                "exists": False,
                "path": gallery.path,
                "model_id": None,
                "dim": None,
                "index_factory": None,
                "auto_switch": None,
                "approx_factory": None,
                "count": 0,
                "people": {},
            }
        gallery.model_id, gallery.dim = meta.get("model_id", "unknown"), int(meta.get("dim", 128))
        people = gallery.people()
        with gallery._session("read the gallery") as conn:
            ann = gallery._ann_index(conn)
        gallery.close()
        return {
            "exists": True,
            "path": gallery.path,
            "model_id": meta.get("model_id"),
            "dim": int(meta.get("dim", 0)),
            "index_factory": meta.get("index") if ann else "Flat",
            "auto_switch": int(meta.get("switch", 0)),
            "approx_factory": meta.get("index"),
            "count": sum(people.values()),
            "people": people,
        }

    @staticmethod
    def _ann_index(conn: Any) -> tuple[str, bool] | None:
        """(access method, valid) of the approximate index, or None when there is none."""
        row = conn.execute(
            "SELECT am.amname, i.indisvalid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = current_schema()",
            (ANN_INDEX,),
        ).fetchone()
        return (row[0], bool(row[1])) if row else None

    def search(
        self, queries: np.ndarray, k: int = 1, *, per_person_pool: int = 50
    ) -> list[list[Match]]:
        """Up to k people per query, each scored by their closest embedding (see
        ``best_per_person``): exact below the switch, through the HNSW/IVFFlat index above."""
        if type(k) is not int or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if type(per_person_pool) is not int or per_person_pool < 1:
            raise ValueError(f"per_person_pool must be a positive integer, got {per_person_pool!r}")
        q = as_matrix(queries, self.dim, "queries")
        with self._session("search") as conn:
            plan = self._plan(conn)
            if plan is None:
                return [[] for _ in range(len(q))]

            def nearest(pending: list[int], fetch: int) -> list[Neighbours]:
                return [self._nearest(conn, q[i], fetch, plan) for i in pending]

            return best_per_person(nearest, len(q), k, per_person_pool)

    def _plan(self, conn: Any) -> tuple[str | None, int] | None:
        """(the approximate index's method or None for exact, size estimate); None when there
        is no gallery. Re-read at most every _PLAN_TTL seconds (and after this object's own
        writes), so a search is one round trip; another client's new index is seen within it."""
        now = time.monotonic()
        if self._plan_cache is not None and now - self._plan_cache[0] < _PLAN_TTL:
            return self._plan_cache[1]
        if self._read_meta(conn) is None:
            return None
        ann = self._ann_index(conn)
        method = ann[0] if ann is not None and ann[1] else None
        plan = (method, self._size_estimate(conn) if method else 0)
        self._plan_cache = (now, plan)
        return plan

    def _nearest(
        self, conn: Any, query: np.ndarray, fetch: int, plan: tuple[str | None, int]
    ) -> Neighbours:
        """``fetch`` nearest faces to one query: exact (a sequential scan), or approximate
        through the index with search parameters sized to the gallery and the fetch."""
        method, size = plan
        sql = (
            "SELECT n.d, n.id, p.name FROM (SELECT id, person_id, embedding <-> %s AS d "
            "FROM faceid_faces ORDER BY embedding <-> %s LIMIT %s) n "
            "JOIN faceid_people p ON p.id = n.person_id ORDER BY n.d, n.id"
        )
        args = (query, query, fetch)
        if method is None:  # no index to use: the scan is exact
            rows = conn.execute(sql, args).fetchall()
        elif method == "hnsw" and fetch > _HNSW_MAX_EF:  # past HNSW's reach: exact
            with conn.transaction():
                conn.execute("SET LOCAL enable_indexscan = off")
                conn.execute("SET LOCAL enable_bitmapscan = off")
                rows = conn.execute(sql, args).fetchall()
        else:
            if method == "hnsw":
                self._setting(conn, "hnsw.ef_search", self._ef_search(size, fetch))
            else:
                self._setting(conn, "ivfflat.probes", self._probes(conn))
            rows = conn.execute(sql, args).fetchall()
        return [(float(d) * float(d), int(i), name) for d, i, name in rows]

    def search_params(self, fetch: int = 50) -> str:
        """The approximate index's setting a search of ``fetch`` neighbours uses now, as
        'ef_search=N' or 'probes=N'; '' while searches are exact."""
        with self._session("search") as conn:
            plan = self._plan(conn)
            if plan is None or plan[0] is None:
                return ""
            if plan[0] == "hnsw":
                return f"ef_search={self._ef_search(plan[1], fetch)}"
            return f"probes={self._probes(conn)}"

    def _setting(self, conn: Any, name: str, value: int) -> None:
        """A session setting, sent only when it changes on this connection."""
        if self._settings.get(name) != value:
            conn.execute(f"SET {name} = {int(value)}")
            self._settings[name] = value

    def _ef_search(self, n: int, fetch: int) -> int:
        """HNSW_EF_SEARCH by size n (the FAISS gallery's table), at least the fetch, unless
        the gallery pins ``efSearch=N`` in index_params."""
        pinned = _param(self.index_params, "efSearch")
        if pinned:
            return min(_HNSW_MAX_EF, max(pinned, fetch))
        ef = next(ef for limit, ef in HNSW_EF_SEARCH if n <= limit)
        return min(_HNSW_MAX_EF, max(ef, fetch))

    def _probes(self, conn: Any) -> int:
        """IVF probes: 1/16 of the lists, at least 8, as the FAISS gallery's nprobe."""
        pinned = _param(self.index_params, "nprobe")
        if pinned:
            return pinned
        if "ivfflat.probes" in self._settings:  # the lists change only with a rebuild
            return self._settings["ivfflat.probes"]
        lists = conn.execute(
            "SELECT coalesce((SELECT option_value::int FROM pg_options_to_table("
            "(SELECT reloptions FROM pg_class WHERE relname = %s)) WHERE option_name = 'lists'),"
            " 100)",
            (ANN_INDEX,),
        ).fetchone()[0]
        return min(lists, max(8, lists // 16))

    @staticmethod
    def _size_estimate(conn: Any) -> int:
        """The planner's row count (cheap at any size), to 3 significant figures: ANALYZE's
        estimate is off a little either way (above 1,000,000 for a million faces), which must
        not move a gallery into the next efSearch bracket. Exact when never analysed."""
        n = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = 'faceid_faces'::regclass"
        ).fetchone()[0]
        if n is None or n < 0:
            return int(conn.execute("SELECT count(*) FROM faceid_faces").fetchone()[0])
        return int(float(f"{float(n):.3g}"))

    # ---------------------------------------------------------------- writing

    def add(
        self,
        embeddings: np.ndarray,
        names: list[str],
        sources: list[str],
        *,
        added: list[str] | None = None,
    ) -> list[int]:
        """Enroll embeddings in one transaction; returns their new ids."""
        x, clean, sources = check_new_faces(embeddings, names, sources, self.dim, added)
        if not len(x):
            return []
        now = datetime.now(timezone.utc)
        times = [datetime.fromisoformat(t) for t in added] if added is not None else None
        self.switched = None
        with self._write("enroll") as (conn, meta):
            unique = sorted(set(clean))  # one order for every writer: no deadlocks
            person = dict(
                (name, pid)
                for pid, name in conn.execute(
                    "INSERT INTO faceid_people (name) SELECT unnest(%s::text[]) "
                    "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id, name",
                    (unique,),
                ).fetchall()
            )
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT nextval('faceid_face_ids') FROM generate_series(1, %s)", (len(x),)
                ).fetchall()
            ]
            ids.sort()
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY faceid_faces (id, person_id, embedding, source, added, model_id) "
                    "FROM STDIN WITH (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["int8", "int8", "vector", "text", "timestamptz", "text"])
                for pos, (i, name, source) in enumerate(zip(ids, clean, sources)):
                    when = times[pos] if times is not None else now
                    copy.write_row((i, person[name], x[pos], source, when, self.model_id))
            self._maybe_switch(conn, meta, len(x))
        return ids

    def _maybe_switch(self, conn: Any, meta: dict[str, str], added: int) -> None:
        """Build the approximate index in the write that takes the gallery past the switch
        (or in the first write, for a gallery created with an approximate index)."""
        switch = int(meta.get("switch", 0))
        if self._ann_index(conn) is None and (switch or self._build_now):
            n = conn.execute("SELECT count(*) FROM faceid_faces").fetchone()[0]
            if self._build_now or n > switch:
                # One writer builds it: the others find it once they have the lock.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                if self._ann_index(conn) is None:
                    self._build_ann(conn, meta["index"], n)
                    self.switched = meta["index"]
                return
        if added >= 10_000:  # keep the planner's size estimate (efSearch by size) current
            conn.execute("ANALYZE faceid_faces")

    def _build_ann(self, conn: Any, kind: str, n: int) -> None:
        if kind not in INDEX_KINDS:
            raise GalleryError(f"gallery {self.path} records an unknown index {kind!r}")
        conn.execute(f"DROP INDEX IF EXISTS {ANN_INDEX}")
        if kind == "hnsw":
            options = "(m = 16, ef_construction = 64)"
        else:  # pgvector's advice: rows / 1000 lists up to 1M rows, sqrt(rows) beyond
            lists = max(1, n // 1000 if n <= 1_000_000 else int(n**0.5))
            options = f"(lists = {lists})"
        conn.execute(
            f"CREATE INDEX {ANN_INDEX} ON faceid_faces USING {kind} "
            f"(embedding vector_l2_ops) WITH {options}"
        )
        conn.execute("ANALYZE faceid_faces")

    def build_index(self, factory: str | None = None) -> str:
        """(Re)build the approximate index now, whatever the size (``factory``: HNSW or IVF;
        default the gallery's); later writes maintain it. Returns the index kind built."""
        with self._write("build the index") as (conn, meta):
            kind = index_kind(factory) if factory else meta["index"]
            if kind is None:
                conn.execute(f"DROP INDEX IF EXISTS {ANN_INDEX}")
                self._write_meta(conn, {"switch": "0"})
                return "Flat"
            n = conn.execute("SELECT count(*) FROM faceid_faces").fetchone()[0]
            self._build_ann(conn, kind, n)
            self._write_meta(conn, {"index": kind})
            return kind

    def remove(self, name: str) -> int:
        """Forget a person entirely; returns how many embeddings went with them."""
        target = validate_name(name)
        with self._write("remove a person") as (conn, _):
            row = conn.execute(
                "SELECT id FROM faceid_people WHERE name = %s FOR UPDATE", (target,)
            ).fetchone()
            if row is None:
                raise NotEnrolled(f"{_short(target)} is not enrolled in {self.path}")
            removed = conn.execute("DELETE FROM faceid_faces WHERE person_id = %s", row).rowcount
            conn.execute("DELETE FROM faceid_people WHERE id = %s", row)
        return removed

    def rename(self, old: str, new: str, *, merge: bool = True) -> int:
        """Rename a person; renaming onto an existing person merges them."""
        source, target = validate_name(old), validate_name(new)
        if self._meta() is None:
            raise NotEnrolled(f"{_short(source)} is not enrolled in {self.path}")
        with self._write("rename a person") as (conn, _):
            rows = dict(
                conn.execute(
                    "SELECT name, id FROM faceid_people WHERE name = ANY(%s) ORDER BY name "
                    "FOR UPDATE",
                    ([source, target],),
                ).fetchall()
            )
            if source not in rows:
                raise NotEnrolled(f"{_short(source)} is not enrolled in {self.path}")
            count = conn.execute(
                "SELECT count(*) FROM faceid_faces WHERE person_id = %s", (rows[source],)
            ).fetchone()[0]
            if source == target:
                return int(count)
            if target in rows:
                if not merge:
                    taken = conn.execute(
                        "SELECT count(*) FROM faceid_faces WHERE person_id = %s", (rows[target],)
                    ).fetchone()[0]
                    raise merge_refused(old, target, int(taken))
                conn.execute(
                    "UPDATE faceid_faces SET person_id = %s WHERE person_id = %s",
                    (rows[target], rows[source]),
                )
                conn.execute("DELETE FROM faceid_people WHERE id = %s", (rows[source],))
            else:
                conn.execute(
                    "UPDATE faceid_people SET name = %s WHERE id = %s", (target, rows[source])
                )
        return int(count)

    # ----------------------------------------------------------------- doctor

    def check(self) -> list[str]:
        """Everything wrong with the gallery, one line each; [] means healthy. Never raises."""
        try:
            return [problem for problem, _ in self._diagnose()]
        except GalleryError as exc:
            return [str(exc)]
        except Exception as exc:  # a doctor that crashes is no use
            return [f"unexpected error while checking {self.path}: {_one_line(exc)}"]

    def _diagnose(self) -> list[tuple[str, str | None]]:
        """(problem, the SQL-free name of its fix or None when repair cannot fix it)."""
        found: list[tuple[str, str | None]] = []
        with self._session("check the gallery") as conn:
            meta = self._read_meta(conn)
            if meta is None:
                return found
            for key in ("format_version", "model_id", "dim", "index", "switch"):
                if key not in meta:
                    found.append((f"gallery {self.path} has no {key!r} in faceid_meta", None))
            if found:
                return found
            if self.model_id == "unknown":
                self.model_id, self.dim = meta["model_id"], int(meta["dim"])
            try:
                self._check_identity(meta)
            except GalleryError as exc:
                return [(str(exc), None)]
            others = conn.execute(
                "SELECT model_id, count(*) FROM faceid_faces WHERE model_id <> %s GROUP BY 1",
                (meta["model_id"],),
            ).fetchall()
            for model, n in others:
                found.append(
                    (
                        f"{n} embedding(s) in {self.path} were made by model {_short(model)}, "
                        f"not the gallery's {_short(meta['model_id'])}; remove and re-enroll them",
                        None,
                    )
                )
            empty = conn.execute(
                "SELECT count(*) FROM faceid_people p WHERE NOT EXISTS "
                "(SELECT 1 FROM faceid_faces f WHERE f.person_id = p.id)"
            ).fetchone()[0]
            if empty:
                found.append((f"{empty} person(s) in {self.path} have no embeddings", "empty"))
            off_unit = conn.execute(
                "SELECT count(*) FROM faceid_faces WHERE abs(vector_norm(embedding) - 1) > 1e-3"
            ).fetchone()[0]
            if off_unit:
                found.append((f"{off_unit} embedding(s) in {self.path} are not unit vectors", None))
            ann = self._ann_index(conn)
            n = conn.execute("SELECT count(*) FROM faceid_faces").fetchone()[0]
            switch = int(meta["switch"])
            if ann is not None and not ann[1]:
                found.append((f"the {ann[0]} index of {self.path} is invalid", "reindex"))
            elif ann is None and 0 < switch < n:
                found.append(
                    (
                        f"{self.path} holds {n} faces, above its switch ({switch}), but has no "
                        f"{meta['index']} index",
                        "build",
                    )
                )
        return found

    def repair(self) -> list[str]:
        """Fix what can be fixed without losing anyone; returns the actions taken.

        Raises GalleryError for what only a person can decide (another model's embeddings,
        a newer format)."""
        problems = self._diagnose()
        fatal = [p for p, fix in problems if fix is None]
        if fatal:
            raise GalleryError(f"{fatal[0]}; nothing was changed")
        actions: list[str] = []
        if not problems:
            return actions
        with self._write("repair the gallery") as (conn, meta):
            for _, fix in problems:
                if fix == "empty":
                    n = conn.execute(
                        "DELETE FROM faceid_people p WHERE NOT EXISTS "
                        "(SELECT 1 FROM faceid_faces f WHERE f.person_id = p.id)"
                    ).rowcount
                    actions.append(f"removed {n} person(s) without embeddings")
                elif fix in ("reindex", "build"):
                    n = conn.execute("SELECT count(*) FROM faceid_faces").fetchone()[0]
                    self._build_ann(conn, meta["index"], n)
                    actions.append(f"rebuilt the {meta['index']} index over {n} faces")
        return actions


def _array(value: Any) -> np.ndarray:
    """A fetched vector as numpy (pgvector's loaders give numpy or its Vector type)."""
    return value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value)


def _param(params: str | None, key: str) -> int | None:
    """``key=N`` from a FAISS ParameterSpace-style string such as 'efSearch=200'."""
    for part in (params or "").split(","):
        name, _, value = part.partition("=")
        if name.strip() == key and value.strip().isdigit():
            return int(value)
    return None
