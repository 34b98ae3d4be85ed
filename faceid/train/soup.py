"""Uniform weight averaging of checkpoints of one network (a "model soup").

Late epochs of a cosine schedule, and the final epochs of successive warm restarts, sit
in one basin: their weights can be averaged, and the average is often better than each
and steadier than any one epoch, whose open-set figures move by several points from one
epoch to the next (Wortsman et al., "Model soups", 2022; Izmailov et al., "Averaging
weights leads to wider optima", 2018). The averaged network is a new model: its
thresholds and open-set calibration are measured again on the training run's validation
people, exactly as training measures an epoch's, never carried over from the parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from faceid.model.checkpoint import Checkpoint, load_checkpoint
from faceid.model.net import PREPROCESS, FaceNet, NetConfig
from faceid.train.data import FaceCache
from faceid.train.loop import held_out_calibration, split_people, validate, validation_pairs


def average_state_dicts(states: Sequence[dict]) -> dict:
    """The mean of every floating-point tensor; integer ones (BatchNorm's batch counters)
    are taken from the first. All must have the same names and shapes."""
    if not states:
        raise ValueError("nothing to average")
    names = set(states[0])
    for s in states[1:]:
        if set(s) != names or any(s[k].shape != states[0][k].shape for k in names):
            raise ValueError("the checkpoints are different networks: they cannot be averaged")
    return {
        k: (
            torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
            if v.is_floating_point()
            else v.clone()
        )
        for k, v in states[0].items()
    }


def average_checkpoints(
    paths: Sequence[str | Path], cache: str | Path, *, val_share: float = 0.1, seed: int = 0
) -> tuple[Checkpoint, dict]:
    """Average the checkpoints' weights and calibrate the result on the validation people of
    `cache` (the split training uses with `val_share` and `seed`); returns the checkpoint
    and its validation row (the figures training logs for an epoch)."""
    parts = [load_checkpoint(p) for p in paths]
    config = NetConfig.from_dict(parts[0].config)
    if any(NetConfig.from_dict(c.config) != config for c in parts[1:]):
        raise ValueError("the checkpoints have different network configs: they cannot be averaged")
    net = FaceNet(config)
    net.load_state_dict(average_state_dicts([c.state_dict for c in parts]))
    net.eval()

    data = FaceCache.load(Path(cache))
    if data.crops.shape[1] != config.input_size:
        raise ValueError(
            f"{cache} holds {data.crops.shape[1]} px crops; the network takes {config.input_size}"
        )
    _, val_idx = split_people(data.labels, val_share, seed)
    pairs, same = validation_pairs(data.labels[val_idx], seed)
    with torch.no_grad():
        row, cal = validate(net, data.crops[val_idx], pairs, same, "cpu", data.labels[val_idx])
    meta: dict = {
        "averaged_from": [{"path": str(p), "model_id": c.model_id} for p, c in zip(paths, parts)],
        "validation": row,
    }
    if cal is not None:
        meta["openset"] = held_out_calibration(cal)
    ckpt = Checkpoint(
        config=config.to_dict(),
        state_dict={k: v.detach().clone() for k, v in net.state_dict().items()},
        threshold=row["val_threshold"],
        identify_threshold=row["val_threshold_far1e-2"],
        preprocess=dict(parts[0].preprocess or PREPROCESS),
        meta=meta,
    )
    return ckpt, row
