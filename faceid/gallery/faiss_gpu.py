"""Gallery search on a GPU, when the installed FAISS can and a GPU is visible.

faiss-cpu (the dependency) has no GPU code, so everything here answers "no" there and the
gallery searches its CPU index as always; installing faiss-gpu instead is the only switch.
Only the search moves: the gallery on disk, its writes and its repair stay CPU indexes, so a
gallery written on a GPU machine opens unchanged on a laptop.
"""

from __future__ import annotations

import threading
from typing import Any

from faceid.gallery.faiss_index import inner_index

# Below this many faces a search stays on the CPU even with a GPU: an exact CPU search of 10k
# faces takes ~0.1 ms per query (scripts/benchmark.py), about what one GPU search costs in
# kernel launches and host<->device copies alone, so the GPU can only win on larger galleries.
GPU_SEARCH_MIN_FACES = 50_000

_lock = threading.Lock()
_resources: Any = None


def gpu_count() -> int:
    """GPUs FAISS can use here: 0 with faiss-cpu, without a driver, or without a GPU."""
    try:
        import faiss
    except ImportError:
        return 0
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except Exception:  # a broken driver must not break a CPU search
        return 0


def _gpu_capable(index: Any) -> bool:
    """Exact and IVF indexes have GPU twins; HNSW (our approximate default) has none."""
    import faiss

    inner = inner_index(index)
    return isinstance(inner, faiss.IndexFlat) or faiss.try_extract_index_ivf(inner) is not None


def to_gpu(index: Any, min_faces: int | None = None) -> Any | None:
    """A copy of ``index`` on GPU 0 to search with, or None where the CPU index should serve.

    None when FAISS has no GPU, the index type has no GPU version, the gallery is smaller than
    ``min_faces`` (default GPU_SEARCH_MIN_FACES), or the copy fails (e.g. out of GPU memory):
    the CPU index is always right.
    """
    global _resources
    if min_faces is None:
        min_faces = GPU_SEARCH_MIN_FACES
    if index.ntotal < min_faces or not gpu_count() or not _gpu_capable(index):
        return None
    import faiss

    try:
        with _lock:  # one set of GPU buffers per process, shared by every gallery
            if _resources is None:
                _resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(_resources, 0, index)
    except Exception:  # FAISS raises RuntimeError; allocation failures vary
        return None
