"""The /v1 endpoints: parse the form, call the FaceID API in the work pool, serialise.

Photos arrive as multipart file fields and go to the API as file objects, so they are decoded
by the same guarded loader as the CLI's files (format whitelist, PNG CRCs, decompression-bomb
check, reduced decoding of large JPEGs for detection). Anything
CPU-bound (decoding, detection, the encoder, gallery writes) runs in the bounded pool, which
answers 429 when full. Boxes are [left, top, right, bottom] in pixels of the upright photo.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from faceid.errors import BadName, FaceIDError, NoGallery
from faceid.server.app import error_body, error_code, require

router = APIRouter(prefix="/v1")
READ = [Depends(require("read"))]
WRITE = [Depends(require("write"))]

_ANONYMOUS = re.compile(r"<(?:array|\d+ bytes)>")


def _named(exc: FaceIDError, name: str) -> FaceIDError:
    """The same error, naming the upload instead of '<array>' or '<123 bytes>'."""
    return type(exc)(_ANONYMOUS.sub(name, str(exc)))


async def _read(upload: UploadFile, field: str) -> tuple[str, io.BytesIO]:
    """An upload as the API takes it (a binary file object named by its file name, which the
    gallery records as the source), and a label for messages."""
    label = f"{field} {upload.filename!r}" if upload.filename else field
    photo = io.BytesIO(await upload.read())
    photo.name = upload.filename or field
    return label, photo


async def _run(request: Request, fn: Callable[[], dict], route: str) -> dict:
    """Run fn in the work pool; add its queue and work times to the response."""
    result, queued, worked = await request.app.state.pool.run(fn)
    request.app.state.metrics.work.labels(route).observe(worked)
    result["timings_ms"] = {"queue": round(queued * 1000, 2), "work": round(worked * 1000, 2)}
    return result


def _fid(request: Request) -> Any:
    return request.app.state.fid


def _people(fid: Any) -> dict[str, int]:
    """The service's own gallery before its first enrollment is simply empty (the CLI, given
    a path by hand, says there is no gallery there instead)."""
    try:
        return fid.people()
    except NoGallery:
        return {}


Photo = Annotated[UploadFile, File(description="A photo (JPEG, PNG, BMP, WebP, GIF or TIFF).")]
Largest = Annotated[bool, Form(description="Use the largest face when there are several.")]


@router.post("/enroll", dependencies=WRITE, summary="Add photos of one person")
async def enroll(
    request: Request,
    name: Annotated[str, Form(description="The person's name.")],
    photo: Annotated[list[UploadFile], File(description="One or more photos of that person.")],
    largest: Largest = False,
    allow_duplicates: Annotated[
        bool,
        Form(
            description="Enroll a face already enrolled, or one that identify would already "
            "name as someone else (refused by default, as code `duplicate`)."
        ),
    ] = False,
) -> Any:
    """Each photo that has one face is enrolled under `name` (one gallery write per photo,
    under the gallery's lock, so the CLI may write at the same time). Photos that fail are
    listed in `failed`; when none is enrolled the answer is an error."""
    uploads = [await _read(p, "photo") for p in photo]
    fid = _fid(request)

    def work() -> dict:
        enrolled, failed = [], []
        for label, data in uploads:
            try:
                emb_id = fid.enroll(data, name, largest=largest, allow_duplicates=allow_duplicates)
            except FaceIDError as exc:
                # One photo, or a bad name: the request's own error, with its own status.
                if len(uploads) == 1 or isinstance(exc, BadName):
                    raise _named(exc, label) from None
                exc = _named(exc, label)
                failed.append({"photo": label, **error_body(error_code(exc), str(exc))})
                continue
            enrolled.append({"name": name, "photo": label, "id": int(emb_id)})
        return {"enrolled": enrolled, "failed": failed}

    result = await _run(request, work, "/v1/enroll")
    if not result["enrolled"]:
        first = result["failed"][0]["error"]["message"]
        body = error_body("nothing_enrolled", f"no photo was enrolled: {first}")
        return JSONResponse(body | {"failed": result["failed"]}, 422)
    return result


@router.post("/verify", dependencies=READ, summary="Are two photos the same person?")
async def verify(
    request: Request, photo_a: Photo, photo_b: Photo, largest: Largest = False
) -> dict:
    """`same` when the squared distance between the two faces is within `threshold`."""
    (la, a), (lb, b) = await _read(photo_a, "photo_a"), await _read(photo_b, "photo_b")
    fid = _fid(request)

    def work() -> dict:
        try:
            return fid.verify(a, b, largest=largest).to_dict()
        except FaceIDError as exc:
            raise _named(exc, f"{la} or {lb}") from None

    return await _run(request, work, "/v1/verify")


@router.post("/identify", dependencies=READ, summary="Who is in this photo?")
async def identify(
    request: Request,
    photo: Photo,
    top_k: Annotated[int, Form(ge=1, le=100, description="How many nearest people.")] = 1,
    all_faces: Annotated[bool, Form(description="Report every face, with its box.")] = False,
    largest: Largest = False,
    fpir: Annotated[
        float | None,
        Form(
            gt=0,
            lt=1,
            description="Target share of strangers given a name, for this gallery's size: "
            "chooses the threshold (models with an open-set calibration).",
        ),
    ] = None,
) -> dict:
    """Each face's best match the identification rule accepts, or `unknown`; `matches`
    lists the `top_k` nearest people with their distances; `threshold` is the bound used,
    on the distance or (`rule.score` "ratio") on `ratio`, the closest over the next person's
    distance, and `rule` says how it was chosen (by default for a 1 % FPIR at the gallery's
    size)."""
    label, data = await _read(photo, "photo")
    fid = _fid(request)

    def work() -> dict:
        try:
            faces = fid.identify(data, top_k=top_k, all_faces=all_faces, largest=largest, fpir=fpir)
        except FaceIDError as exc:
            raise _named(exc, label) from None
        return {"faces": [f.to_dict() for f in faces]}

    return await _run(request, work, "/v1/identify")


@router.post("/embed", dependencies=READ, summary="The 128-d embedding of a face")
async def embed(request: Request, photo: Photo, largest: Largest = False) -> dict:
    """A unit vector; squared L2 between two of them is the distance verify uses."""
    label, data = await _read(photo, "photo")
    fid = _fid(request)

    def work() -> dict:
        try:
            vector = fid.embed(data, largest=largest)
        except FaceIDError as exc:
            raise _named(exc, label) from None
        return {
            "embedding": [round(float(v), 6) for v in vector],
            "dim": int(vector.shape[0]),
            "model_id": fid.encoder.model_id,
        }

    return await _run(request, work, "/v1/embed")


Name = Annotated[str, Path(description="The person's name (URL-encoded).")]


@router.get("/people", dependencies=READ, summary="Enrolled people and their photo counts")
def people(request: Request) -> dict:
    found = _people(_fid(request))
    return {"people": found, "count": len(found)}


@router.delete("/people/{name:path}", dependencies=WRITE, summary="Remove a person")
def remove(request: Request, name: Name) -> dict:
    return {"removed": name, "embeddings": _fid(request).remove(name)}


class Rename(BaseModel):
    name: str = Field(description="The new name.")
    merge: bool = Field(
        default=False,
        description="Onto a name already enrolled: file both people's photos under it "
        "(without it, that is refused: there is no undo).",
    )


@router.patch("/people/{name:path}", dependencies=WRITE, summary="Rename a person")
def rename(request: Request, name: Name, body: Rename) -> dict:
    n = _fid(request).rename(name, body.name, merge=body.merge)
    return {"renamed": name, "to": body.name.strip(), "embeddings": n}


@router.get("/health", summary="Model, gallery size, uptime")
def health(request: Request) -> dict:
    state = request.app.state
    fid = state.fid
    found = _people(fid)
    return {
        "status": "ok",
        "version": request.app.version,
        "model_id": fid.encoder.model_id,
        "people": len(found),
        "faces": sum(found.values()),
        "uptime_s": round(time.time() - state.started, 1),
        "threads": state.pool.threads,
        "queue_capacity": state.pool.capacity,
        "in_progress": state.pool.pending,
        "auth": "api keys" if state.keys else "none (loopback only)",
    }


@router.get("/metrics", dependencies=READ, summary="Prometheus metrics of this worker")
def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    return Response(m.text(), media_type=m.content_type)
