"""A PostgreSQL gallery shared by several machines: concurrent writer processes, a streaming
replica serving searches, and a connection lost in the middle of a write. Real servers only
(see faceid/gallery/local_postgres.py); nothing here is skipped when they cannot start.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psycopg
import pytest

from faceid.errors import GalleryError
from faceid.gallery.local_postgres import free_port
from faceid.gallery.postgres import PostgresGallery
from tests.test_gallery import DIM, MODEL, subprocess_env, unit

WRITERS = 8
FACES_EACH = 12


def at(url: str, **kw) -> PostgresGallery:
    return PostgresGallery(url, model_id=MODEL, dim=DIM, **kw)


def test_concurrent_writer_processes_all_survive(pg_url: str) -> None:
    """8 processes enroll at once, one face per transaction, into new and shared people; the
    first writes race to create the schema. Every enrollment must be there exactly once."""
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from faceid.gallery.postgres import PostgresGallery
        from tests.test_gallery import unit
        w = int(sys.argv[1])
        g = PostgresGallery({pg_url!r}, model_id={MODEL!r}, dim={DIM})
        x = unit({FACES_EACH}, seed=100 + w)
        for i in range({FACES_EACH}):
            name = "shared" if i % 3 == 0 else f"writer{{w}}"
            g.add(x[i : i + 1], [name], [f"w{{w}}-{{i}}.jpg"])
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(w)],
            env=subprocess_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS, errors

    g = at(pg_url)
    entries = g.entries()
    assert len(entries) == len(g) == WRITERS * FACES_EACH
    assert len({e["id"] for e in entries}) == len(entries)
    expected = {f"w{w}-{i}.jpg" for w in range(WRITERS) for i in range(FACES_EACH)}
    assert {e["source"] for e in entries} == expected
    shared = sum(1 for i in range(FACES_EACH) if i % 3 == 0)
    assert g.people() == {"shared": WRITERS * shared} | {
        f"writer{w}": FACES_EACH - shared for w in range(WRITERS)
    }
    for w in range(WRITERS):  # each enrolled vector is searchable under its person
        x = unit(FACES_EACH, seed=100 + w)
        names = [h[0].name for h in g.search(x)]
        assert names == ["shared" if i % 3 == 0 else f"writer{w}" for i in range(FACES_EACH)]
    assert g.check() == []


@pytest.fixture
def replica(pg_server, tmp_path_factory: pytest.TempPathFactory):
    """A streaming replica of the session's server on its own loopback port."""
    standby = pg_server.replica(Path(pg_server.data).parent / f"replica-{free_port()}")
    try:
        yield standby
    finally:
        standby.stop("immediate")


def test_a_streaming_replica_serves_identify_after_a_write_on_the_primary(
    pg_server, replica
) -> None:
    url = pg_server.create_database("replicated")
    replica_url = replica.url("replicated")
    wait_until(lambda: _database_exists(replica_url))
    primary = at(url)
    x = unit(20, seed=40)
    names = [f"p{i % 5}" for i in range(20)]
    primary.add(x[:10], names[:10], [""] * 10)
    wait_until(lambda: PostgresGallery.inspect(replica_url)["count"] == 10)

    reader = at(replica_url)
    primary.add(x[10:], names[10:], [""] * 10)  # a write while the replica is being read
    wait_until(lambda: len(reader) == 20)
    assert [h[0].name for h in reader.search(x)] == names
    assert reader.people() == primary.people()
    with pytest.raises(GalleryError, match="read-only"):  # a replica takes no writes
        reader.add(x[:1], ["nobody"], [""])
    assert len(primary) == 20


def _database_exists(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def test_a_connection_lost_mid_write_is_a_clear_error_and_stores_nothing(pg_url: str) -> None:
    """The writer's backend is killed while its transaction waits inside the write (after
    creating the new person, before its faces), as a network cut or a failover would."""
    g = at(pg_url)
    x = unit(3, seed=50)
    g.add(x[:1], ["anna"], ["a.jpg"])
    writer_pid = g._conn.info.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as blocker:
        with blocker.transaction():
            blocker.execute("LOCK TABLE faceid_faces IN ACCESS EXCLUSIVE MODE")
            import threading

            outcome: list[BaseException | None] = []

            def write() -> None:
                try:
                    g.add(x[1:], ["bert", "bert"], ["b1.jpg", "b2.jpg"])
                    outcome.append(None)
                except BaseException as exc:  # noqa: BLE001 - the test inspects it
                    outcome.append(exc)

            thread = threading.Thread(target=write)
            thread.start()
            wait_until(lambda: _waiting_on_lock(blocker, writer_pid))
            blocker.execute("SELECT pg_terminate_backend(%s)", (writer_pid,))
            thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], GalleryError)
    message = str(outcome[0])
    assert "lost the connection" in message and "\n" not in message
    assert "Traceback" not in message
    fresh = at(pg_url)
    assert fresh.people() == {"anna": 1}  # no half-written bert: neither person nor faces
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT name FROM faceid_people").fetchall() == [("anna",)]
    assert g.add(x[1:], ["bert", "bert"], ["b1.jpg", "b2.jpg"])  # the object reconnects
    assert fresh.people() == {"anna": 1, "bert": 2}
    assert Counter(h[0].name for h in fresh.search(x)) == {"anna": 1, "bert": 2}


def _waiting_on_lock(conn: psycopg.Connection, pid: int) -> bool:
    row = conn.execute(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    return row is not None and row[0] == "Lock"


def test_an_unreachable_server_is_one_clear_line() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(GalleryError, match="cannot connect") as refused:
        at(url)
    assert "\n" not in str(refused.value)


def test_a_password_in_the_url_never_reaches_a_message() -> None:
    url = f"postgresql://ada:s3cret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(GalleryError) as refused:
        at(url)
    assert "s3cret" not in str(refused.value)


def test_damage_is_reported_and_repaired_without_losing_anyone(pg_url: str) -> None:
    g = at(pg_url, index_factory="HNSW32")
    x = unit(40, seed=60)
    g.add(x, [f"p{i % 8}" for i in range(40)], [""] * 40)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO faceid_people (name) VALUES ('ghost')")
        conn.execute("UPDATE faceid_meta SET value = '10' WHERE key = 'switch'")
        conn.execute("DROP INDEX faceid_faces_embedding_ann")
    problems = g.check()
    assert any("no embeddings" in p for p in problems)
    assert any("no hnsw index" in p for p in problems)
    actions = g.repair()
    assert any("rebuilt the hnsw index" in a for a in actions)
    assert g.check() == [] and len(g) == 40 and "ghost" not in g.people()


def test_embeddings_of_another_model_are_reported_and_never_repaired(pg_url: str) -> None:
    g = at(pg_url)
    g.add(unit(2, seed=61), ["a", "b"], ["", ""])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE faceid_faces SET model_id = 'stranger' WHERE source = ''")
    assert any("stranger" in p for p in g.check())
    with pytest.raises(GalleryError, match="nothing was changed"):
        g.repair()
    assert len(g) == 2


def test_a_newer_format_is_refused(pg_url: str) -> None:
    at(pg_url).add(unit(1, seed=62), ["a"], [""])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE faceid_meta SET value = '99' WHERE key = 'format_version'")
    with pytest.raises(GalleryError, match="format version 99"):
        at(pg_url)


def test_ivfflat_is_an_option(pg_url: str) -> None:
    x = unit(300, seed=63)
    names = [f"p{i % 30}" for i in range(300)]
    g = at(pg_url, auto_switch=100, approx_factory="IVF4,Flat")
    g.add(x, names, [""] * 300)
    assert g.switched == "ivfflat"
    assert PostgresGallery.inspect(pg_url)["index_factory"] == "ivfflat"
    right = sum(h[0].name == n for h, n in zip(g.search(x[:50]), names[:50]))
    assert right >= 45
    assert np.isfinite([h[0].distance for h in g.search(x[:5])]).all()


def wait_until(check, timeout: float = 30.0, every: float = 0.02) -> float:
    """Seconds until check() is true; raises AssertionError after ``timeout``."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(every)
    return time.perf_counter() - start
