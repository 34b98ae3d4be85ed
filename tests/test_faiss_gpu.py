"""GPU search is an optional extra that must never change answers or break the CPU path.

faiss-cpu (our dependency) has no GPU code, so the real fallback is tested as is; which
indexes would be copied to a GPU is tested by giving faiss a stand-in for its GPU entry points.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from faceid.gallery import Gallery, faiss_gpu, make_index
from tests.test_gallery import DIM, MODEL, unit


@pytest.mark.skipif(
    hasattr(faiss, "StandardGpuResources"), reason="this FAISS has GPU support (faiss-gpu)"
)
def test_faiss_cpu_reports_no_gpu_and_copies_nothing() -> None:
    assert faiss_gpu.gpu_count() == 0
    assert faiss_gpu.to_gpu(make_index("Flat", unit(100, 0)), min_faces=0) is None


def test_cuda_search_device_gives_the_cpu_answers_when_faiss_has_no_gpu(tmp_path: Path) -> None:
    x = unit(300, 1)
    names = [f"p{i % 30}" for i in range(300)]
    Gallery(tmp_path / "g", model_id=MODEL, dim=DIM).add(x, names, [""] * 300)
    q = unit(20, 2)
    on_cpu = Gallery(tmp_path / "g", model_id=MODEL, dim=DIM).search(q, 3)
    on_cuda = Gallery(tmp_path / "g", model_id=MODEL, dim=DIM, search_device="cuda").search(q, 3)
    assert on_cuda == on_cpu


def test_unknown_search_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="search_device"):
        Gallery(tmp_path / "g", model_id=MODEL, dim=DIM, search_device="tpu")


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> list:
    """faiss as faiss-gpu with one GPU would look to faiss_gpu; 'copies' are CPU clones."""
    copied: list = []

    def index_cpu_to_gpu(resources, device, index):
        copied.append(type(faiss.downcast_index(index.index)).__name__)
        return faiss.clone_index(index)

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", index_cpu_to_gpu, raising=False)
    monkeypatch.setattr(faiss_gpu, "_resources", None)
    return copied


@pytest.mark.parametrize(
    ("factory", "copied"), [("Flat", True), ("IVF8,Flat", True), ("HNSW32", False)]
)
def test_exact_and_ivf_indexes_go_to_the_gpu_but_hnsw_stays(
    fake_gpu: list, factory: str, copied: bool
) -> None:
    index = make_index(factory, unit(400, 3))
    assert (faiss_gpu.to_gpu(index, min_faces=100) is not None) is copied
    assert bool(fake_gpu) is copied


def test_small_galleries_stay_on_the_cpu_even_with_a_gpu(fake_gpu: list) -> None:
    index = make_index("Flat", unit(99, 4))
    assert faiss_gpu.to_gpu(index, min_faces=100) is None
    assert fake_gpu == []


def test_a_failed_gpu_copy_falls_back_to_the_cpu_index(
    fake_gpu: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(*args):
        raise RuntimeError("cudaMalloc error out of memory")

    monkeypatch.setattr(faiss, "index_cpu_to_gpu", out_of_memory)
    assert faiss_gpu.to_gpu(make_index("Flat", unit(200, 5)), min_faces=0) is None


def test_gallery_searches_its_gpu_copy_once_per_snapshot(
    fake_gpu: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faiss_gpu, "GPU_SEARCH_MIN_FACES", 0)
    g = Gallery(tmp_path / "g", model_id=MODEL, dim=DIM, search_device="cuda")
    x = unit(200, 6)
    g.add(x, [f"p{i}" for i in range(200)], [""] * 200)
    for _ in range(3):
        assert g.search(x[7])[0][0].name == "p7"
    assert len(fake_gpu) == 1  # copied once, reused by later searches
    g.add(unit(1, 7), ["new"], [""])
    assert g.search(x[7])[0][0].name == "p7"
    assert len(fake_gpu) == 2  # a new snapshot gets a fresh copy
    assert np.isfinite(g.search(unit(1, 8))[0][0].distance)
