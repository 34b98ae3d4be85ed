"""A short real training run on a few LFW identities."""

import json
from pathlib import Path

import numpy as np
import pytest

from faceid.evaluate.protocols import read_people, scan_identities
from faceid.model.encoder import Encoder
from faceid.model.net import NetConfig
from faceid.train.data import FaceCache, prepare_cache
from faceid.train.loop import TrainConfig, split_people, train

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    if not LFW.is_dir():
        pytest.skip("../shared/data/lfw is absent: no real photos to train on")
    identities = scan_identities(LFW)
    names = sorted(n for n, k in read_people(LFW / "peopleDevTrain.txt") if k >= 4)[:14]
    items = [(n, p) for n in names for p in identities[n][:4]]
    out = tmp_path_factory.mktemp("cache")
    summary = prepare_cache(items, out, size=32, workers=2, teacher=True)
    assert summary["count"] == len(items) == 56
    return out


def _cfg(cache, out, epochs, **kw):
    net = NetConfig(input_size=32, widths=(8, 16), blocks=(1, 1)).to_dict()
    return TrainConfig(cache=str(cache), out=str(out), epochs=epochs, p=4, k=4, singles=0,
                       lr=1e-2, warmup_epochs=0.5, val_share=0.15, device="cpu", net=net, **kw)


def test_prepared_cache_holds_aligned_crops_labels_and_teacher_targets(small_cache):
    data = FaceCache.load(small_cache)
    assert data.crops.shape == (56, 32, 32, 3) and data.crops.dtype == np.uint8
    assert len(data.names) == 14 and np.bincount(data.labels).tolist() == [4] * 14
    assert data.teacher.shape == (56, 128)
    assert (np.linalg.norm(data.teacher, axis=1) > 0.5).all()  # real dlib descriptors


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


def test_an_interrupted_run_resumes_where_it_stopped(small_cache, tmp_path):
    train(_cfg(small_cache, tmp_path, 2), progress=False)
    train(_cfg(small_cache, tmp_path, 3), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


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
