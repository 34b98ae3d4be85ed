"""The fast paths stay correct: one-pass flip embedding, encoder thread caps, timings that add
up, enroll's batched writes and worker pool, and the CLI's index options.

Nothing here asserts a duration: speed is measured by scripts/benchmark.py, on purpose, on an
idle machine; these tests only pin down that the shortcuts compute what the slow paths do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from faceid.model.net import FaceNet, NetConfig

from .conftest import FaceIDRun

ROOT = Path(__file__).resolve().parents[1]
CFG = NetConfig(input_size=32, widths=(8, 16), blocks=(1, 1))


@pytest.mark.parametrize("n", [1, 3, 16, 17, 40])
def test_flip_embedding_in_one_pass_equals_two_passes(n: int) -> None:
    torch.manual_seed(0)
    net = FaceNet(CFG).eval()
    x = torch.randn(n, 3, 32, 32)
    with torch.inference_mode():
        reference = F.normalize(net(x) + net(x.flip(3)), dim=1)
        assert torch.allclose(net.embed(x, flip=True), reference, atol=1e-5)


def test_encoder_caps_threads_for_small_batches_and_restores_them(tiny_model: Path) -> None:
    from faceid.model import encoder as enc_mod
    from faceid.model.encoder import Encoder

    enc = Encoder.load(tiny_model, "cpu")
    crops = np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    seen: list[int] = []
    real = enc.net.forward

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return real(x)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        enc.net.forward = spy  # type: ignore[method-assign]
        single = enc.embed(crops[:1])
        assert seen and set(seen) == {1}  # batch 1: one thread
        seen.clear()
        batch = enc.embed(crops)
        assert set(seen) == {2}  # a large batch keeps torch's setting
        seen.clear()
        enc.embed(crops, threads=1)
        assert set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert enc_mod.SMALL_BATCH > 1
    np.testing.assert_allclose(single[0], batch[0], atol=1e-5)


def test_identify_timings_cover_the_loads_and_do_not_double_count(
    tiny_model: Path, photos: dict[str, list[Path]], tmp_path: Path, fast_cpu: None
) -> None:
    from faceid import FaceID

    probe = photos["Amelie_Mauresmo"][0]
    FaceID(gallery=tmp_path / "g", model=tiny_model, device="cpu").enroll(probe, "Tony")
    fid = FaceID(gallery=tmp_path / "g", model=tiny_model, device="cpu")
    start = time.perf_counter()
    [hit] = fid.identify(probe)
    wall = time.perf_counter() - start
    assert hit.name == "Tony"
    stages = dict(fid.timings)
    expected = {"load_model", "load_detector", "load_gallery"}
    expected |= {"load", "detect", "align", "embed", "search"}
    assert expected <= set(stages)
    assert sum(stages.values()) <= wall * 1.001  # stages never nest, so they add up


def test_enroll_many_writes_at_intervals_and_keeps_input_order(
    tiny_model: Path, photos: dict[str, list[Path]], tmp_path: Path, fast_cpu: None
) -> None:
    from faceid import FaceID
    from faceid.gallery import Gallery

    items = [(person, p) for person, files in photos.items() for p in files]
    fid = FaceID(gallery=tmp_path / "g", model=tiny_model, device="cpu")
    fid.encoder.batch_size = 2
    writes: list[int] = []
    real_add = Gallery.add

    def add(self: Gallery, emb: np.ndarray, names: list[str], sources: list[str]) -> list[int]:
        writes.append(len(names))
        return real_add(self, emb, names, sources)

    Gallery.add = add  # type: ignore[method-assign]
    try:
        report = fid.enroll_many(items, workers=1, write_every=2)
    finally:
        Gallery.add = real_add  # type: ignore[method-assign]
    assert len(writes) >= 2 and sum(writes) == len(items)  # an early write, then the rest
    assert [r["source"] for r in report.enrolled] == [str(p) for _, p in items]
    assert [r["id"] for r in report.enrolled] == list(range(len(items)))
    assert fid.gallery.people() == {person: 2 for person in photos}


def test_enroll_many_workers_start_after_the_process_used_opencv(
    tiny_model: Path, lfw: Path, tmp_path: Path
) -> None:
    """Forked workers once hung for ever in cv2.setNumThreads when the parent had used
    OpenCV's thread pool with torch loaded; workers are now spawned fresh."""
    photos = sorted((lfw / "George_W_Bush").glob("*.jpg"))[:8]
    script = textwrap.dedent(
        f"""
        import cv2
        import numpy as np
        from faceid import FaceID
        photos = {[str(p) for p in photos]!r}
        cv2.resize(np.zeros((500, 500, 3), np.uint8), (1000, 1000))  # the caller's own OpenCV
        fid = FaceID(gallery={str(tmp_path / "g")!r}, model={str(tiny_model)!r}, device="cpu")
        report = fid.enroll_many([("Bush", p) for p in photos], largest=True, workers=2)
        print(len(report.enrolled) + len(report.failed))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a hang can be ended with its worker processes
    )
    try:
        stdout, stderr = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("enroll_many's detection workers hung after the parent used OpenCV")
    assert proc.returncode == 0, stderr
    assert stdout.strip() == str(len(photos))


# ---------------------------------------------------------------- CLI index options


def test_enroll_index_switch_rebuilds_the_gallery_index_and_says_so(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path, gallery: Path
) -> None:
    folder = tmp_path / "people"
    for person, files in photos.items():
        (folder / person).mkdir(parents=True)
        for p in files:
            (folder / person / p.name).symlink_to(p)
    run = faceid_run("enroll", folder, "--index-switch", "4")
    assert run.code == 0, run
    assert "rebuilt as HNSW32" in run.stdout
    data = json.loads((gallery / "manifest.json").read_text())
    assert data["index_factory"] == "HNSW32" and data["auto_switch"] == 4
    hit = faceid_run("identify", photos["Amelie_Mauresmo"][0], "--json", "--threshold", "4")
    assert hit.code == 0 and hit.json()["faces"][0]["name"] == "Amelie_Mauresmo"
    assert faceid_run("doctor", "--json").json()["healthy"] is True


def test_enroll_index_chooses_a_new_gallerys_index_and_a_new_gallery_records_the_switch(
    faceid_run: FaceIDRun, face: Path, gallery: Path, tmp_path: Path
) -> None:
    from faceid.api import DEFAULT_INDEX_SWITCH

    assert faceid_run("enroll", face, "--name", "Tony", "--index", "HNSW32").code == 0
    data = json.loads((gallery / "manifest.json").read_text())
    assert data["index_factory"] == "HNSW32" and data["auto_switch"] == DEFAULT_INDEX_SWITCH
    other = tmp_path / "flat"
    assert faceid_run("enroll", face, "--name", "Tony", gallery=other).code == 0
    assert json.loads((other / "manifest.json").read_text())["index_factory"] == "Flat"


@pytest.mark.parametrize("args", [("--index", " "), ("--index-switch", "-1")])
def test_bad_index_options_are_usage_errors(
    faceid_run: FaceIDRun, face: Path, gallery: Path, args: tuple[str, str]
) -> None:
    run = faceid_run("enroll", face, "--name", "Tony", *args)
    assert run.code == 2, run
    assert "Traceback" not in run.stdout + run.stderr
    assert not gallery.exists()
