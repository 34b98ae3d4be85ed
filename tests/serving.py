"""A real `faceid serve` process on a loopback port, for the HTTP, browser and load tests.

The server is started exactly as a user starts it (`python -m faceid.cli serve ...`), in its
own process, and the tests talk to it over TCP with httpx or a browser.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from faceid.server.load import die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PEOPLE = EXAMPLES / "people"
PROBES = EXAMPLES / "probes"


def faceid_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the `faceid` command in a fresh process."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "faceid.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


class Server:
    """`faceid serve` on 127.0.0.1:<free port> with its own gallery and keys file."""

    def __init__(self, tmp: Path, *args: str, gallery: Path | None = None) -> None:
        self.tmp = tmp
        self.gallery = gallery or tmp / "gallery"
        self.keys = tmp / "keys.json"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"server-{self.port}.log"
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> Server:
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "faceid.cli", "serve", "--port", str(self.port)]
        cmd += ["--gallery", str(self.gallery), "--keys", str(self.keys), "--device", "cpu"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"faceid serve exited {self.proc.returncode}:\n{self.output}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"faceid serve did not answer within {timeout} s:\n{self.output}")

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        try:
            return httpx.get(self.url + "/v1/health", timeout=10).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def photo(person: str, n: int = 1) -> Path:
    """The n-th enrollment photo of a person of examples/people."""
    return sorted((PEOPLE / person).glob("*.jpg"))[n - 1]


def upload(path: Path, field: str = "photo") -> tuple[str, tuple[str, bytes, str]]:
    return field, (path.name, path.read_bytes(), "image/jpeg")
