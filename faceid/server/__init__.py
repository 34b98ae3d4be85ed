"""`faceid serve`: the FaceID API over HTTP, with a web page at `/`.

Needs the `serve` extra (FastAPI, uvicorn, python-multipart); importing this package imports
them, so the CLI imports it only when serving.
"""

from __future__ import annotations

import sys

from faceid.errors import UsageError
from faceid.server.app import CONFIG_ENV, ServerConfig, create_app, load_faceid

__all__ = ["ServerConfig", "create_app", "serve"]


def serve(config: ServerConfig, *, port: int = 8000, workers: int = 1, log_level: str = "info"):
    """Check the configuration, load the model, and serve until interrupted.

    Without any API key the service refuses to listen beyond loopback, and says so.
    """
    import os

    import uvicorn

    from faceid.server.keys import KeyStore

    keys = KeyStore(config.keys)
    if not keys:
        if not config.loopback:
            raise UsageError(
                f"no API keys in {config.keys}: refusing to listen on {config.host}; add one "
                "with `faceid keys add NAME --role write`, or serve on 127.0.0.1"
            )
        print(
            f"faceid: no API keys configured ({config.keys}): serving without authentication, "
            f"on loopback ({config.host}) only",
            file=sys.stderr,
            flush=True,
        )
    fid = load_faceid(config)  # a bad model or gallery stops here with its own message
    common = dict(
        host=config.host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    if workers > 1:
        os.environ[CONFIG_ENV] = config.to_env()
        uvicorn.run("faceid.server.app:app_from_env", factory=True, workers=workers, **common)
    else:
        uvicorn.run(create_app(config, fid), **common)
