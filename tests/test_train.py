"""A short real training run on a few LFW identities."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from faceid.evaluate.protocols import read_people, scan_identities
from faceid.model.encoder import Encoder
from faceid.model.net import NetConfig
from faceid.train.data import FaceCache, pack_cache, prepare_cache
from faceid.train.loop import (
    TrainConfig,
    autocast_bf16,
    epochs_within,
    is_better,
    native_bf16,
    split_people,
    train,
)

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    if not LFW.is_dir():
        pytest.skip("../shared/data/lfw is absent: no real photos to train on")
    identities = scan_identities(LFW)
    names = sorted(n for n, k in read_people(LFW / "peopleDevTrain.txt") if k >= 4)[:14]
    items = [(n, p) for n in names for p in identities[n][:4]]
    out = tmp_path_factory.mktemp("cache")
    summary = prepare_cache(items, out, size=32, workers=2, teacher=True, master=200)
    assert summary["count"] == len(items) == 56
    return out


def _cfg(cache, out, epochs, **kw):
    net = NetConfig(input_size=32, widths=(8, 16), blocks=(1, 1)).to_dict()
    return TrainConfig(
        cache=str(cache),
        out=str(out),
        epochs=epochs,
        p=4,
        k=4,
        singles=0,
        lr=1e-2,
        warmup_epochs=0.5,
        val_share=0.15,
        device="cpu",
        net=net,
        **kw,
    )


def test_prepared_cache_holds_aligned_crops_labels_and_teacher_targets(small_cache):
    data = FaceCache.load(small_cache)
    assert data.crops.shape == (56, 32, 32, 3) and data.crops.dtype == np.uint8
    assert len(data.names) == 14 and np.bincount(data.labels).tolist() == [4] * 14
    assert data.teacher.shape == (56, 128)
    assert (np.linalg.norm(data.teacher, axis=1) > 0.5).all()  # real dlib descriptors


def test_fixed_targets_from_the_torch_teacher_agree_with_dlibs_own_descriptors(
    small_cache, tmp_path
):
    # scripts/teacher_targets.py: the teacher on each master's plain chip stands in for
    # prepare_data.py --teacher (dlib on its own landmarks) at a fraction of the time.
    import shutil
    import subprocess
    import sys

    dlib = FaceCache.load(small_cache).teacher
    copy = tmp_path / "cache"
    shutil.copytree(small_cache, copy)
    (copy / "teacher.npy").unlink()
    script = Path(__file__).resolve().parents[1] / "scripts" / "teacher_targets.py"
    subprocess.run([sys.executable, str(script), "--cache", str(copy)], check=True)
    ours = FaceCache.load(copy).teacher
    cos = np.sum(ours * dlib, 1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(dlib, axis=1))
    assert np.median(cos) > 0.99 and cos.min() > 0.95, cos


def test_validation_people_are_never_trained_on(small_cache):
    data = FaceCache.load(small_cache)
    train_idx, val_idx = split_people(data.labels, 0.15, 0)
    assert not set(data.labels[train_idx]) & set(data.labels[val_idx])
    assert len(set(data.labels[val_idx])) == 2


@pytest.mark.parametrize("miner", ["batch-hard", "semi-hard", "batch-all"])
def test_training_loss_falls_and_checkpoint_reloads_to_identical_outputs(
    small_cache, tmp_path, miner
):
    best = train(_cfg(small_cache, tmp_path, 8, miner=miner, distill=0.5), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    assert np.mean([r["loss"] for r in rows[-2:]]) < np.mean([r["loss"] for r in rows[:2]])
    assert 0 <= best["val_auc"] <= 1
    data = FaceCache.load(small_cache)
    enc_a = Encoder.load(tmp_path / "best.pt", device="cpu")
    enc_b = Encoder.load(tmp_path / "best.pt", device="cpu")
    assert enc_a.threshold == best["val_threshold"]
    assert np.array_equal(enc_a.embed(data.crops[:8]), enc_b.embed(data.crops[:8]))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_train_and_the_checkpoint_is_float32(small_cache, tmp_path, precision):
    # 12 epochs: over the first few the loss rises as the learning rate warms up, on some CPUs
    # past its start (bfloat16 emulated on AVX2, float32 by a hair at 6 epochs)
    train(_cfg(small_cache, tmp_path, 12, distill=0.5, precision=precision), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert np.mean([r["loss"] for r in rows[-2:]]) < np.mean([r["loss"] for r in rows[:2]])
    enc = Encoder.load(tmp_path / "best.pt", device="cpu")
    assert {str(v.dtype) for v in enc.checkpoint.state_dict.values() if v.is_floating_point()} == {
        "torch.float32"
    }


def test_forcing_bfloat16_on_a_cpu_that_would_emulate_it_warns(
    small_cache, tmp_path, monkeypatch, capsys
):
    import torch

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    train(_cfg(small_cache, tmp_path / "fp32", 1, precision="auto"), progress=False)
    assert "bfloat16" not in capsys.readouterr().err
    train(_cfg(small_cache, tmp_path / "bf16", 1, precision="bf16"), progress=False)
    assert "no native bfloat16" in capsys.readouterr().err


def test_auto_precision_uses_bfloat16_on_gpus_and_cpus_that_have_it_natively(monkeypatch):
    import torch

    for avx512_bf16, amx, expected in [
        (True, False, True),
        (False, True, True),
        (False, False, False),
    ]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert autocast_bf16("auto", "cpu") is expected
        assert native_bf16("cpu") is expected
    for capability, expected in [(8, True), (7, False)]:  # Ampere; Volta emulates bfloat16
        monkeypatch.setattr(
            torch.cuda,
            "is_bf16_supported",
            lambda including_emulation=True, c=capability: c >= 8 or including_emulation,
        )
        assert autocast_bf16("auto", "cuda") is expected
    assert autocast_bf16("fp32", "cuda") is False
    assert autocast_bf16("bf16", "cpu") is True
    with pytest.raises(ValueError, match="precision"):
        autocast_bf16("fp16", "cpu")


def test_online_consistent_distillation_trains_and_reloads_to_identical_outputs(
    small_cache, tmp_path
):
    data = FaceCache.load(small_cache)
    assert data.masters.shape == (56, 200, 200, 3) and data.student_maps.shape == (56, 2, 3)
    cfg = _cfg(small_cache, tmp_path, 2, teacher="online", distill=1.0, blends=4)
    best = train(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["distill"] > 0 and r["relational"] > 0 for r in rows)
    assert np.isfinite([r["loss"] for r in rows]).all() and 0 <= best["val_auc"] <= 1
    enc_a = Encoder.load(tmp_path / "best.pt", device="cpu")
    enc_b = Encoder.load(tmp_path / "best.pt", device="cpu")
    assert np.array_equal(enc_a.embed(data.crops[:8]), enc_b.embed(data.crops[:8]))


def test_validation_reports_the_tail_and_open_set_and_best_pt_carries_the_calibration(
    small_cache, tmp_path
):
    from faceid import openset

    cfg = _cfg(small_cache, tmp_path, 2)
    cfg.val_share = 0.3  # four validation people: enough for galleries with strangers
    best = train(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    for row in rows:
        assert 0 <= row["val_tar_far1e-3"] <= row["val_tar_far1e-2"] <= 1
        assert 0 <= row["val_rank1"] <= 1 and row["val_openset_people"] == 4
        assert 0 <= row["val_fnir_fpir1e-2_n500"] <= 1
    cal = Encoder.load(tmp_path / "best.pt", device="cpu").openset
    openset.check(cal)
    assert cal["source"]["people"] == 4
    # the figure in the row is the one the stored calibration gives
    rule = openset.rule_for(cal, 500, 0.01)
    assert rule.threshold == pytest.approx(best["val_threshold_fpir1e-2_n500"], abs=1e-5)


def test_the_best_epoch_is_chosen_by_the_open_set_figure_when_there_is_one():
    a = {"val_auc": 0.90, "val_tar_far1e-3": 0.5, "val_fnir_fpir1e-2_n500": 0.40}
    b = {"val_auc": 0.95, "val_tar_far1e-3": 0.4, "val_fnir_fpir1e-2_n500": 0.45}
    assert is_better(a, None)
    assert is_better(a, b) and not is_better(b, a)  # auto: lower FNIR wins
    assert is_better(b, a, "auc") and is_better(a, b, "tar1e-3")
    old = {"val_auc": 0.93}  # a row from before the open-set figure: AUC decides
    assert is_better(b, old) and not is_better(a, old)
    with pytest.raises(ValueError, match="select"):
        is_better(a, b, "accuracy")


def test_an_interrupted_run_resumes_where_it_stopped(small_cache, tmp_path):
    train(_cfg(small_cache, tmp_path, 2), progress=False)
    train(_cfg(small_cache, tmp_path, 3), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_a_run_leaves_its_last_epoch_as_final_pt_beside_the_selected_best_pt(small_cache, tmp_path):
    import torch

    train(_cfg(small_cache, tmp_path, 3), progress=False)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    final = Encoder.load(tmp_path / "final.pt", device="cpu").checkpoint
    assert final.meta["validation"]["epoch"] == 3
    assert all(torch.equal(final.state_dict[k], v) for k, v in state["state_dict"].items())
    (tmp_path / "final.pt").unlink()
    train(_cfg(small_cache, tmp_path, 3), progress=False)  # a finished run's command, again
    assert Encoder.load(tmp_path / "final.pt", device="cpu").model_id == final.model_id


def test_a_resumed_time_budget_keeps_its_schedule_and_counts_the_time_spent(
    small_cache, tmp_path, monkeypatch
):
    import types

    import faceid.train.loop as loop

    clock = iter(range(0, 100_000, 10))  # the loop's clock: each reading 10 s after the last
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(time=lambda: next(clock)))
    first = _cfg(small_cache, tmp_path, 100, minutes=5.0)
    train(first, progress=False)
    again = _cfg(small_cache, tmp_path, 100, minutes=5.0)  # the same command, run again
    train(again, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert again.epochs == first.epochs == len(rows)  # a finished budget trains no more


def test_a_run_that_slows_down_still_ends_within_its_time_budget(
    small_cache, tmp_path, monkeypatch
):
    import itertools
    import types

    import torch

    import faceid.train.loop as loop

    # the loop's clock: readings 10 s apart, then 30 s apart from the 40th on (a busier machine)
    steps = itertools.chain([10] * 40, itertools.repeat(30))
    clock = itertools.accumulate(steps, initial=0)
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(time=lambda: next(clock)))
    cfg = _cfg(small_cache, tmp_path, 100, minutes=30.0)
    train(cfg, progress=False)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    epoch_s = state["wall"] / len(rows)  # an upper bound on the last epochs' length
    assert cfg.epochs == len(rows) == state["epoch"]
    assert 30 * 60 - 3 * epoch_s < state["wall"] <= 30 * 60  # used, and not overrun


def test_a_warm_restart_starts_from_the_given_checkpoint(small_cache, tmp_path):
    first = tmp_path / "first"
    train(_cfg(small_cache, first, 2), progress=False)
    start = Encoder.load(first / "best.pt", device="cpu")
    crops = FaceCache.load(small_cache).crops[:8]
    # lr 0 keeps the weights; only BatchNorm's running statistics may move.
    cfg = _cfg(small_cache, tmp_path / "second", 1, init=str(first / "best.pt"))
    cfg.lr = 0.0
    train(cfg, progress=False)
    again = Encoder.load(tmp_path / "second" / "best.pt", device="cpu")
    conv = "stem.0.weight"
    assert np.array_equal(start.checkpoint.state_dict[conv], again.checkpoint.state_dict[conv])
    assert np.abs(start.embed(crops) - again.embed(crops)).max() < 0.5


def test_a_packed_cache_loads_like_the_original_in_a_fraction_of_the_bytes(small_cache, tmp_path):
    summary = pack_cache(small_cache, tmp_path / "packed")
    assert summary["images"] == 56 and summary["packed_bytes"] < summary["raw_bytes"] / 2
    raw, packed = FaceCache.load(small_cache), FaceCache.load(tmp_path / "packed")
    assert packed.names == raw.names and np.array_equal(packed.labels, raw.labels)
    assert np.array_equal(packed.teacher, raw.teacher)
    assert packed.crops.shape == raw.crops.shape and packed.crops.dtype == np.uint8
    error = np.abs(packed.crops.astype(np.int16) - raw.crops).mean()
    assert 0 < error < 4 and error == pytest.approx(summary["mean_abs_error"], abs=1e-3)
    some = [n for i, n in enumerate(raw.names) if i % 3 == 0]
    sub_raw = FaceCache.load(small_cache, some)
    sub_packed = FaceCache.load(tmp_path / "packed", some)
    assert np.abs(sub_packed.crops.astype(np.int16) - sub_raw.crops).mean() < 4
    assert sub_packed.names == some


def test_a_cache_packed_with_its_masters_trains_online_without_crops_or_dlib_files(
    small_cache, tmp_path
):
    from faceid.train.data import teacher_weights

    packed = tmp_path / "packed"
    summary = pack_cache(small_cache, packed, masters_quality=80)
    assert summary["format"] == "WEBP" and summary["packed_bytes"] < summary["raw_bytes"] / 5
    assert not list(packed.glob("crops*")) and teacher_weights(packed) is not None
    raw, data = FaceCache.load(small_cache), FaceCache.load(packed)
    assert data.masters.shape == raw.masters.shape
    assert np.abs(data.masters.astype(np.int16) - raw.masters).mean() < 4
    # crops cut from the masters on loading: the inference crops, within a few grey levels
    assert data.crops.shape == raw.crops.shape
    assert np.abs(data.crops.astype(np.int16) - raw.crops).mean() < 6
    cfg = _cfg(packed, tmp_path / "run", 1, teacher="online", distill=1.0, blends=4)
    assert np.isfinite(train(cfg, progress=False)["val_auc"])


@pytest.fixture(scope="module")
def banked_cache(small_cache, tmp_path_factory):
    """A copy of the small cache with a view bank made by scripts/view_bank.py."""
    import shutil
    import subprocess
    import sys

    copy = tmp_path_factory.mktemp("banked") / "cache"
    shutil.copytree(small_cache, copy)
    script = Path(__file__).resolve().parents[1] / "scripts" / "view_bank.py"
    args = ["--cache", str(copy), "--views", "3", "--blends", "1", "--threads", "1"]
    subprocess.run([sys.executable, str(script), *args], check=True)
    return copy


def test_a_view_bank_stores_each_photos_plain_and_augmented_views_with_the_teachers_answers(
    banked_cache,
):
    from faceid.train.bank import BANK
    from faceid.train.teacher import load_teacher
    from faceid.train.views import describe_masters, plain_crops

    data = FaceCache.load(banked_cache)
    folder = banked_cache / BANK
    views = np.load(folder / "views.u8.npy")
    targets = np.load(folder / "view_targets.npy")
    assert views.shape == (56, 3, 32, 32, 3) and targets.shape == (56, 3, 128)
    # the first view is the plain crop (the inference crop within a few grey levels at
    # 32 px, as when a packed cache cuts its crops from masters), its target the fixed one
    plain = plain_crops(data.masters, data.student_maps, 32)
    assert np.abs(views[:, 0].astype(np.int16) - plain).max() <= 1
    assert np.abs(views[:, 0].astype(np.int16) - data.crops).mean() < 6
    fixed = describe_masters(load_teacher("cpu"), data.masters)
    assert np.allclose(targets[:, 0], fixed, atol=1e-3)
    # the others are augmented, and the teacher still knows whose they are: each view's
    # answer is nearer its own photo's plain answer than any other person's photo
    assert np.abs(views[:, 1:].astype(np.int16) - data.crops[:, None]).mean() > 3
    for v in (1, 2):
        d = ((targets[:, v, None] - targets[None, :, 0]) ** 2).sum(-1)
        other = data.labels[:, None] != data.labels[None]
        own = np.diag(d)
        assert np.mean(own < np.where(other, d, np.inf).min(1)) > 0.9
    parents = np.load(folder / "blend_parents.npy")
    assert len(parents) == 56 and (data.labels[parents[:, 0]] != data.labels[parents[:, 1]]).all()


def test_a_view_bank_gives_training_no_blend_of_a_validation_person(banked_cache):
    from faceid.train.bank import ViewBank

    data = FaceCache.load(banked_cache)
    train_idx, val_idx = split_people(data.labels, 0.15, 0)
    bank = ViewBank.load(banked_cache, data.entries, train_idx)
    parents = np.load(banked_cache / "bank" / "blend_parents.npy")
    allowed = np.isin(parents, train_idx).all(1)  # entries are rows here: nothing filtered out
    assert 0 < len(bank.blends) == allowed.sum() < len(parents)
    assert np.array_equal(
        bank.blend_targets, np.load(banked_cache / "bank" / "blend_targets.npy")[allowed]
    )
    crops, targets = bank.draw(train_idx[:8], 4, np.random.default_rng(0))
    assert crops.shape == (12, 32, 32, 3) and targets.shape == (12, 128)


def test_two_view_banks_are_read_side_by_side_each_view_with_its_own_answer(banked_cache):
    import subprocess
    import sys

    from faceid.train.bank import ViewBank

    script = Path(__file__).resolve().parents[1] / "scripts" / "view_bank.py"
    args = ["--cache", str(banked_cache), "--views", "2", "--blends", "1", "--seed", "1"]
    args += ["--name", "bank-s1", "--threads", "1"]
    subprocess.run([sys.executable, str(script), *args], check=True)
    data = FaceCache.load(banked_cache)
    train_idx, _ = split_people(data.labels, 0.15, 0)
    one = ViewBank.load(banked_cache, data.entries, train_idx)
    both = ViewBank.load(banked_cache, data.entries, train_idx, ("bank", "bank-s1"))
    assert both.targets.shape == (56, 3 + 2, 128)
    assert len(both.blends) == len(both.blend_targets) > len(one.blends)
    stored = np.concatenate(
        [np.load(banked_cache / n / "views.u8.npy") for n in ("bank", "bank-s1")], axis=1
    )
    rows = np.repeat(train_idx[:6], 10)
    crops, targets = both.draw(rows, 0, np.random.default_rng(0))
    drawn = set()
    for row, crop, target in zip(rows, crops, targets.numpy()):
        v = int(np.flatnonzero((stored[row] == crop).all((1, 2, 3)))[0])
        assert np.array_equal(target, both.targets[row, v])  # the answer about this very view
        drawn.add(v >= 3)
    assert drawn == {False, True}  # views of both banks
    with pytest.raises(FileNotFoundError, match="--name bank-s2"):
        ViewBank.load(banked_cache, data.entries, train_idx, ("bank", "bank-s2"))


def test_training_from_a_view_bank_distils_and_reloads_to_identical_outputs(banked_cache, tmp_path):
    cfg = _cfg(banked_cache, tmp_path, 2, teacher="bank", distill=1.0, blends=4)
    best = train(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["distill"] > 0 and r["relational"] > 0 for r in rows)
    assert np.isfinite([r["loss"] for r in rows]).all() and 0 <= best["val_auc"] <= 1
    data = FaceCache.load(banked_cache)
    enc_a = Encoder.load(tmp_path / "best.pt", device="cpu")
    enc_b = Encoder.load(tmp_path / "best.pt", device="cpu")
    assert np.array_equal(enc_a.embed(data.crops[:8]), enc_b.embed(data.crops[:8]))


def test_training_from_a_cache_without_a_view_bank_says_how_to_make_one(small_cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/view_bank.py"):
        train(_cfg(small_cache, tmp_path, 1, teacher="bank", distill=1.0), progress=False)


def test_epochs_within_fits_the_rest_of_the_budget():
    assert epochs_within(600, 100, 1, 50) == 11  # 500 s left: 10 more epochs
    assert epochs_within(600, 100, 3, 45) == 14  # floor(500 / 45) = 11 more
    assert epochs_within(600, 590, 4, 50) == 4  # no time left: stop, never undo epochs


def test_a_time_budget_sets_the_epochs_the_run_completes(small_cache, tmp_path, monkeypatch):
    import types

    import faceid.train.loop as loop

    clock = iter(range(0, 100_000, 10))  # the loop's clock: each reading 10 s after the last
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(time=lambda: next(clock)))
    cfg = _cfg(small_cache, tmp_path, 100, minutes=5.0)
    train(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert 2 < len(rows) < 100 and cfg.epochs == len(rows)
    assert rows[-1]["lr"] < rows[0]["lr"] / 5  # the schedule ran to its end, not cut midway


def test_averaged_checkpoints_hold_the_mean_weights_and_thresholds_measured_again(
    small_cache, tmp_path
):
    import torch

    from faceid.model.checkpoint import load_checkpoint, save_checkpoint
    from faceid.train.soup import average_checkpoints

    a, b = tmp_path / "a", tmp_path / "b"
    train(_cfg(small_cache, a, 2), progress=False)
    train(_cfg(small_cache, b, 2, seed=1), progress=False)
    parts = [load_checkpoint(a / "final.pt"), load_checkpoint(b / "final.pt")]
    soup, row = average_checkpoints([a / "final.pt", b / "final.pt"], small_cache, val_share=0.15)
    for name, tensor in soup.state_dict.items():
        if tensor.is_floating_point():
            mean = (parts[0].state_dict[name] + parts[1].state_dict[name]) / 2
            assert torch.allclose(tensor, mean, atol=1e-6), name
    assert soup.model_id not in {p.model_id for p in parts}
    # its own thresholds, from its own validation row, not either part's
    assert soup.threshold == row["val_threshold"]
    assert soup.identify_threshold == row["val_threshold_far1e-2"]
    assert [s["model_id"] for s in soup.meta["averaged_from"]] == [p.model_id for p in parts]
    saved = save_checkpoint(soup, tmp_path / "soup.pt")
    assert Encoder.load(saved, device="cpu").model_id == soup.model_id

    wider = tmp_path / "wider"
    net = NetConfig(input_size=32, widths=(8, 24), blocks=(1, 1)).to_dict()
    train(dataclasses.replace(_cfg(small_cache, wider, 1), net=net), progress=False)
    with pytest.raises(ValueError, match="different network"):
        average_checkpoints([a / "final.pt", wider / "final.pt"], small_cache, val_share=0.15)


def test_weight_averaging_means_the_last_epochs_across_a_resume_and_measures_batchnorm_again(
    small_cache, tmp_path
):
    import shutil

    import torch

    from faceid.model.checkpoint import load_checkpoint

    train(_cfg(small_cache, tmp_path, 2, average_last=1), progress=False)
    shutil.copy(tmp_path / "final.pt", tmp_path / "epoch2.pt")
    # the schedule extended by one epoch: the average carried in last.pt takes in epoch 3
    train(_cfg(small_cache, tmp_path, 3, average_last=2), progress=False)
    w2 = load_checkpoint(tmp_path / "epoch2.pt").state_dict
    w3 = load_checkpoint(tmp_path / "final.pt").state_dict
    swa = load_checkpoint(tmp_path / "swa.pt")
    assert _holds_their_mean(tmp_path / "swa.pt", tmp_path / "epoch2.pt", tmp_path / "final.pt")
    bn = "stem.1.running_mean"
    assert not torch.allclose(swa.state_dict[bn], (w2[bn] + w3[bn]) / 2)
    # measured over one epoch of training batches: a third of the count three epochs made
    batches = "stem.1.num_batches_tracked"
    assert 0 < swa.state_dict[batches] == w3[batches] // 3
    assert swa.meta["validation"]["averaged_epochs"] == 2
    assert swa.threshold == swa.meta["validation"]["val_threshold"]
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r.get("averaged_epochs") for r in rows] == [None, 1, 2]
    assert Encoder.load(tmp_path / "swa.pt", device="cpu").model_id == swa.model_id
    (tmp_path / "swa.pt").unlink()
    train(_cfg(small_cache, tmp_path, 3, average_last=2), progress=False)  # the command, again
    assert load_checkpoint(tmp_path / "swa.pt").model_id == swa.model_id


def _holds_their_mean(swa: Path, *checkpoints: Path) -> bool:
    """Whether the averaged checkpoint's first convolution is the mean of the checkpoints'."""
    import torch

    from faceid.model.checkpoint import load_checkpoint

    conv = "stem.0.weight"
    mean = sum(load_checkpoint(c).state_dict[conv] for c in checkpoints) / len(checkpoints)
    return torch.allclose(load_checkpoint(swa).state_dict[conv], mean, atol=1e-6)


@pytest.mark.parametrize(
    ("first", "epochs", "last_n", "stale"),
    [
        (3, 22, 20, False),  # exactly the last 20
        (1, 22, 20, False),  # two epochs early: within a quarter of 20
        (2, 40, 20, True),  # opened against an estimate of a short schedule
        (5, 6, 2, False),  # the last 2 of 6 begin at 5
        (4, 6, 2, False),  # one epoch of slack
        (3, 6, 2, True),
    ],
)
def test_a_running_average_is_begun_again_only_when_it_reaches_a_quarter_past_its_window(
    first, epochs, last_n, stale
):
    from faceid.train.loop import average_is_stale

    assert average_is_stale(first, epochs, last_n) is stale


def test_a_longer_schedule_on_resume_restarts_the_average_at_its_new_window(small_cache, tmp_path):
    import shutil

    train(_cfg(small_cache, tmp_path, 2, average_last=2), progress=False)  # averages 1 and 2
    # resumed as the last epoch of 3: epochs 1 and 2 lie past its window and are dropped
    train(_cfg(small_cache, tmp_path, 3, average_last=1), progress=False)
    shutil.copy(tmp_path / "final.pt", tmp_path / "epoch3.pt")
    # the last 2 of 4 begin at 3, where the average now begins: it carries on
    train(_cfg(small_cache, tmp_path, 4, average_last=2), progress=False)
    assert _holds_their_mean(tmp_path / "swa.pt", tmp_path / "epoch3.pt", tmp_path / "final.pt")
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r.get("averaged_epochs") for r in rows] == [1, 2, 1, 2]
