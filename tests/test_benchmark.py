"""scripts/benchmark.py runs end to end and reports every number it promises.

A correctness test of the script on tiny sizes and an untrained model: it asserts the shape of
the report, never a speed (timings on a shared CI machine mean nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark.py"
STAGES = {"load", "detect", "align", "embed", "search"}
PHOTOS = 10


@pytest.fixture(scope="module")
def quick_run(
    lfw: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict]:
    """One --quick run (about 1 minute with the serve and cold sections on an idle machine, far
    longer on a busy one): its markdown and its JSON."""
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["FACEID_CACHE_DIR"] = str(tmp / "cache")  # never touch the user's embedding cache
    args = [sys.executable, str(SCRIPT), "--quick", "--model", str(tiny_model), "--lfw", str(lfw)]
    args += ["--photos", str(PHOTOS), "--sizes", "1000", "--json-out", str(out)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_markdown_has_every_section_and_says_what_it_measured(quick_run) -> None:
    text, _ = quick_run
    for heading in (
        "# faceid benchmark",
        "## Encoder alone",
        "## Per-photo latency",
        "## Enroll throughput",
        "## Service (`faceid serve`",
    ):
        assert heading in text
    assert "## Search" in text and "## Targets" in text
    assert "dlib face_recognition pipeline (same calls)" in text
    assert "synthetic faces" in text and "--quick" in text
    assert "| faces | index |" in text and "| pipeline |" in text


def test_json_encoder_row_per_device_present(quick_run) -> None:
    import torch

    _, data = quick_run
    rows = data["encoder"]
    expected = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    assert [r["device"] for r in rows] == expected
    for r in rows:
        assert r["ms_batch_1"] > 0 and r["images_per_s"] > 0 and r["batch_size"] >= 1
    assert rows[0]["vs_cpu"] == 1.0
    assert data["machine"]["faiss_gpus"] == 0 or data["machine"]["cuda"]


def test_encoder_section_needs_no_photos(tiny_model: Path, tmp_path: Path) -> None:
    """So it runs on a GPU machine that has torch but neither LFW, dlib nor faiss."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    args = [sys.executable, str(SCRIPT), "--quick", "--sections", "encoder"]
    args += ["--model", str(tiny_model), "--lfw", str(tmp_path / "no-lfw-here")]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Encoder alone" in proc.stdout and "## Search" not in proc.stdout


def test_json_latency_and_cold_start(quick_run) -> None:
    _, data = quick_run
    assert data["quick"] is True and data["machine"]["cores"] >= 1
    lat = data["latency"]
    assert set(lat["median_ms"]) == STAGES
    assert lat["measured"] >= 1 and all(v >= 0 for v in lat["median_ms"].values())
    assert lat["median_total_ms"] >= sum(lat["median_ms"].values()) * 0.5
    assert {"load_model", "load_detector", "load_gallery"} <= set(lat["one_off_ms"])
    cold = data["cold_start"]
    assert cold["verify_ms"] > 0 and cold["help_ms"] > 0
    assert {"load", "detect", "align", "embed"} <= set(cold["verify_stages_ms"])


def test_json_cold_start_rows_against_face_recognition(quick_run) -> None:
    _, data = quick_run
    cold = data["cold"]
    assert [r["key"] for r in cold["rows"]] == ["lfw", "mp2"]
    for r in cold["rows"]:
        assert r["faceid"]["s"] > 0
        assert {"load", "detect", "align", "embed"} <= set(r["faceid"]["stages_ms"])
        if Path("/usr/bin/time").exists():
            assert 0 < r["faceid"]["peak_mb"] < 5000
        if cold["face_recognition"] and r["key"] == "lfw":  # --quick: LFW only
            assert r["face_recognition"]["s"] > 0 and r["ratio"] > 0
    assert "## Cold start" in quick_run[0]


def test_json_enroll_compares_three_pipelines_on_the_same_photos(quick_run) -> None:
    _, data = quick_run
    rows = {r["key"]: r for r in data["enroll"]}
    assert set(rows) == {"faceid_parallel", "faceid_serial", "dlib_face_recognition"}
    for r in rows.values():
        assert r["photos"] == PHOTOS
        assert r["enrolled"] + r["failed"] == PHOTOS
        assert r["seconds"] > 0 and r["images_per_s"] > 0
    assert rows["faceid_serial"]["speedup_vs_serial"] == 1.0
    # The two faceid pipelines run the same stages on the same photos: same outcome.
    assert rows["faceid_parallel"]["enrolled"] == rows["faceid_serial"]["enrolled"]
    assert {"detect", "embed", "write"} <= set(rows["faceid_parallel"]["stage_sum_s"])


def test_json_search_rows_for_exact_and_approximate_indexes(quick_run) -> None:
    _, data = quick_run
    rows = data["search"]
    assert [(r["faces"], r["index"]) for r in rows] == [(1000, "Flat"), (1000, "HNSW32")]
    for r in rows:
        assert r["bytes_per_face"] > 0 and r["ms_per_query"] > 0 and r["build_s"] >= 0
        assert 0.0 <= r["recall_at_1"] <= 1.0
    assert rows[0]["recall_at_1"] == 1.0 and rows[1]["params"].startswith("efSearch=")
    info = data["search_info"]
    assert info["queries"] >= 1 and 0 < info["real_faces"] < 1000 and info["noise"] > 0
    assert {r["efSearch"] for r in data["ef_sweep"]} == {32, 64, 128, 256}
    kinds = [t["target"].split()[0] for t in data["targets"]]
    assert kinds[0] == "enroll" and "search" not in kinds  # no 1M search row here
    assert "service" in kinds and set(kinds[1:]) <= {"cold", "service"}


def test_json_serve_section_reports_throughput_percentiles_and_overhead(quick_run) -> None:
    _, data = quick_run
    s = data["serve"]
    assert s["clients"] == 8 and s["errors"] == {}
    assert s["concurrent"]["requests"] == 8 * s["requests_per_client"]
    c = s["concurrent"]
    assert c["req_per_s"] > 0 and 0 < c["p50_ms"] <= c["p95_ms"] <= c["p99_ms"]
    one = s["one_client"]
    assert one["http_ms"] > 0 and one["in_process_ms"] > 0
    assert abs(one["overhead"] - (one["http_ms"] / one["in_process_ms"] - 1)) < 1e-3
