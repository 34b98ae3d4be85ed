"""Evaluation runs: protocol files and photo folders in, report.json and plots out.

The CLI only parses and prints; everything a figure depends on happens here, so
a figure from ``faceid evaluate`` and one from a script calling these functions
are the same figure. Photos go through the production pipeline
(:meth:`FaceID.embed_many`), never a shortcut, so the numbers describe what users
get. Where no face is detected the documented ``full-image`` fallback aligns the
face assumed at the centre: LFW photos are centred on their subject, and dropping
those pairs would flatter the figures, so they are kept and counted instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceid.distance import pairwise_squared_l2, squared_l2
from faceid.errors import BadImage, FaceIDError, ModelError, UsageError

if TYPE_CHECKING:
    from faceid.api import FaceID
    from faceid.evaluate.protocols import Pair

__all__ = ["PICKS", "evaluate_pairs", "evaluate_identify", "calibrate", "embed_photos"]

PICKS = ("center", "largest")
STRANGERS = {"all": 0.0, "half": 0.5}
"""--strangers: the share of the one-photo people enrolled as distractors instead of probed."""
ON_NO_FACE = "full-image"
CHUNK = 2000
"""Photos embedded (and cached) per embed_many call: an interrupted run loses at most this."""

_TIMINGS_NOTE = (
    "wall_s: wall-clock seconds per phase of this run (crop = load + detect + align, "
    "in parallel workers). stage_sum_s: per-photo stage seconds summed over all "
    "photos and workers, so it can exceed the wall time. Cached photos cost no "
    "crop or embed time."
)


@dataclass
class Embedded:
    """One embedding per requested path, how each was obtained, and what it cost."""

    vectors: np.ndarray
    status: list[str]
    cache_hits: int = 0
    cache_misses: int = 0
    cache_file: str | None = None
    wall_s: dict[str, float] = field(default_factory=dict)
    stage_sum_s: dict[str, float] = field(default_factory=dict)

    def fallbacks(self, paths: list[Path]) -> list[str]:
        return [os.fspath(p) for p, s in zip(paths, self.status) if s == "fallback"]


def _settings(fid: FaceID, pick: str) -> dict:
    """Everything besides the weights that changes an embedding: part of the cache key."""
    enc = fid.encoder
    return {
        "pick": pick,
        "on_no_face": ON_NO_FACE,
        "upsample": int(fid.upsample),
        "input_size": int(enc.input_size),
        "preprocess": enc.preprocess,
        "detector": "dlib-hog",
    }


def _checkpoint_of(fid: FaceID):
    """The torch checkpoint behind fid's model: calibrate writes a checkpoint, not an ONNX file.

    The shipped ONNX model is the export of the shipped checkpoint (same weights, same id), so
    that one is used; for another .onnx the user passes the .pt it was exported from.
    """
    from faceid.model.checkpoint import load_checkpoint
    from faceid.model.runner import DEFAULT_ONNX, DEFAULT_PT

    enc = fid.encoder
    if enc.checkpoint is not None:
        return enc.checkpoint
    path = fid.model_path
    if path is not None and Path(path).resolve() != DEFAULT_ONNX:
        raise ModelError(
            f"calibrate writes a checkpoint: pass the .pt that {os.fsdecode(path)} was exported "
            "from as `model`",
            param="model",
        )
    ckpt = load_checkpoint(DEFAULT_PT)
    if ckpt.model_id != enc.model_id:
        raise ModelError(
            f"{DEFAULT_PT.name} ({ckpt.model_id}) is not the model the ONNX file holds "
            f"({enc.model_id}): re-export it with scripts/export_onnx.py"
        )
    return ckpt


def can_plot() -> bool:
    """Plots need matplotlib, which the base install leaves out (`pip install 'faceid[plots]'`);
    without it the reports are written without their PNGs ("plots": {})."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _check_pick(pick: str) -> None:
    if pick not in PICKS:
        raise UsageError(f"unknown `pick` {pick!r}: use one of {', '.join(PICKS)}", param="pick")


def embed_photos(
    fid: FaceID,
    paths: list[Path],
    *,
    pick: str = "center",
    workers: int = 0,
    progress: bool = False,
    use_cache: bool = True,
) -> Embedded:
    """Embed every path (one row each, in order), reusing cached embeddings.

    Photos with identical bytes are embedded once. Misses go through
    ``embed_many`` in chunks, and the cache is saved after each chunk, so an
    interrupted evaluation resumes where it stopped. A photo that cannot be read
    at all fails the run: a protocol figure measured on fewer pairs than the
    protocol names would not be the protocol's figure.
    """
    from faceid.evaluate.cache import EmbeddingCache, photo_key

    _check_pick(pick)
    t0 = time.perf_counter()
    _ = fid.encoder  # load the model first, so its time is not billed to hashing
    wall = {"load_model": round(fid.timings.get("load_model", 0.0), 4)}
    settings = _settings(fid, pick)
    model_id = fid.encoder.model_id
    dim = fid.encoder.embedding_dim

    t = time.perf_counter()
    keys = []
    for p in paths:
        try:
            keys.append(photo_key(model_id, settings, Path(p).read_bytes()))
        except OSError as exc:
            raise BadImage(f"{os.fsdecode(p)}: cannot read ({exc.strerror or exc})") from None
    cache = EmbeddingCache(model_id) if use_cache else None
    vectors = np.zeros((len(paths), dim), np.float32)
    status = [""] * len(paths)
    todo: dict[str, list[int]] = {}
    hits = 0
    for i, k in enumerate(keys):
        got = cache.get(k) if cache is not None else None
        if got is not None:
            vectors[i], status[i] = got
            hits += 1
        else:
            todo.setdefault(k, []).append(i)
    wall["hash"] = time.perf_counter() - t

    stages = ("load", "detect", "align", "embed")
    before = {s: fid.timings.get(s, 0.0) for s in stages}
    crop_wall = embed_wall = 0.0
    errors: list[str] = []
    pending = list(todo.items())
    for start in range(0, len(pending), CHUNK):
        chunk = pending[start : start + CHUNK]
        t = time.perf_counter()
        embed_before = fid.timings.get("embed", 0.0)
        emb, rows = fid.embed_many(
            [paths[idx[0]] for _, idx in chunk],
            on_no_face=ON_NO_FACE,
            pick=pick,
            workers=workers,
            progress=progress,
        )
        spent_embed = fid.timings.get("embed", 0.0) - embed_before
        embed_wall += spent_embed
        crop_wall += time.perf_counter() - t - spent_embed
        r = 0
        done_keys, done_vecs, done_status = [], [], []
        for (key, idx), row in zip(chunk, rows):
            if row["status"] not in ("ok", "fallback"):
                errors.append(row["error"] or f"{row['source']}: {row['status']}")
                continue
            for i in idx:
                vectors[i], status[i] = emb[r], row["status"]
            done_keys.append(key)
            done_vecs.append(emb[r])
            done_status.append(row["status"])
            r += 1
        if cache is not None and done_keys:
            cache.put(done_keys, np.stack(done_vecs), done_status)
            cache.save()
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BadImage(f"{len(errors)} photo(s) could not be embedded: {errors[0]}{more}")
    wall["crop"] = crop_wall
    wall["embed"] = embed_wall
    wall["total_embedding"] = time.perf_counter() - t0
    return Embedded(
        vectors=vectors,
        status=status,
        cache_hits=hits,
        cache_misses=len(paths) - hits,
        cache_file=os.fspath(cache.path) if cache is not None else None,
        wall_s=wall,
        stage_sum_s={s: fid.timings.get(s, 0.0) - before[s] for s in stages},
    )


# --- helpers -------------------------------------------------------------------


def _read_pairs(pairs_file: str | os.PathLike, root: str | os.PathLike) -> list[Pair]:
    from faceid.evaluate.protocols import read_pairs

    try:
        pairs = read_pairs(pairs_file, root)
    except ValueError as exc:
        raise FaceIDError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FaceIDError(f"cannot read pairs file {os.fsdecode(pairs_file)}: {exc}") from None
    return pairs


def _read_people(people_file: str | os.PathLike) -> list[tuple[str, int]]:
    from faceid.evaluate.protocols import read_people

    try:
        return read_people(people_file)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"`people_file` {os.fsdecode(people_file)}: {exc}", param="people_file"
        ) from None


def _distinct(paths: list[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


def _require_files(paths: list[Path], root: str | os.PathLike) -> None:
    """Fail before any work when photos are missing: usually a wrong --root."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise BadImage(
            f"{len(missing)} of {len(paths)} photo(s) missing under {os.fsdecode(root)}, "
            f"e.g. {os.fsdecode(missing[0])}: is `root` the folder holding the person folders?",
            param="root",
        )


def _out_dir(out: str | os.PathLike | None, default: str) -> Path:
    path = Path(out) if out is not None else Path("reports") / default
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create `out` {os.fsdecode(path)}: {exc.strerror}", param="out"
        ) from None
    return path


def _threshold_info(fid: FaceID, kind: str = "verify") -> dict:
    """The threshold in force: verification's, or identification's stricter one."""
    if kind == "identify":
        model, used = float(fid.encoder.identify_threshold), float(fid.identify_threshold)
    else:
        model, used = float(fid.encoder.threshold), float(fid.threshold)
    source = "override" if fid.threshold_overridden else "model"
    return {"value": used, "source": source, "model": model}


def _model_info(fid: FaceID) -> dict:
    path = fid.model_path
    return {
        "id": fid.encoder.model_id,
        "path": os.fspath(path) if path is not None else "default",
        "threshold": float(fid.encoder.threshold),
        "device": fid.encoder.device,
    }


def _timings(embedded: Embedded, **phases: float) -> dict:
    wall = {k: round(v, 4) for k, v in {**embedded.wall_s, **phases}.items()}
    return {
        "wall_s": wall,
        "stage_sum_s": {k: round(v, 4) for k, v in embedded.stage_sum_s.items()},
        "note": _TIMINGS_NOTE,
    }


def _cache_info(embedded: Embedded) -> dict:
    return {
        "enabled": embedded.cache_file is not None,
        "hits": embedded.cache_hits,
        "misses": embedded.cache_misses,
        "file": embedded.cache_file,
    }


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared L2 between rows, in float64 via the dot-product form (no N x M x D temporary)."""
    return pairwise_squared_l2(a.astype(np.float64), b.astype(np.float64))


def _finish(report: dict, out: Path) -> dict:
    """Write report.json and return exactly what was written (NaN as null, plain types)."""
    from faceid.evaluate.report import write_json

    path = out / "report.json"
    write_json(report, path)
    return json.loads(path.read_text(encoding="utf-8"))


def _pair_embeddings(
    fid: FaceID,
    pairs_file: str | os.PathLike,
    root: str | os.PathLike,
    **embed_kwargs: Any,
) -> tuple[list[Pair], list[Path], Embedded, np.ndarray, np.ndarray]:
    """Pairs, their distinct photos, the embeddings, and each pair's (distance, same)."""
    pairs = _read_pairs(pairs_file, root)
    paths = _distinct([p for pair in pairs for p in (pair.path_a, pair.path_b)])
    _require_files(paths, root)
    embedded = embed_photos(fid, paths, **embed_kwargs)
    row = {p: i for i, p in enumerate(paths)}
    a = embedded.vectors[[row[p.path_a] for p in pairs]].astype(np.float64)
    b = embedded.vectors[[row[p.path_b] for p in pairs]].astype(np.float64)
    dist = squared_l2(a, b)
    same = np.array([p.same for p in pairs], dtype=bool)
    return pairs, paths, embedded, dist, same


# --- commands ------------------------------------------------------------------


def evaluate_pairs(
    fid: FaceID,
    pairs_file: str | os.PathLike,
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    pick: str = "center",
    workers: int = 0,
    progress: bool = False,
    use_cache: bool = True,
) -> dict:
    """Verification figures on an LFW pairs file; writes report.json, roc.png, distances.png.

    The headline is the 10-fold accuracy (each fold's threshold fitted on the
    others, folds as the protocol file defines them); accuracy at the stored
    threshold (the model's, or FaceID's override) is what users of this model
    actually get. Returns the report as written.
    """
    from faceid.evaluate import metrics
    from faceid.evaluate.report import VERIFY_FARS, pairs_report, plot_distance_histograms, plot_roc

    _check_pick(pick)
    out = _out_dir(out, Path(pairs_file).stem)
    pairs, paths, embedded, dist, same = _pair_embeddings(
        fid, pairs_file, root, pick=pick, workers=workers, progress=progress, use_cache=use_cache
    )
    threshold = _threshold_info(fid)

    t = time.perf_counter()
    folds = np.array([p.fold for p in pairs])
    figures = pairs_report(dist, same, folds, stored_threshold=threshold["value"])
    far, tar, _ = metrics.roc(dist, same)
    metrics_s = time.perf_counter() - t

    t = time.perf_counter()
    plots = {"roc": "roc.png", "distances": "distances.png"} if can_plot() else {}
    if plots:
        plot_roc(
            far,
            tar,
            out / plots["roc"],
            label=fid.encoder.model_id,
            marks={f"FAR {f:g}": f for f in VERIFY_FARS},
        )
        plot_distance_histograms(dist, same, threshold["value"], out / plots["distances"])
    plots_s = time.perf_counter() - t

    fallback_files = embedded.fallbacks(paths)
    fallback_set = set(fallback_files)
    report = {
        "kind": "pairs",
        "pairs_file": os.fspath(pairs_file),
        "root": os.fspath(root),
        "out": os.fspath(out),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": _model_info(fid),
        "threshold": threshold,
        "settings": {"pick": pick, "on_no_face": ON_NO_FACE, "upsample": fid.upsample},
        "images": {
            "distinct": len(paths),
            "fallbacks": len(fallback_files),
            "pairs_with_fallback": int(
                sum(
                    os.fspath(p.path_a) in fallback_set or os.fspath(p.path_b) in fallback_set
                    for p in pairs
                )
            ),
            "fallback_files": fallback_files,
        },
        **figures,
        "plots": plots,
        "cache": _cache_info(embedded),
        "timings": _timings(embedded, metrics=metrics_s, plots=plots_s),
    }
    return _finish(report, out)


def _limit_people(identities: dict[str, list[Path]], n: int, shots: int) -> dict[str, list[Path]]:
    """The first n people (by name) who can be enrolled and probed, plus the first n who cannot.

    Keeps both halves of the split (genuine and impostor/distractor people) so a
    small subset still exercises every figure.
    """
    if n < 1:
        raise UsageError(f"`limit_people` must be at least 1, got {n}", param="limit_people")
    names = sorted(identities)
    multi = [m for m in names if len(identities[m]) >= shots + 1][:n]
    few = [m for m in names if 1 <= len(identities[m]) <= shots][:n]
    return {m: identities[m] for m in sorted(multi + few)}


def evaluate_identify(
    fid: FaceID,
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    shots: int = 1,
    people_file: str | os.PathLike | None = None,
    limit_people: int | None = None,
    seed: int = 0,
    strangers: str = "all",
    fpir: float | None = None,
    max_rank: int = 10,
    pick: str = "center",
    workers: int = 0,
    progress: bool = False,
    use_cache: bool = True,
) -> dict:
    """Closed- and open-set identification on a folder of per-person folders.

    People with more than ``shots`` photos enrol ``shots`` of them and probe with
    the rest; the others are strangers: with ``strangers="all"`` every one of them
    probes as an impostor who should be rejected, with ``"half"`` a seeded half
    enrol as distractors instead, making the gallery more crowded (see
    ``protocols.identify_split``). The gallery is small enough for an exact numpy
    distance matrix, which also keeps ties and ranks exactly as ``metrics``
    defines them. Besides the fixed-rate figures it scores the decision rule a
    user of ``identify`` gets for this gallery's number of people (the model's
    open-set rule at ``fpir``, default 1 %, or the given threshold). Writes
    report.json, cmc.png and det.png; returns the report as written.
    """
    from faceid.evaluate import metrics
    from faceid.evaluate.protocols import identify_split, scan_identities
    from faceid.evaluate.report import identify_report, plot_cmc, plot_det

    _check_pick(pick)
    if shots < 1:
        raise UsageError(f"`shots` must be at least 1, got {shots}", param="shots")
    if max_rank < 1:
        raise UsageError(f"`max_rank` must be at least 1, got {max_rank}", param="max_rank")
    try:
        identities = scan_identities(root)
    except OSError as exc:
        raise UsageError(f"`root` {os.fsdecode(root)}: {exc}", param="root") from None
    people_total = len(identities)
    if people_file is not None:
        # e.g. LFW's peopleDevTest.txt: measure only on people the model never saw.
        wanted = {name for name, _ in _read_people(people_file)}
        identities = {n: v for n, v in identities.items() if n in wanted}
    if limit_people is not None:
        identities = _limit_people(identities, limit_people, shots)
    if strangers not in STRANGERS:
        raise UsageError(f"unknown --strangers {strangers!r}: use one of {', '.join(STRANGERS)}")
    split = identify_split(
        identities, shots=shots, distractor_share=STRANGERS[strangers], seed=seed
    )
    if not split.genuine_probes:
        raise FaceIDError(
            f"{os.fsdecode(root)}: nobody has more than {shots} photo(s), so nobody can be "
            "both enrolled and searched for"
        )
    out = _out_dir(out, f"identify-{Path(root).resolve().name}")
    groups = (split.gallery, split.genuine_probes, split.impostor_probes)
    paths = _distinct([p for group in groups for _, p in group])
    embedded = embed_photos(
        fid, paths, pick=pick, workers=workers, progress=progress, use_cache=use_cache
    )
    row = {p: i for i, p in enumerate(paths)}

    def vectors(group: list[tuple[str, Path]]) -> np.ndarray:
        return embedded.vectors[[row[p] for _, p in group]].reshape(len(group), -1)

    t = time.perf_counter()
    gallery = vectors(split.gallery)
    genuine_dist = _sq_dist(vectors(split.genuine_probes), gallery)
    impostor_dist = _sq_dist(vectors(split.impostor_probes), gallery)
    search_s = time.perf_counter() - t

    threshold = _threshold_info(fid, "identify")
    gallery_people = len({n for n, _ in split.gallery})
    rule = fid.identify_rule(fpir, gallery_people)
    t = time.perf_counter()
    figures = identify_report(
        genuine_dist,
        [n for n, _ in split.genuine_probes],
        [n for n, _ in split.gallery],
        impostor_dist,
        stored_threshold=threshold["value"],
        rule=rule.to_dict(),
        max_rank=max_rank,
    )
    metrics_s = time.perf_counter() - t

    t = time.perf_counter()
    plots = {"cmc": "cmc.png"} if can_plot() else {}
    if plots:
        plot_cmc(figures["cmc"], out / plots["cmc"])
    if plots and split.impostor_probes:
        plots["det"] = "det.png"
        named = metrics.true_ranks(
            genuine_dist, [n for n, _ in split.genuine_probes], [n for n, _ in split.gallery]
        )
        at = figures["default_rule"]
        gallery_names = [n for n, _ in split.gallery]
        plot_det(
            *metrics.det(genuine_dist.min(axis=1), named == 1, impostor_dist.min(axis=1))[:2],
            out / plots["det"],
            label=f"{fid.encoder.model_id}: distance",
            marks={
                rule.describe(): (at["strangers_named"], 1.0 - at["genuine_identified"]),
            },
            more={
                f"{fid.encoder.model_id}: ratio (closest / next person)": metrics.det(
                    metrics.ratio_scores(genuine_dist, gallery_names),
                    named == 1,
                    metrics.ratio_scores(impostor_dist, gallery_names),
                )[:2]
            },
        )
    plots_s = time.perf_counter() - t

    fallback_files = embedded.fallbacks(paths)
    report = {
        "kind": "identify",
        "root": os.fspath(root),
        "out": os.fspath(out),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": _model_info(fid),
        "threshold": threshold,
        "settings": {
            "pick": pick,
            "on_no_face": ON_NO_FACE,
            "upsample": fid.upsample,
            "shots": shots,
            "seed": seed,
            "strangers": strangers,
            "limit_people": limit_people,
            "people_file": None if people_file is None else os.fsdecode(people_file),
            "search": "exact (numpy)",
        },
        "people": {"in_root": people_total, "used": len(identities)},
        "images": {
            "distinct": len(paths),
            "fallbacks": len(fallback_files),
            "fallback_files": fallback_files,
        },
        **figures,
        "plots": plots,
        "cache": _cache_info(embedded),
        "timings": _timings(embedded, search=search_s, metrics=metrics_s, plots=plots_s),
    }
    return _finish(report, out)


HELD_OUT_PEOPLE = "peopleDevTest.txt"


def _held_out_overlap(pairs_file: str | os.PathLike, root: str | os.PathLike) -> list[str]:
    """A warning when the pairs really name people of peopleDevTest.txt (found beside the
    pairs file or in root), on whom the project's figures are measured; none otherwise."""
    from faceid.evaluate.protocols import pair_people, read_people

    for folder in (Path(pairs_file).parent, Path(root)):
        people_file = folder / HELD_OUT_PEOPLE
        if people_file.is_file():
            break
    else:
        return []
    try:
        held_out = {name for name, _ in read_people(people_file)}
    except (OSError, ValueError):
        return []
    overlap = sorted(pair_people(_read_pairs(pairs_file, root), root) & held_out)
    if not overlap:
        return []
    return [
        f"{len(overlap)} of the people in {Path(pairs_file).name} (e.g. {overlap[0]}) are in "
        f"{HELD_OUT_PEOPLE}, on whom the project's figures are measured: calibrating on them "
        "makes those figures optimistic; use pairsDevTrain.txt or your own people"
    ]


def calibrate(
    fid: FaceID,
    pairs_file: str | os.PathLike,
    root: str | os.PathLike,
    output: str | os.PathLike,
    *,
    target_far: float | None = None,
    force: bool = False,
    pick: str = "center",
    workers: int = 0,
    progress: bool = False,
    use_cache: bool = True,
) -> dict:
    """Choose a threshold on labelled pairs and write it into a NEW checkpoint file.

    Default: the threshold of maximum accuracy (midway between distances, see
    ``metrics.best_threshold``). With ``target_far``: the largest observed
    distance whose false-accept rate is <= target, for deployments where a false
    accept costs more than a false reject. Only the threshold and the meta record
    change, so the model id (a digest of the weights) stays the same and
    galleries built with the model remain usable. An existing output is never
    replaced unless ``force``: a checkpoint is a release artefact.
    """
    from faceid.evaluate import metrics
    from faceid.model.checkpoint import load_checkpoint, save_checkpoint

    _check_pick(pick)
    output = Path(output)
    if target_far is not None and not 0.0 < target_far < 1.0:
        raise UsageError(
            f"`target_far` must be within (0, 1), got {target_far}", param="target_far"
        )
    if output.exists() and not force:
        raise ModelError(
            f"{os.fsdecode(output)} exists: choose another file or use `force`", param="force"
        )
    if output.is_dir():
        raise UsageError(f"{os.fsdecode(output)} is a folder: give a checkpoint file name")
    warnings = _held_out_overlap(pairs_file, root)

    pairs, paths, embedded, dist, same = _pair_embeddings(
        fid, pairs_file, root, pick=pick, workers=workers, progress=progress, use_cache=use_cache
    )
    t = time.perf_counter()
    if target_far is None:
        method = "max-accuracy"
        threshold, _ = metrics.best_threshold(dist, same)
    else:
        method = "target-far"
        try:
            threshold = metrics.threshold_at_far(dist, same, target_far)
        except ValueError as exc:
            raise FaceIDError(f"{os.fsdecode(pairs_file)}: {exc}") from None
    accepted = dist <= threshold
    outcome = {
        "accuracy": metrics.accuracy_at(dist, same, threshold),
        "tar": float(accepted[same].mean()) if same.any() else None,
        "far": float(accepted[~same].mean()) if (~same).any() else None,
    }
    metrics_s = time.perf_counter() - t

    old = _checkpoint_of(fid)
    record = {
        "method": method,
        "target_far": target_far,
        "threshold": float(threshold),
        "previous_threshold": float(old.threshold),
        "pairs_file": Path(pairs_file).name,
        "pairs_sha256": hashlib.sha256(Path(pairs_file).read_bytes()).hexdigest(),
        "pairs": int(same.size),
        "genuine": int(same.sum()),
        "impostor": int((~same).sum()),
        "fallbacks": len(embedded.fallbacks(paths)),
        "pick": pick,
        "on_no_face": ON_NO_FACE,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **{k: v for k, v in outcome.items() if v is not None},
    }
    new = dataclasses.replace(
        old, threshold=float(threshold), meta={**old.meta, "calibration": record}
    )
    save_checkpoint(new, output, overwrite=force)
    written = load_checkpoint(output)  # prove it loads (digest checked) before saying so
    if written.model_id != old.model_id:  # pragma: no cover - would be a checkpoint bug
        raise ModelError(f"{os.fsdecode(output)}: model id changed while calibrating")
    return {
        "output": os.fspath(output),
        "model_id": written.model_id,
        "model": _model_info(fid),
        "threshold": float(written.threshold),
        "previous_threshold": float(old.threshold),
        "method": method,
        "target_far": target_far,
        **outcome,
        "counts": {
            "pairs": int(same.size),
            "genuine": int(same.sum()),
            "impostor": int((~same).sum()),
            "images": len(paths),
        },
        "images": {"fallbacks": record["fallbacks"]},
        "cache": _cache_info(embedded),
        "timings": _timings(embedded, metrics=metrics_s),
        "warnings": warnings,
    }
