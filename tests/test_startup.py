"""Each verb imports only what it uses: no torch for inference (the ONNX model runs it), no
FAISS or matplotlib where no gallery is searched or plot drawn, no model for housekeeping.

Measured with `python -X importtime` by hand; pinned here by the modules a fresh process
has loaded when the verb finishes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HEAVY = ("torch", "faiss", "matplotlib", "onnxruntime", "dlib", "cv2")

PROBE = """
import json, sys
from faceid.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = {HEAVY!r}
print(json.dumps({{"code": code, "loaded": sorted(m for m in heavy if m in sys.modules)}}))
"""


def loaded_after(*args: str, env: dict | None = None) -> tuple[int, list[str]]:
    """Run `faceid ARGS` in a fresh interpreter; the exit code and the heavy modules loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(HEAVY=HEAVY), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=300,
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["code"], out["loaded"]


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gallery = tmp_path_factory.mktemp("startup") / "g"
    code, _ = loaded_after("enroll", str(EXAMPLES / "people"), "--gallery", str(gallery))
    assert code in (0, None)
    return gallery


def test_help_loads_nothing_heavy() -> None:
    assert loaded_after("--help") == (0, [])


@pytest.mark.slow
def test_verify_runs_without_torch_faiss_or_matplotlib() -> None:
    a = EXAMPLES / "people" / "Alvaro_Uribe" / "Alvaro_Uribe_0001.jpg"
    b = EXAMPLES / "probes" / "Alvaro_Uribe_0002.jpg"
    code, loaded = loaded_after("verify", str(a), str(b), "--device", "cpu")
    assert code in (0, None)
    assert loaded == ["cv2", "dlib", "onnxruntime"]


@pytest.mark.slow
def test_identify_adds_faiss_but_not_torch(enrolled: Path) -> None:
    probe = EXAMPLES / "probes" / "Carlos_Moya_0002.jpg"
    code, loaded = loaded_after("identify", str(probe), "--gallery", str(enrolled))
    assert code in (0, None)
    assert "torch" not in loaded and "matplotlib" not in loaded and "faiss" in loaded


@pytest.mark.slow
def test_list_rename_and_remove_load_no_model(enrolled: Path) -> None:
    for args in (
        ["list"],
        ["rename", "Carlos_Moya", "Carlos Moya"],
        ["remove", "Carlos Moya"],
    ):
        code, loaded = loaded_after(*args, "--gallery", str(enrolled))
        assert code in (0, None), args
        assert not {"torch", "onnxruntime", "dlib", "matplotlib"} & set(loaded), args
