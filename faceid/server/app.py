"""The FastAPI application: configuration, errors as JSON, access control, metrics, the page.

The HTTP layer parses requests, calls the `faceid.FaceID` API and serialises what it returns;
the verbs themselves live in the API (routes are in `faceid.server.routes`). One FaceID, and so
one loaded model, serves every request of a worker process.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException

import faceid
from faceid.errors import FaceIDError
from faceid.server.keys import KeyStore, default_keys_path
from faceid.server.limits import DEFAULT_MAX_BODY, BodyLimit, Busy, WorkPool, too_large_message
from faceid.server.metrics import Metrics

log = logging.getLogger("faceid.server")
STATIC = Path(__file__).parent / "static"
CONFIG_ENV = "FACEID_SERVE_CONFIG"


@dataclass
class ServerConfig:
    """Everything `faceid serve` decides; plain values, so it travels to worker processes."""

    gallery: str | None = None
    model: str | None = None
    threshold: float | None = None
    device: str = "auto"
    keys: str = field(default_factory=lambda: str(default_keys_path()))
    host: str = "127.0.0.1"
    threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    queue: int = 16
    max_body: int = DEFAULT_MAX_BODY
    cors_origins: list[str] = field(default_factory=list)

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls) -> ServerConfig:
        return cls(**json.loads(os.environ[CONFIG_ENV]))

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- errors ------------------------------------------------------------------------------------

# The status of each FaceIDError kind, by class name (as its code is); a kind not listed
# takes its nearest listed ancestor's.
STATUS: dict[str, int] = {
    "BadImage": 422,
    "NoFace": 422,
    "ManyFaces": 422,
    "BadName": 422,
    "NotEnrolled": 404,
    "Duplicate": 409,
    "NoGallery": 404,
    "UsageError": 400,
    "GalleryError": 500,
    "ModelError": 500,
    "FaceIDError": 400,
}


class ApiError(Exception):
    """An HTTP-level refusal (auth, busy, not found) in the same JSON shape as FaceIDError."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers


def error_code(exc: FaceIDError) -> str:
    """BadImage -> bad_image: the error's kind, as the CLI's --json names it."""
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", type(exc).__name__).lower().replace("i_d", "id")


def error_body(code: str, message: str, **extra: Any) -> dict:
    return {"error": {"code": code, "message": " ".join(str(message).split())}, **extra}


def _faceid_error(request: Request, exc: FaceIDError) -> JSONResponse:
    status = next(STATUS[c.__name__] for c in type(exc).__mro__ if c.__name__ in STATUS)
    return JSONResponse(error_body(error_code(exc), str(exc)), status_code=status)


def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, str(exc)), exc.status, headers=exc.headers)


def _busy(request: Request, exc: Busy) -> JSONResponse:
    return JSONResponse(error_body("busy", str(exc)), 429, headers={"Retry-After": "1"})


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    if exc.status_code == 413:
        message = too_large_message(request.app.state.config.max_body)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return JSONResponse(error_body(code, message), exc.status_code, headers=exc.headers)


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Missing or malformed fields: 400 naming them; a body that is not a form: 415."""
    ctype = request.headers.get("content-type", "")
    if request.method == "POST" and not ctype.startswith("multipart/form-data"):
        return JSONResponse(
            error_body(
                "unsupported_media_type",
                f"send photos as multipart/form-data, not {ctype or 'an untyped body'}",
            ),
            415,
        )
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {e.get('msg', 'invalid')}")
    return JSONResponse(error_body("bad_request", "; ".join(parts)), 400)


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return JSONResponse(
        error_body("internal", f"internal error ({type(exc).__name__}); see the server log"), 500
    )


# -- access control ----------------------------------------------------------------------------

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key from `faceid keys add`; write endpoints need a write key.",
)


def require(role: str) -> Callable:
    """A dependency that lets a request through when its key may do `role`.

    Without any key configured the service only listens on loopback and lets every request
    through; started on another interface, it refuses everything until a key exists.
    """

    def check(request: Request, key: str | None = Security(api_key_header)) -> None:
        state = request.app.state
        if not state.keys:
            if state.config.loopback:
                return
            raise ApiError(401, "unauthorized", "no API keys are configured on this server")
        got = state.keys.role_of(key)
        if got is None:
            raise ApiError(401, "unauthorized", "a valid X-API-Key header is required")
        if role == "write" and got != "write":
            raise ApiError(403, "forbidden", "this endpoint needs a key with the write role")

    return check


# -- metrics -----------------------------------------------------------------------------------


class MetricsMiddleware:
    """Counts and times every request by its route template (never by raw path)."""

    def __init__(self, app: Any, metrics: Callable[[], Metrics]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            if route.startswith("/static"):
                route = "/static"
            self.metrics().observe(
                scope["method"], route, status["code"], time.perf_counter() - start
            )


# -- the application ---------------------------------------------------------------------------


def create_app(config: ServerConfig | None = None, fid: Any = None) -> FastAPI:
    """The service for `config`; `fid`: an already loaded FaceID to serve (else loaded here)."""
    from faceid.server.routes import router

    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.fid is None:
            app.state.fid = load_faceid(config)
        app.state.started = time.time()
        yield
        app.state.pool.shutdown()

    app = FastAPIOffline(
        title="faceid",
        version=faceid.__version__,
        description=(
            "Face verification and recognition over HTTP. Photos are sent as multipart form "
            "fields; boxes are [left, top, right, bottom] in pixels of the upright photo; "
            "distances are squared L2 between unit embeddings (0 to 4), same person when "
            'distance <= threshold. Errors are JSON: {"error": {"code", "message"}}.'
        ),
        lifespan=lifespan,
        redoc_url=None,
    )
    pool = WorkPool(config.threads, config.queue)
    app.state.config = config
    app.state.fid = fid
    app.state.pool = pool
    app.state.keys = KeyStore(config.keys)
    app.state.started = time.time()
    app.state.metrics = Metrics(lambda: pool.waiting, lambda: pool.pending)

    app.add_exception_handler(FaceIDError, _faceid_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(Busy, _busy)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=config.max_body)
    app.add_middleware(MetricsMiddleware, metrics=lambda: app.state.metrics)
    return app


def load_faceid(config: ServerConfig) -> Any:
    """A FaceID with its model and detector loaded and its gallery checked: the work each
    worker does once, so that no request pays for it and a bad model or gallery stops the
    start with its own message."""
    from faceid.api import FaceID

    fid = FaceID(
        gallery=config.gallery, model=config.model, threshold=config.threshold, device=config.device
    )
    fid.encoder, fid.detector  # noqa: B018  (load now, not on the first request)
    if fid.gallery.exists:
        len(fid.gallery)
    return fid


def app_from_env() -> FastAPI:
    """The factory uvicorn's worker processes call (`faceid serve --workers N`)."""
    return create_app(ServerConfig.from_env())
