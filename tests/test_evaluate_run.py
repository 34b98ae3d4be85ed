"""evaluate pairs / evaluate identify / calibrate end to end, on real LFW photos.

The model is a tiny untrained network, so the figures are meaningless: these tests
check the structure and internal consistency of what is written, the embedding
cache, the fallback count and that calibration never overwrites a checkpoint
silently. Detection runs for real (about 60 photos, one worker process).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
UPSIDE_DOWN = ("Abdullah_Gul", 13)  # the first photo of pairsDevTest.txt, flipped below

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (LFW / "pairsDevTest.txt").is_file(), reason=f"LFW not found at {LFW}"),
]


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 100 and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module", autouse=True)
def cache_env(workdir: Path):
    """One embedding cache for the whole module, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEID_CACHE_DIR", str(workdir / "cache"))
        yield workdir / "cache"


@pytest.fixture(scope="module")
def pairs_setup(workdir: Path) -> tuple[Path, Path]:
    """20 pairs (the first 10 same, first 10 different of pairsDevTest.txt) over a
    root of links to the LFW photos, one replaced by an upside-down copy that the
    frontal detector cannot find, so at least one fallback is certain."""
    from PIL import Image

    lines = (LFW / "pairsDevTest.txt").read_text().splitlines()
    body = lines[1:11] + lines[501:511]
    pairs_file = workdir / "pairs20.txt"
    pairs_file.write_text("10\n" + "\n".join(body) + "\n")
    root = workdir / "root"
    for line in body:
        f = line.split()
        for name, i in (
            ((f[0], f[1]), (f[0], f[2])) if len(f) == 3 else ((f[0], f[1]), (f[2], f[3]))
        ):
            rel = Path(name) / f"{name}_{int(i):04d}.jpg"
            (root / name).mkdir(parents=True, exist_ok=True)
            if not (root / rel).exists():
                (root / rel).symlink_to(LFW / rel)
    name, i = UPSIDE_DOWN
    target = root / name / f"{name}_{i:04d}.jpg"
    image = Image.open(LFW / name / target.name)
    target.unlink()
    image.rotate(180).save(target, quality=95)
    return pairs_file, root


def _fid(model: Path):
    from faceid.api import FaceID

    return FaceID(model=model, device="cpu")


@pytest.fixture(scope="module")
def first_run(workdir: Path, tiny_model: Path, pairs_setup: tuple[Path, Path]) -> dict:
    from faceid.evaluate.run import evaluate_pairs

    pairs_file, root = pairs_setup
    return evaluate_pairs(_fid(tiny_model), pairs_file, root, workdir / "report1", workers=1)


def test_pairs_report_fields(first_run: dict, workdir: Path) -> None:
    r = first_run
    out = workdir / "report1"
    assert json.loads((out / "report.json").read_text()) == r
    assert r["counts"] == {"pairs": 20, "genuine": 10, "impostor": 10, "folds": 10}
    k = r["kfold_accuracy"]
    assert len(k["per_fold"]) == len(k["thresholds"]) == 10
    assert all(0.0 <= a <= 1.0 for a in k["per_fold"])
    assert math.isclose(k["mean"], float(np.mean(k["per_fold"])))
    assert 0.0 <= k["std"] <= 0.5
    st = r["stored_threshold"]
    assert st["threshold"] == 0.8 == r["threshold"]["value"] == r["model"]["threshold"]
    assert r["threshold"]["source"] == "model"
    assert 0.0 <= st["accuracy"] <= 1.0
    assert math.isclose(st["accuracy"], (10 * st["tar"] + 10 * (1 - st["far"])) / 20)
    assert 0.0 <= r["roc_auc"] <= 1.0 and 0.0 <= r["eer"]["rate"] <= 1.0
    assert set(r["tar_at_far"]) == {"0.01", "0.001"}
    assert r["far_resolution"] == 0.1
    for side in ("genuine", "impostor"):
        d = r["distances"][side]
        assert d["n"] == 10 and 0.0 <= d["min"] <= d["p50"] <= d["max"] <= 4.0
    assert r["model"]["id"].startswith("faceid-")
    assert r["settings"] == {"pick": "center", "on_no_face": "full-image", "upsample": 1}
    for name in ("report.json", *r["plots"].values()):
        assert (out / name).is_file()
    assert set(r["plots"]) == {"roc", "distances"}
    assert all(_is_png(out / p) for p in r["plots"].values())
    wall = r["timings"]["wall_s"]
    assert {"load_model", "hash", "crop", "embed", "metrics", "plots"} <= set(wall)
    assert wall["crop"] > 0 and all(v >= 0 for v in wall.values())
    assert r["timings"]["stage_sum_s"]["detect"] > 0


def test_pairs_fallbacks_counted(first_run: dict, pairs_setup: tuple[Path, Path]) -> None:
    img = first_run["images"]
    assert 30 <= img["distinct"] <= 40
    assert img["fallbacks"] == len(img["fallback_files"]) >= 1
    name, i = UPSIDE_DOWN
    flipped = str(pairs_setup[1] / name / f"{name}_{i:04d}.jpg")
    assert flipped in img["fallback_files"]
    assert 1 <= img["pairs_with_fallback"] <= 20


def test_second_run_is_served_from_cache(
    first_run: dict,
    tiny_model: Path,
    pairs_setup: tuple[Path, Path],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rerun goes through the CLI (--json) and may not crop anything."""
    from click.testing import CliRunner

    import faceid.api
    from faceid.cli import main

    def no_cropping(*args, **kwargs):
        raise AssertionError("a cached rerun must not detect or align")

    monkeypatch.setattr(faceid.api, "crop_photos", no_cropping)
    pairs_file, root = pairs_setup
    out = workdir / "report2"
    args = ["evaluate", "pairs", "--pairs", str(pairs_file), "--root", str(root)]
    args += ["--out", str(out), "--model", str(tiny_model), "--device", "cpu", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    n = first_run["images"]["distinct"]
    assert r["cache"]["hits"] == n and r["cache"]["misses"] == 0
    assert r["timings"]["wall_s"]["crop"] == 0 and r["timings"]["wall_s"]["embed"] == 0
    for key in ("counts", "kfold_accuracy", "roc_auc", "eer", "distances", "stored_threshold"):
        assert r[key] == first_run[key], key
    assert r["images"]["fallback_files"] == first_run["images"]["fallback_files"]
    assert _is_png(out / "roc.png")


def test_threshold_override_and_text_summary(
    first_run: dict, tiny_model: Path, pairs_setup: tuple[Path, Path], workdir: Path
) -> None:
    from click.testing import CliRunner

    from faceid.cli import main

    pairs_file, root = pairs_setup
    args = ["evaluate", "pairs", "--pairs", str(pairs_file), "--root", str(root)]
    args += ["--out", str(workdir / "report3"), "--model", str(tiny_model), "--device", "cpu"]
    res = CliRunner().invoke(main, [*args, "--threshold", "1.5"])
    assert res.exit_code == 0, res.output
    assert "accuracy (10-fold)" in res.stdout and "threshold 1.5000 (--threshold)" in res.stdout
    r = json.loads((workdir / "report3" / "report.json").read_text())
    assert r["stored_threshold"]["threshold"] == 1.5 and r["model"]["threshold"] == 0.8
    assert r["kfold_accuracy"] == first_run["kfold_accuracy"]


def test_calibrate_writes_new_checkpoint_and_refuses_overwrite(
    first_run: dict, tiny_model: Path, pairs_setup: tuple[Path, Path], workdir: Path
) -> None:
    from click.testing import CliRunner

    from faceid.cli import main
    from faceid.model.checkpoint import load_checkpoint

    pairs_file, root = pairs_setup
    new = workdir / "calibrated.pt"
    args = ["calibrate", "--pairs", str(pairs_file), "--root", str(root), "-o", str(new)]
    args += ["--model", str(tiny_model), "--device", "cpu", "--workers", "1"]
    runner = CliRunner()
    res = runner.invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["cache"]["misses"] == 0  # the same photos as the evaluation
    ckpt = load_checkpoint(new)
    old = load_checkpoint(tiny_model)
    assert ckpt.threshold == r["threshold"] and old.threshold == 0.8 == r["previous_threshold"]
    assert ckpt.model_id == old.model_id == r["model_id"]
    cal = ckpt.meta["calibration"]
    assert cal["method"] == "max-accuracy" and cal["pairs"] == 20
    assert cal["pairs_file"] == "pairs20.txt" and cal["threshold"] == r["threshold"]
    assert 0.0 <= r["accuracy"] <= 1.0
    assert r["accuracy"] >= max(first_run["stored_threshold"]["accuracy"], 0.5)

    before = new.read_bytes()
    res = runner.invoke(main, args)
    assert res.exit_code == 1
    assert "exists" in res.stderr and "--force" in res.stderr
    assert new.read_bytes() == before

    res = runner.invoke(main, [*args, "--force", "--target-far", "0.1", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["method"] == "target-far" and r["far"] <= 0.1
    ckpt = load_checkpoint(new)
    assert ckpt.meta["calibration"]["target_far"] == 0.1 and ckpt.threshold == r["threshold"]


def test_evaluate_identify_small(tiny_model: Path, workdir: Path) -> None:
    from faceid.evaluate.run import evaluate_identify

    out = workdir / "identify"
    r = evaluate_identify(_fid(tiny_model), LFW, out, limit_people=5, strangers="half", workers=1)
    assert json.loads((out / "report.json").read_text()) == r
    c = r["counts"]
    # 5 people with >= 2 photos enrol one each; of 5 singletons round(2.5) = 2 are distractors
    assert c["gallery_identities"] == c["gallery_images"] == 7
    assert c["impostor_probes"] == 3
    assert c["genuine_probes"] == c["genuine_probes_enrolled"] == r["images"]["distinct"] - 10
    assert r["people"]["used"] == 10 and r["people"]["in_root"] > 5000
    assert 0.0 <= r["rank1"] <= r["rank5"] <= 1.0
    assert len(r["cmc"]) == 10 and r["cmc"][0] == r["rank1"] and r["cmc"][4] == r["rank5"]
    assert all(a <= b for a, b in zip(r["cmc"], r["cmc"][1:])) and r["cmc"][-1] == 1.0
    assert set(r["dir_at_far"]) == {"0.01", "0.1"}
    assert all(0.0 <= v["dir"] <= r["rank1"] for v in r["dir_at_far"].values())
    st = r["stored_threshold"]
    assert st["threshold"] == 0.2  # the tiny model's identification threshold
    assert 0.0 <= st["genuine_identified"] <= 1.0 and 0.0 <= st["impostor_rejected"] <= 1.0
    assert r["images"]["fallbacks"] == len(r["images"]["fallback_files"])
    assert "search" in r["timings"]["wall_s"]
    assert _is_png(out / r["plots"]["cmc"])
    assert _is_png(out / r["plots"]["det"])
    assert set(r["fnir_at_fpir"]) == {"0.01", "0.1"}
    for key, v in r["fnir_at_fpir"].items():
        assert v["fnir"] == pytest.approx(1.0 - r["dir_at_far"][key]["dir"])
    rule = r["default_rule"]  # the tiny model has no open-set calibration: its stored threshold
    assert rule["rule"]["kind"] == "model" and rule["threshold"] == st["threshold"]
    assert rule["strangers_named"] == pytest.approx(1.0 - st["impostor_rejected"])


def test_evaluate_identify_probes_every_one_photo_person_as_a_stranger_by_default(
    tiny_model: Path, workdir: Path
) -> None:
    from faceid.evaluate.run import evaluate_identify

    out = workdir / "identify-all"
    r = evaluate_identify(_fid(tiny_model), LFW, out, limit_people=5, workers=1)
    c = r["counts"]
    assert r["settings"]["strangers"] == "all"
    assert c["gallery_identities"] == c["gallery_images"] == 5  # the protocol
    assert c["impostor_probes"] == 5


def test_evaluate_identify_people_file_keeps_only_the_listed_people(
    tiny_model: Path, workdir: Path
) -> None:
    from faceid.evaluate.run import evaluate_identify

    people = workdir / "people3.txt"
    people.write_text("3\nAbdullah_Gul\t19\nAdrien_Brody\t12\nAaron_Eckhart\t1\n")
    out = workdir / "identify-people"
    r = evaluate_identify(_fid(tiny_model), LFW, out, people_file=people, workers=1)
    assert r["people"]["used"] == 3
    assert r["counts"]["genuine_probes"] == 18 + 11


def test_evaluate_identify_command_prints_fnir_and_the_default_rule(
    tiny_model: Path, workdir: Path
) -> None:
    from click.testing import CliRunner

    from faceid.cli import main

    out = workdir / "identify-cli"
    args = ["evaluate", "identify", "--root", str(LFW), "--limit-people", "3", "--out", str(out)]
    res = CliRunner().invoke(main, [*args, "--model", str(tiny_model), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "FNIR@FPIR0.01" in res.stdout and "FNIR@FPIR0.1" in res.stdout
    assert "at the default rule (the model's identification threshold" in res.stdout
    assert "strangers given a name" in res.stdout
    assert (out / "det.png").is_file()
