"""The embedding cache: keys that change with anything that changes an embedding,
files that round-trip without pickle, and a corrupt file that costs a rerun, not a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceid.evaluate.cache import EmbeddingCache, cache_dir, photo_key


def test_cache_round_trip_and_corrupt_file(tmp_path: Path) -> None:
    k1 = photo_key("faceid-abc", {"pick": "center"}, b"photo")
    assert k1 != photo_key("faceid-abc", {"pick": "largest"}, b"photo")
    assert k1 != photo_key("faceid-abd", {"pick": "center"}, b"photo")
    cache = EmbeddingCache("faceid-abc", tmp_path)
    cache.put([k1], np.ones((1, 4)), ["fallback"])
    cache.save()
    again = EmbeddingCache("faceid-abc", tmp_path)
    vec, status = again.get(k1)
    assert status == "fallback" and vec.dtype == np.float32 and vec.tolist() == [1.0] * 4
    with np.load(cache.path, allow_pickle=False) as z:
        assert set(z.files) == {"keys", "vectors", "statuses"}
    cache.path.write_bytes(b"not a zip")
    assert len(EmbeddingCache("faceid-abc", tmp_path)) == 0
    with pytest.raises(ValueError):
        EmbeddingCache("../escape", tmp_path)


def test_merge_keeps_other_writers_entries(tmp_path: Path) -> None:
    a = EmbeddingCache("faceid-abc", tmp_path)
    b = EmbeddingCache("faceid-abc", tmp_path)
    a.put(["ka"], np.zeros((1, 3)), ["ok"])
    b.put(["kb"], np.ones((1, 3)), ["ok"])
    a.save()
    b.save()
    merged = EmbeddingCache("faceid-abc", tmp_path)
    assert "ka" in merged and "kb" in merged
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEID_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("FACEID_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "faceid" / "embeddings"
