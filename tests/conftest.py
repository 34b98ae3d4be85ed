"""Shared fixtures: LFW photos, a tiny untrained checkpoint and a way to run the `faceid` CLI.

The tiny model's embeddings are meaningless but real (deterministic, unit length), which is all
the CLI tests need: exit codes, JSON shapes and what happens to the gallery. Tests that need
recognition quality belong with the shipped model, not here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"

# Two photos each of three people, from examples/ (so these tests need no LFW download):
# X_0001 is enrolled in examples/people/X/, X_0002 is its probe in examples/probes/.
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PEOPLE = ("Alvaro_Uribe", "Carlos_Moya", "Amelie_Mauresmo")


@pytest.fixture(scope="session")
def lfw() -> Path:
    """The LFW root (read-only), or skip when this machine does not have it."""
    if not LFW.is_dir():
        pytest.skip(f"LFW photos not found at {LFW}")
    return LFW


def lfw_photo(root: Path, person: str, number: int) -> Path:
    path = root / person / f"{person}_{number:04d}.jpg"
    if not path.is_file():
        pytest.skip(f"LFW photo missing: {path}")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained but valid checkpoint (32 px input, two small stages, thresholds 0.8
    for verification and 0.2 for identification)."""
    import torch

    from faceid.model.checkpoint import Checkpoint, save_checkpoint
    from faceid.model.net import FaceNet, NetConfig

    torch.manual_seed(0)
    cfg = NetConfig(input_size=32, widths=(8, 16), blocks=(1, 1))
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    ckpt = Checkpoint(
        config=cfg.to_dict(),
        state_dict=FaceNet(cfg).eval().state_dict(),
        threshold=0.8,
        # Strict, as a real model's is: the untrained net puts different people's example
        # photos 0.36 to 1.4 apart, and enrollment refuses a face identify would already name.
        identify_threshold=0.2,
    )
    return save_checkpoint(ckpt, path)


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """person -> two of their example photos, copied to a scratch folder."""
    root = tmp_path_factory.mktemp("photos")
    out: dict[str, list[Path]] = {}
    for person in PEOPLE:
        sources = (
            EXAMPLES / "people" / person / f"{person}_0001.jpg",
            EXAMPLES / "probes" / f"{person}_0002.jpg",
        )
        out[person] = []
        for number, source in enumerate(sources, 1):
            dest = root / f"{person}_{number:04d}.jpg"
            shutil.copyfile(source, dest)
            out[person].append(dest)
    return out


@pytest.fixture(scope="session")
def face(photos: dict[str, list[Path]]) -> Path:
    """One photo with exactly one face."""
    return photos["Amelie_Mauresmo"][0]


@pytest.fixture(scope="session")
def group_photo(photos: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two different people side by side in one 500x250 photo (HOG finds both)."""
    from PIL import Image

    path = tmp_path_factory.mktemp("group") / "group.jpg"
    canvas = Image.new("RGB", (500, 250))
    for x, src in ((0, photos["Alvaro_Uribe"][0]), (250, photos["Carlos_Moya"][0])):
        with Image.open(src) as im:
            canvas.paste(im.convert("RGB"), (x, 0))
    canvas.save(path, quality=95)
    return path


@pytest.fixture(scope="session")
def no_face_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 200x200 plain grey PNG: a valid image without any face."""
    from PIL import Image

    path = tmp_path_factory.mktemp("noface") / "grey.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(path)
    return path


@dataclass
class Run:
    """What one `faceid` invocation did."""

    args: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def json(self) -> dict:
        """stdout parsed as exactly ONE JSON document (json.loads refuses trailing data)."""
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"stdout is not one JSON document ({exc}):\n{self.stdout}"
            ) from None

    def assert_no_traceback(self) -> None:
        assert "Traceback" not in self.stdout + self.stderr, self

    def __str__(self) -> str:
        return (
            f"faceid {' '.join(self.args)}\n-> exit {self.code}\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )


FaceIDRun = Callable[..., Run]


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    """Where this test's gallery lives (created by the first enroll)."""
    return tmp_path / "gallery"


@pytest.fixture(scope="session")
def _detectors() -> dict[tuple[int, int], object]:
    return {}


@pytest.fixture
def fast_cpu(
    monkeypatch: pytest.MonkeyPatch, _detectors: dict[tuple[int, int], object]
) -> Iterator[None]:
    """Make each in-process CLI run cheap without changing what it computes.

    - One dlib detector per upsample for the whole session: building one costs ~0.2 s and a
      test suite runs the CLI a hundred times. The detector is stateless (it holds a lock).
    - One torch thread: on a busy 2-core machine two intra-op threads make the tiny model's
      forward pass take ~200 ms instead of ~0.2 ms. Restored after the test.
    """
    import torch

    import faceid.detect
    import faceid.pipeline

    real = faceid.detect.DlibHOGDetector

    def shared(upsample: int = 1, max_side: int = faceid.detect.DETECT_SIDE) -> object:
        if (upsample, max_side) not in _detectors:
            _detectors[upsample, max_side] = real(upsample, max_side)
        return _detectors[upsample, max_side]

    monkeypatch.setattr(faceid.detect, "DlibHOGDetector", shared)
    monkeypatch.setattr(faceid.pipeline, "DlibHOGDetector", shared, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def faceid_run(tiny_model: Path, gallery: Path, fast_cpu: None) -> FaceIDRun:
    """run(*args, model=..., gallery=...) invokes `faceid.cli.main` in-process.

    `--model` (the tiny model) and `--gallery` (this test's) are appended after the subcommand's
    own arguments unless given as None. Exceptions escaping main() are not swallowed: the test
    fails with the traceback, because users must never see one.
    """
    from click.testing import CliRunner

    from faceid.cli import main

    runner = CliRunner()

    def run(*args: object, model: object = tiny_model, gallery: object = gallery) -> Run:
        argv = [a if isinstance(a, str) else str(a) for a in args]
        if model is not None:
            argv += ["--model", str(model)]
        if gallery is not None:
            argv += ["--gallery", str(gallery)]
        result = runner.invoke(
            main,
            argv,
            catch_exceptions=False,
            env={"FACEID_DEBUG": None, "FACEID_GALLERY": None},
        )
        return Run(argv, result.exit_code, result.stdout, result.stderr)

    return run


def manifest_bytes(gallery: Path) -> bytes | None:
    """The gallery's commit point, to prove a failed command changed nothing."""
    path = gallery / "manifest.json"
    return path.read_bytes() if path.exists() else None


# ------------------------------------------------------------------------------ PostgreSQL


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """A real PostgreSQL server with pgvector on a loopback port, for the whole session.

    Not skipped when it cannot start: the PostgreSQL backend's tests must run wherever the
    suite runs (CI included), so a server that does not come up fails them.
    """
    from faceid.gallery.local_postgres import scratch_server

    with scratch_server() as server:
        yield server


_databases = iter(range(1, 10**9))


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh database (pgvector enabled, no faceid tables) on the session's server."""
    return pg_server.create_database(f"faceid_test_{next(_databases)}")
