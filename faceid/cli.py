"""The `faceid` command: parse, call the API, print text or --json, map errors to exit codes.

Exit codes: 0 success (verify: same person; identify: someone recognised),
1 different person / unknown face / any error with the input, gallery or model,
2 usage error, 141 output pipe closed early (quietly, like other Unix tools).
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from pathlib import Path

import click

from faceid.errors import FaceIDError, UsageError
from faceid.locations import user_gallery_path

EXIT_OK, EXIT_NO, EXIT_USAGE, EXIT_PIPE = 0, 1, 2, 141

# Non-UTF-8 file names reach us as lone surrogates (PEP 383); a strict UTF-8 stdout
# cannot write them, so they are escaped: \udcff in JSON (json.loads + os.fsencode give
# the original bytes back) and in text.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _json(data: dict) -> str:
    text = json.dumps(data, ensure_ascii=False, default=_plain)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _text(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _emit(ctx: click.Context, data: dict, text: str | None) -> None:
    if ctx.obj["json"]:
        click.echo(_json(data))
    elif text is not None:
        click.echo(_text(text))


def _plain(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)


def _flags(message: str) -> str:
    """One line, with the API's parameter names (`top_k`) turned into this command's flags
    (--top-k): the library speaks of its parameters, the command line of its options."""
    message = " ".join(message.split())
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return message
    flags = {
        p.name: max(p.opts, key=len) for p in ctx.command.params if isinstance(p, click.Option)
    }
    return re.sub(r"`(\w+)`", lambda m: flags.get(m[1], m[0]), message)


def _progress(ctx: click.Context) -> bool:
    """Progress bars only for a person watching: stderr is a terminal and no --json."""
    return not ctx.obj.get("json") and sys.stderr.isatty()


def _close_bars() -> None:
    """End any progress bar's line, so that an error is never glued onto it."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def _pipe_closed() -> None:
    """The reader went away (`faceid list | head`): stop quietly, as Unix tools do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the final flush must not fail again
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_PIPE)


def _fail(ctx: click.Context | None, exc: Exception, code: int) -> None:
    _close_bars()
    message = _flags(str(exc)) or type(exc).__name__
    click.echo(_text(f"faceid: error: {message}"), err=True)
    if ctx is not None and ctx.obj and ctx.obj.get("json"):
        click.echo(_json({"error": message, "kind": type(exc).__name__}))
    sys.exit(code)


def guarded(fn):
    """Turn FaceIDError (and anything unexpected) into one stderr line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:
            _pipe_closed()
        except FaceIDError as exc:
            _fail(ctx, exc, exc.exit_code)
        except KeyboardInterrupt:
            click.echo("faceid: interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # the promise: no traceback for users
            if os.environ.get("FACEID_DEBUG"):
                raise
            _fail(
                ctx,
                RuntimeError(
                    f"internal error ({type(exc).__name__}: {exc}); "
                    "rerun with FACEID_DEBUG=1 for details"
                ),
                EXIT_NO,
            )

    return wrapper


def _model_options(fn):
    """The options that choose the gallery, model and device: every command that builds a
    FaceID takes them, `serve` included."""
    options = [
        click.option(
            "--gallery",
            type=str,  # a folder or a postgresql:// URL, which a Path would mangle
            default=None,
            help="Gallery folder or postgresql:// URL "
            f"[default: $FACEID_GALLERY or {user_gallery_path()}].",
        ),
        click.option(
            "--threshold",
            type=float,
            default=None,
            help="Squared-L2 distance threshold for verify and identify "
            "[default: the model's; identify's is stricter].",
        ),
        click.option(
            "--model",
            type=click.Path(path_type=Path),
            default=None,
            help="Model: an .onnx export (onnxruntime) or a .pt checkpoint (needs torch) "
            "[default: the shipped model].",
        ),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            default="auto",
            show_default=True,
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def common(fn):
    """Options every command takes."""
    fn = _model_options(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")(fn)

    @functools.wraps(fn)
    def wrapper(*args, as_json, gallery, threshold, model, device, **kwargs):
        from faceid.api import FaceID

        ctx = click.get_current_context()
        ctx.obj = {"json": as_json}
        # Options that configure FaceID itself go to its constructor, not to the command.
        extra = {k: kwargs.pop(k) for k in _FACEID_OPTIONS if k in kwargs}
        ctx.obj["fid"] = FaceID(
            gallery=gallery, model=model, threshold=threshold, device=device, **extra
        )
        return fn(*args, **kwargs)

    return guarded(wrapper)


_FACEID_OPTIONS = ("index", "index_switch")

# Pipeline order for --timings; one-off loads first so the per-photo stages read together.
_STAGES = ("load_model", "load_detector", "load_gallery", "load", "detect", "align", "embed")


def _timings(fid) -> dict:
    """Milliseconds per stage in pipeline order (stages never nest, so they add up)."""
    order = {name: i for i, name in enumerate(_STAGES)}
    items = sorted(fid.timings.items(), key=lambda kv: order.get(kv[0], len(order)))
    return {k: round(v * 1000, 2) for k, v in items}


def _timing_text(fid) -> str:
    return "timings (ms): " + ", ".join(f"{k} {v}" for k, v in _timings(fid).items())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="faceid")
def main() -> None:
    """Face verification and recognition: enroll people, verify two photos, identify faces."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--name", help="Person's name (needed for single photos and flat folders).")
@click.option(
    "--one-person",
    is_flag=True,
    help="Enroll everything under the folders given as --name, per-person folders included.",
)
@click.option("--largest", is_flag=True, help="Use the largest face when a photo has several.")
@click.option(
    "--allow-duplicates",
    is_flag=True,
    help="Enroll faces already enrolled, or that already pass for someone else "
    "(refused and listed by default).",
)
@click.option("--workers", default=0, help="Detection processes [default: all cores].")
@click.option(
    "--index",
    default="Flat",
    show_default=True,
    help="FAISS index factory of a NEW gallery (e.g. Flat, HNSW32, IVF4096,Flat); "
    "an existing gallery keeps its own.",
)
@click.option(
    "--index-switch",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Rebuild an exact gallery as HNSW32 once it holds more than N faces (0: never); "
    "recorded in the gallery [default: what it records; 100000 for a new one].",
)
@common
def enroll(paths, name, one_person, largest, allow_duplicates, workers):
    """Add faces to the gallery.

    PATHS are photos (all enrolled as --name) or folders of per-person folders (each
    folder's name is its person's name, and its subfolders are read too). A folder of
    photos needs --name; per-person folders with --name need --one-person. Hidden
    files and folders, and files that are not images (judged by content), are
    skipped and listed with their reasons.
    """
    import time

    ctx = click.get_current_context()
    fid = ctx.obj["fid"]
    start = time.perf_counter()
    report = fid.enroll_paths(
        list(paths),
        name,
        one_person=one_person,
        largest=largest,
        workers=workers,
        progress=_progress(ctx),
        allow_duplicates=allow_duplicates,
    )
    seconds = time.perf_counter() - start
    ok, bad, skipped, dup = report.enrolled, report.failed, report.skipped, report.duplicates
    tried = len(ok) + len(bad) + len(dup)
    if not ok and tried == 1 and not skipped:
        # One photo and it was refused: that is the command's error, said once.
        if bad:
            error = bad[0]["error"]
        else:
            error = f"{dup[0]['source']}: {dup[0]['reason']}; --allow-duplicates enrolls it anyway"
        _emit(ctx, report.to_dict() | {"gallery": fid.gallery_label}, None)
        click.echo(_text(f"faceid: error: {_flags(error)}"), err=True)
        sys.exit(EXIT_NO)
    lines = [
        f"enrolled {len(ok)} photo(s) of {len({r['name'] for r in ok})} person(s) "
        f"into {fid.gallery_label} in {seconds:.1f} s ({tried / seconds:.1f} photos/s)"
        + (f"; {len(bad)} failed" if bad else "")
        + (f"; {len(dup)} refused as duplicates (--allow-duplicates enrolls them)" if dup else "")
        + (f"; {len(skipped)} skipped" if skipped else "")
    ]
    if report.index_deferred and not report.index_switched:
        factory, faces = report.index_deferred
        lines.append(
            f"--index {factory} needs {faces:,} faces to train: the new gallery searches "
            f"exactly (Flat) until it holds that many, then switches to {factory}"
        )
    if report.index_switched:
        lines.append(
            f"the gallery passed its --index-switch size: its index was rebuilt as "
            f"{report.index_switched} (approximate search, fast at any size)"
        )
    lines += [f"failed: {_flags(r['error'])}" for r in bad]
    lines += [f"duplicate: {r['source']}: {r['reason']}" for r in dup]
    lines += [f"skipped: {r['source']}: {r['reason']}" for r in skipped]
    _emit(ctx, report.to_dict() | {"gallery": fid.gallery_label}, "\n".join(lines))
    if not ok:
        click.echo(
            f"faceid: error: no photo was enrolled ({len(bad)} failed, {len(dup)} duplicate(s), "
            f"{len(skipped)} skipped)",
            err=True,
        )
        sys.exit(EXIT_NO)


@main.command()
@click.argument("photo_a", type=click.Path(path_type=Path))
@click.argument("photo_b", type=click.Path(path_type=Path))
@click.option("--largest", is_flag=True, help="Use the largest face when a photo has several.")
@click.option("--timings", is_flag=True, help="Report milliseconds per stage.")
@common
def verify(photo_a, photo_b, largest, timings):
    """Say whether two photos show the same person (exit 0 same, 1 different)."""
    ctx = click.get_current_context()
    fid = ctx.obj["fid"]
    v = fid.verify(photo_a, photo_b, largest=largest)
    verdict = "same person" if v.same else "different people"
    text = f"{verdict}: distance {v.distance:.4f} (threshold {v.threshold:.4f})"
    for photo, face in zip((photo_a, photo_b), v.faces):
        if face["faces_found"] > 1:  # say which face --largest chose
            text += (
                f"\n{photo}: the largest of {face['faces_found']} faces, box {face['box']} "
                "(left, top, right, bottom)"
            )
    data = v.to_dict()
    if timings:
        data["timings_ms"] = _timings(fid)
        text += "\n" + _timing_text(fid)
    _emit(ctx, data, text)
    sys.exit(EXIT_OK if v.same else EXIT_NO)


_FPIR_HELP = (
    "Target share of strangers given a name (FPIR), for the gallery's number of people "
    "[default: 0.01]; needs a model with an open-set calibration."
)


@main.command()
@click.argument("photo", type=click.Path(path_type=Path))
@click.option("--top-k", default=1, show_default=True, help="List the K nearest people.")
@click.option("--all-faces", is_flag=True, help="Report every face of a group photo.")
@click.option("--largest", is_flag=True, help="Use the largest face when a photo has several.")
@click.option("--fpir", type=float, default=None, metavar="P", help=_FPIR_HELP)
@click.option("--timings", is_flag=True, help="Report milliseconds per stage.")
@common
def identify(photo, top_k, all_faces, largest, fpir, timings):
    """Name the person in a photo, or 'unknown' (exit 0 recognised, 1 unknown).

    The rule gives at most --fpir of strangers a name for the gallery's number of people
    (1 % by default), bounding the closest person's distance or, in larger galleries, its
    ratio to the next person's (whichever the model's calibration says names more of the
    enrolled); --threshold sets a distance threshold instead.
    """
    ctx = click.get_current_context()
    fid = ctx.obj["fid"]
    results = fid.identify(photo, top_k=top_k, all_faces=all_faces, largest=largest, fpir=fpir)
    lines = []
    for r in results:
        dist = f"{r.distance:.4f}" if r.distance is not None else "-"
        if r.rule is not None and r.rule.score == "ratio":
            ratio = f"{r.ratio:.4f}" if r.ratio is not None else "-"
            head = f"{r.name} (distance {dist}, ratio to the next person {ratio}, "
            head += f"bound {r.threshold:.4f})"
        else:
            head = f"{r.name} (distance {dist}, threshold {r.threshold:.4f})"
        lines.append(f"face at {list(r.box)}: {head}" if all_faces else head)
        if top_k > 1:
            lines += [
                f"  {i + 1}. {m['name']}  {m['distance']:.4f}" for i, m in enumerate(r.matches)
            ]
    rule = results[0].rule if results else None
    data = {"faces": [r.to_dict() for r in results]}
    if rule is not None:
        data["rule"] = rule.to_dict()
        lines.append(rule.describe())
    if timings:
        data["timings_ms"] = _timings(fid)
        lines.append(_timing_text(fid))
    _emit(ctx, data, "\n".join(lines))
    if rule is not None and rule.warning:
        click.echo(_text(f"faceid: warning: {rule.warning}"), err=True)
    sys.exit(EXIT_OK if any(r.name != "unknown" for r in results) else EXIT_NO)


@main.command("list")
@common
def list_people():
    """List enrolled people and their photo counts."""
    ctx = click.get_current_context()
    people = ctx.obj["fid"].people()
    text = "\n".join(f"{n}\t{c}" for n, c in people.items()) or "the gallery is empty"
    _emit(ctx, {"people": people, "count": len(people)}, text)


@main.command()
@click.argument("name")
@common
def remove(name):
    """Remove a person and all their photos from the gallery."""
    ctx = click.get_current_context()
    n = ctx.obj["fid"].remove(name)
    _emit(ctx, {"removed": name, "embeddings": n}, f"removed {name} ({n} embedding(s))")


@main.command()
@click.argument("old")
@click.argument("new")
@click.option(
    "--merge", is_flag=True, help="If NEW is already enrolled, file OLD's photos under NEW too."
)
@common
def rename(old, new, merge):
    """Rename a person; onto an enrolled name only with --merge (there is no undo)."""
    ctx = click.get_current_context()
    n = ctx.obj["fid"].rename(old, new, merge=merge)
    _emit(ctx, {"renamed": old, "to": new, "embeddings": n}, f"renamed {old} to {new} ({n})")


@main.command()
@click.argument("photos", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--from",
    "from_list",
    type=click.Path(path_type=Path),
    help="A text file with one photo path per line.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write an .npy array.")
@click.option(
    "--on-no-face",
    type=click.Choice(["error", "skip", "full-image"]),
    default="error",
    show_default=True,
    help="What to do with photos without a usable face.",
)
@click.option("--largest", is_flag=True, help="Use the largest face when a photo has several.")
@click.option("--workers", default=0, help="Detection processes [default: all cores].")
@common
def embed(photos, from_list, output, on_no_face, largest, workers):
    """Write 128-d embeddings of photos, in input order (one row per embedded photo)."""
    ctx = click.get_current_context()
    fid = ctx.obj["fid"]
    paths = list(photos)
    if from_list:
        try:  # bytes: file names need not be UTF-8 (os.fsdecode keeps them exact)
            lines = from_list.read_bytes().splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read --from {from_list}: {exc.strerror}") from None
        paths += [Path(os.fsdecode(s.strip())) for s in lines if s.strip()]
    if not paths:
        raise UsageError("no photos given: pass PHOTOS or --from LIST.txt")
    if output is None and not ctx.obj["json"]:
        raise UsageError("choose an output: -o out.npy or --json")
    emb, rows = fid.embed_many(
        paths, on_no_face=on_no_face, largest=largest, workers=workers, progress=_progress(ctx)
    )
    r = 0
    for row in rows:
        row["row"] = None if row["status"] in ("skipped", "error") else r
        r += row["row"] is not None
    data = {
        "count": int(len(emb)),
        "dim": int(emb.shape[1]),
        "files": rows,
        "model_id": fid.encoder.model_id,
    }
    if output is not None:
        import numpy as np

        try:  # a file object, so that np.save does not append ".npy" to the name given
            with open(output, "wb") as fh:
                np.save(fh, emb)
        except OSError as exc:
            raise FaceIDError(f"cannot write {output}: {exc.strerror or exc}") from None
        data["output"] = str(output)
    else:
        data["embeddings"] = emb.round(6).tolist()
    lines = [f"wrote {len(emb)} embedding(s) to {output}"] if output else []
    lines += [
        f"{row['status']}: {_flags(row['error'] or row['source'])}"
        for row in rows
        if row["status"] != "ok"
    ]
    _emit(ctx, data, "\n".join(lines))


@main.command()
@click.option("--repair", is_flag=True, help="Fix what can be fixed without losing people.")
@click.option("--fpir", type=float, default=None, metavar="P", help=_FPIR_HELP)
@common
def doctor(repair, fpir):
    """Check the gallery's files agree with each other and with the model.

    Also says whether the gallery is small enough for the model to keep --fpir of strangers
    from being given a name while still naming most enrolled people.
    """
    ctx = click.get_current_context()
    fid = ctx.obj["fid"]
    r = fid.doctor(repair=repair, fpir=fpir)
    lines = [f"problem: {p}" for p in r.problems] + [f"repaired: {a}" for a in r.repaired]
    lines.append(f"{r.gallery}: {'healthy' if r.healthy else 'needs repair'}")
    if r.note:
        lines.append(r.note)
    if r.rule is not None:
        lines.append(f"identify uses {r.rule.describe()}")
        if r.rule.fnir is not None:
            lines[-1] += f" (estimated share of enrolled people missed: {r.rule.fnir:.0%})"
    _emit(ctx, r.to_dict(), "\n".join(lines))
    if r.rule is not None and r.rule.warning:
        click.echo(_text(f"faceid: warning: {r.rule.warning}"), err=True)
    sys.exit(EXIT_OK if r.healthy else EXIT_NO)


@main.group("gallery")
def gallery_group() -> None:
    """Whole-gallery operations: copying between a folder and PostgreSQL."""


@gallery_group.command("copy")
@click.argument("source")
@click.argument("destination")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@guarded
def gallery_copy(source, destination, as_json):
    """Copy SOURCE's embeddings into DESTINATION (folders or postgresql:// URLs), without
    re-encoding photos; refused when they belong to different models."""
    ctx = click.get_current_context()
    ctx.obj = {"json": as_json}
    from faceid.gallery.transfer import copy_gallery

    done = copy_gallery(source, destination)
    _emit(
        ctx,
        done,
        f"copied {done['faces']} embedding(s) of {done['people']} people from {done['source']} "
        f"to {done['destination']}",
    )


# --- evaluation and calibration ------------------------------------------------


def _eval_options(fn):
    """Options the evaluation commands share: how photos are embedded and cached."""
    options = [
        click.option(
            "--pick",
            type=click.Choice(["center", "largest"]),
            default="center",
            show_default=True,
            help="Which face of a photo with several (LFW photos are centred on their subject).",
        ),
        click.option("--workers", default=0, help="Detection processes [default: all cores]."),
        click.option(
            "--no-cache",
            is_flag=True,
            help="Embed every photo afresh [cache: $FACEID_CACHE_DIR or ~/.cache/faceid].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _pairs_options(fn):
    """--pairs and --root: a labelled LFW-format pairs file and its photos."""
    fn = click.option(
        "--root",
        required=True,
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="The folder holding the photos (LFW: the person folders).",
    )(fn)
    return click.option(
        "--pairs",
        "pairs_file",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A pairs file: LFW's (pairs.txt, pairsDevTrain.txt) or plain lines "
        "'path_a<TAB>path_b<TAB>1' (same person) or '...<TAB>0' (different), paths under --root.",
    )(fn)


def _source(report: dict) -> str:
    """Where the threshold in force came from, in this command's words."""
    return "--threshold" if report["threshold"]["source"] == "override" else "model"


def _pct(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _wall_text(report: dict) -> str:
    wall = report["timings"]["wall_s"]
    return "time (s): " + ", ".join(f"{k} {v:.2f}" for k, v in wall.items())


@main.group()
def evaluate() -> None:
    """Measure the model on labelled photos: verification pairs or identification."""


@evaluate.command("pairs")
@_pairs_options
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder [default: reports/<pairs file stem>].",
)
@_eval_options
@common
def evaluate_pairs_cmd(pairs_file, root, out, pick, workers, no_cache):
    """Verification accuracy (10-fold), ROC AUC, EER and TAR@FAR on a pairs file."""
    from faceid.evaluate.run import evaluate_pairs

    ctx = click.get_current_context()
    r = evaluate_pairs(
        ctx.obj["fid"],
        pairs_file,
        root,
        out,
        pick=pick,
        workers=workers,
        progress=_progress(ctx),
        use_cache=not no_cache,
    )
    c, k, st = r["counts"], r["kfold_accuracy"], r["stored_threshold"]
    tars = ", ".join(f"TAR@FAR{f} {_pct(v['tar'])}" for f, v in r["tar_at_far"].items())
    lines = [
        f"{pairs_file.name}: {c['pairs']} pairs ({c['genuine']} genuine, {c['impostor']} "
        f"impostor), {r['images']['distinct']} photos, {r['images']['fallbacks']} without a "
        f"detected face (full-image fallback), model {r['model']['id']}",
        f"accuracy ({c['folds']}-fold): {k['mean']:.4f} ± {k['std']:.4f}",
        f"at threshold {st['threshold']:.4f} ({_source(r)}): accuracy "
        f"{st['accuracy']:.4f}, TAR {st['tar']:.4f}, FAR {st['far']:.4f}",
        f"ROC AUC {_pct(r['roc_auc'])}, EER {_pct(r['eer']['rate'])}, {tars} "
        f"(FAR resolution {r['far_resolution']:.2g})",
        _wall_text(r) + f" (cache: {r['cache']['hits']} hit(s), {r['cache']['misses']} miss(es))",
        f"wrote {Path(r['out']) / 'report.json'}, "
        + ", ".join(str(Path(r["out"]) / p) for p in r["plots"].values()),
    ]
    _emit(ctx, r, "\n".join(lines))


@evaluate.command("identify")
@click.option(
    "--root",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of per-person folders.",
)
@click.option("--shots", default=1, show_default=True, help="Photos enrolled per person.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder [default: reports/identify-<root folder name>].",
)
@click.option(
    "--limit-people",
    type=int,
    default=None,
    help="Use only the first N people (by name) with more than --shots photos, plus N others.",
)
@click.option(
    "--people",
    "people_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Only these people: an LFW people file such as peopleDevTest.txt.",
)
@click.option(
    "--strangers",
    type=click.Choice(["all", "half"]),
    default="all",
    show_default=True,
    help="People with too few photos to enroll and probe: all probe as strangers, or a "
    "seeded half is enrolled as distractors instead.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the distractor draw.")
@click.option("--fpir", type=float, default=None, metavar="P", help=_FPIR_HELP)
@_eval_options
@common
def evaluate_identify_cmd(
    root, shots, out, people_file, limit_people, strangers, seed, fpir, pick, workers, no_cache
):
    """Closed-set rank-1/rank-5 (CMC), open-set DIR@FAR and FNIR@FPIR by distance and by
    the ratio to the next person (DET curves), and the outcome of identify's default
    decision rule, on per-person folders."""
    from faceid.evaluate.run import evaluate_identify

    ctx = click.get_current_context()
    r = evaluate_identify(
        ctx.obj["fid"],
        root,
        out,
        shots=shots,
        people_file=people_file,
        limit_people=limit_people,
        seed=seed,
        strangers=strangers,
        fpir=fpir,
        pick=pick,
        workers=workers,
        progress=_progress(ctx),
        use_cache=not no_cache,
    )
    c, st = r["counts"], r["stored_threshold"]
    lines = [
        f"{root}: gallery {c['gallery_images']} photo(s) of {c['gallery_identities']} people, "
        f"{c['genuine_probes']} genuine and {c['impostor_probes']} impostor probe(s), "
        f"{r['images']['fallbacks']} without a detected face (full-image fallback)",
        f"closed set: rank-1 {r['rank1']:.4f}, rank-5 {r['rank5']:.4f}",
    ]
    for label, figures in (("distance", r), ("ratio to the next person", r["ratio"])):
        if figures and figures["dir_at_far"]:
            lines.append(
                f"open set, by {label}: "
                + ", ".join(
                    f"DIR@FAR{f} {_pct(v['dir'])}" for f, v in figures["dir_at_far"].items()
                )
                + ", "
                + ", ".join(
                    f"FNIR@FPIR{f} {_pct(v['fnir'])}" for f, v in figures["fnir_at_fpir"].items()
                )
            )
    dr = r["default_rule"]
    bound = "ratio" if dr["rule"].get("score") == "ratio" else "threshold"
    lines += [
        f"at the default rule ({dr['rule']['reason']}, {bound} {dr['threshold']:.4f}): genuine "
        f"named right {_pct(dr['genuine_identified'])}, strangers given a name "
        f"{_pct(dr['strangers_named'])}",
        f"at threshold {st['threshold']:.4f} ({_source(r)}): genuine identified "
        f"{_pct(st['genuine_identified'])}, impostors rejected {_pct(st['impostor_rejected'])}",
        _wall_text(r) + f" (cache: {r['cache']['hits']} hit(s), {r['cache']['misses']} miss(es))",
        f"wrote {Path(r['out']) / 'report.json'}, "
        + ", ".join(str(Path(r["out"]) / p) for p in r["plots"].values()),
    ]
    _emit(ctx, r, "\n".join(lines))


@main.command()
@_pairs_options
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The new checkpoint file (never the current one unless --force).",
)
@click.option(
    "--target-far",
    type=float,
    default=None,
    help="Largest threshold whose false-accept rate is <= F [default: maximum accuracy].",
)
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@_eval_options
@common
def calibrate(pairs_file, root, output, target_far, force, pick, workers, no_cache):
    """Choose the distance threshold on labelled pairs; write it into a new checkpoint."""
    from faceid.evaluate.run import calibrate as run_calibrate

    ctx = click.get_current_context()
    fid = ctx.obj["fid"]
    if fid.threshold_overridden:
        raise UsageError("calibrate chooses the threshold: --threshold does not apply")
    r = run_calibrate(
        fid,
        pairs_file,
        root,
        output,
        target_far=target_far,
        force=force,
        pick=pick,
        workers=workers,
        progress=_progress(ctx),
        use_cache=not no_cache,
    )
    how = "maximum accuracy" if r["target_far"] is None else f"FAR <= {r['target_far']:g}"
    lines = [
        f"threshold {r['threshold']:.4f} (was {r['previous_threshold']:.4f}), chosen for {how} "
        f"on {r['counts']['pairs']} pairs: accuracy {r['accuracy']:.4f}, TAR {_pct(r['tar'])}, "
        f"FAR {_pct(r['far'])}",
        f"wrote {r['output']} (model id {r['model_id']} unchanged: existing galleries still work)",
    ]
    for w in r["warnings"]:
        click.echo(f"faceid: warning: {w}", err=True)
    _emit(ctx, r, "\n".join(lines))


# --- the service ------------------------------------------------------------------


def _server():
    """faceid.server, or a usage error saying how to install it."""
    try:
        import faceid.server as server
    except ImportError as exc:
        raise UsageError(
            f"faceid serve needs the serve extra ({exc.name} is missing): "
            "pip install 'faceid[serve]'"
        ) from None
    return server


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Server processes, each with its own copy of the model.",
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(min=1),
    help="Face-work threads per process [default: CPU cores].",
)
@click.option(
    "--queue",
    default=16,
    show_default=True,
    type=click.IntRange(min=0),
    help="Requests that may wait for a thread; beyond that the service answers 429.",
)
@click.option(
    "--max-body-mb",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Largest request body accepted (413 beyond).",
)
@click.option(
    "--keys",
    "keys_path",
    type=click.Path(path_type=Path),
    default=None,
    help="API keys file [default: $FACEID_KEYS or ~/.config/faceid/keys.json].",
)
@click.option(
    "--cors-origin",
    multiple=True,
    help="Allow browser pages from this origin to call the API (repeatable; off by default).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
@_model_options
@guarded
def serve(
    host,
    port,
    workers,
    threads,
    queue,
    max_body_mb,
    keys_path,
    cors_origin,
    log_level,
    gallery,
    threshold,
    model,
    device,
):
    """Serve the API (/v1/...), its docs (/docs) and a web page (/) over HTTP.

    Without API keys (`faceid keys add`) the service only listens on loopback.
    """
    from faceid.api import check_threshold

    server = _server()
    check_threshold(threshold)
    config = server.ServerConfig(
        gallery=None if gallery is None else str(gallery),
        model=None if model is None else str(model),
        threshold=threshold,
        device=device,
        host=host,
        queue=queue,
        max_body=int(max_body_mb * 1_000_000),
        cors_origins=list(cors_origin),
    )
    if keys_path is not None:
        config.keys = str(keys_path)
    if threads is not None:
        config.threads = threads
    server.serve(config, port=port, workers=workers, log_level=log_level)


@main.group()
def keys() -> None:
    """API keys of `faceid serve`: stored hashed; shown once, when added."""


def _keys_options(fn):
    fn = click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")(fn)
    return click.option(
        "--keys",
        "keys_path",
        type=click.Path(path_type=Path),
        default=None,
        help="API keys file [default: $FACEID_KEYS or ~/.config/faceid/keys.json].",
    )(fn)


def _key_store(keys_path):
    from faceid.server.keys import KeyStore, default_keys_path

    ctx = click.get_current_context()
    ctx.obj = {"json": ctx.params.get("as_json", False)}
    return KeyStore(keys_path or default_keys_path())


@keys.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["read", "write"]), required=True)
@_keys_options
@guarded
def keys_add(name, role, keys_path, as_json):
    """Create a key NAME with a role (read: verify/identify/embed/list; write: also enroll,
    rename, remove) and print it: it is stored hashed and cannot be shown again."""
    store = _key_store(keys_path)
    key = store.add(name, role)
    _emit(
        click.get_current_context(),
        {"name": name, "role": role, "key": key, "file": str(store.path)},
        f"{key}\n(key {name!r}, role {role}: send it as the X-API-Key header; it is stored "
        f"hashed in {store.path} and cannot be shown again)",
    )


@keys.command("list")
@_keys_options
@guarded
def keys_list(keys_path, as_json):
    """List keys: names, roles and creation times (never the keys)."""
    store = _key_store(keys_path)
    rows = [{"name": k.name, "role": k.role, "created": k.created} for k in store.keys()]
    text = "\n".join(f"{r['name']}\t{r['role']}\t{r['created']}" for r in rows)
    _emit(click.get_current_context(), {"keys": rows}, text or f"no keys in {store.path}")


@keys.command("remove")
@click.argument("name")
@_keys_options
@guarded
def keys_remove(name, keys_path, as_json):
    """Revoke a key: the service refuses it from its next request on."""
    store = _key_store(keys_path)
    store.remove(name)
    _emit(click.get_current_context(), {"removed": name}, f"removed key {name!r}")


if __name__ == "__main__":
    main()
