"""Validation figures and operating points of a checkpoint, on the held-out training people.

Uses the same seeded split as scripts/train.py (people never trained on, drawn
from peopleDevTrain.txt), so thresholds chosen here never touch the test people:

    python scripts/validate.py --cache cache/lfw-devtrain-96 --model faceid/weights/default.pt

With --write-openset NEW.pt it also writes a copy of the checkpoint carrying the open-set
calibration (meta["openset"], see faceid/openset.py) measured on those people, which
`faceid identify` uses to choose its threshold for a gallery's size. The weights, and so
the model id and every gallery made with it, stay the same, unless --half also stores the
weights in float16 (half the file): then every figure is measured on the rounded weights
that are written, and the model id is theirs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import numpy as np


@click.command()
@click.option("--cache", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--val-share", default=0.1, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--write-openset",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a copy of the model with its open-set calibration to this file.",
)
@click.option(
    "--singles/--no-singles",
    default=False,
    show_default=True,
    help="Also draw galleries and strangers from the cache's one-photo people. They are not "
    "held out: training used them as negatives.",
)
@click.option(
    "--half",
    is_flag=True,
    help="Measure, and write, the model with its convolution and projection weights in float16.",
)
@click.option("--draws", default=64, show_default=True, help="Random galleries per size.")
@click.option("--force", is_flag=True, help="Replace --write-openset's file if it exists.")
def main(
    cache: Path,
    model: Path | None,
    val_share: float,
    seed: int,
    write_openset: Path | None,
    singles: bool,
    half: bool,
    draws: int,
    force: bool,
) -> None:
    from faceid import openset
    from faceid.evaluate import metrics
    from faceid.model.checkpoint import half_weights, load_checkpoint, save_checkpoint
    from faceid.model.encoder import Encoder
    from faceid.model.runner import DEFAULT_PT
    from faceid.model.torch_runner import TorchRunner
    from faceid.train.data import FaceCache
    from faceid.train.loop import OPENSET_PEOPLE, split_people, validation_pairs

    if write_openset is not None and write_openset.exists() and not force:
        raise click.UsageError(f"{write_openset} exists: choose another file or pass --force")
    enc = Encoder.load(model or DEFAULT_PT, "cpu")  # torch: uses the network
    if half:
        enc = Encoder(TorchRunner(half_weights(enc.checkpoint), "cpu"))
    data = FaceCache.load(cache)
    _, val_idx = split_people(data.labels, val_share, seed)
    pairs, same = validation_pairs(data.labels[val_idx], seed)
    emb = enc.embed(data.crops[val_idx])
    dist = ((emb[pairs[:, 0]] - emb[pairs[:, 1]]) ** 2).sum(1)
    threshold, acc = metrics.best_threshold(dist, same)
    out = {
        "model_id": enc.model_id,
        "people": int(len(set(data.labels[val_idx]))),
        "pairs": int(len(same)),
        "accuracy_at_stored_threshold": metrics.accuracy_at(dist, same, enc.threshold),
        "roc_auc": metrics.roc_auc(dist, same),
        "operating_points": {
            "max-accuracy": {"threshold": threshold, "accuracy": acc},
            **{
                f"far-{far:g}": {
                    "threshold": metrics.threshold_at_far(dist, same, far),
                    "tar": metrics.tar_at_far(dist, same, far)[0],
                }
                for far in (1e-2, 1e-3)
            },
        },
    }
    labels = data.labels[val_idx]
    if singles:
        one = np.flatnonzero(np.bincount(data.labels)[data.labels] == 1)
        emb = np.concatenate([emb, enc.embed(data.crops[one])])
        labels = np.concatenate([labels, data.labels[one]])
    source = {
        "model_id": enc.model_id,
        "cache": cache.name,
        "people_from": "validation people of peopleDevTrain (seeded split, held out)"
        + (" + its one-photo people (training negatives)" if singles else ""),
        "val_share": val_share,
        "split_seed": seed,
    }
    cal = openset.calibrate_embeddings(emb, labels, draws=draws, seed=seed, source=source)
    out["openset"] = {
        "calibrated_on": cal["source"],
        "largest_calibrated_gallery": cal["sizes"][-1],
        "max_people_at_fpir_1%": openset.max_people(cal, 0.01),
        "ratio_rule_from_people_at_fpir_1%": openset.ratio_from(cal, 0.01),
        "rules": {
            str(n): openset.rule_for(cal, n, 0.01).to_dict()
            for n in (10, 100, OPENSET_PEOPLE, 1000, 2000)
        },
        # the distance bound alone, as runs before the ratio test were selected by
        "distance_rule_fnir_at_fpir_1%": {
            str(n): openset.fnir_at(cal, n, openset.threshold_for_fpir(cal, n, 0.01))
            for n in (10, OPENSET_PEOPLE)
        },
    }
    if write_openset is not None:
        ckpt = enc.checkpoint
        new = dataclasses.replace(ckpt, meta={**ckpt.meta, "openset": cal})
        save_checkpoint(new, write_openset, overwrite=force)
        if load_checkpoint(write_openset).model_id != ckpt.model_id:  # pragma: no cover
            raise click.ClickException("the model id changed: the checkpoint was not written right")
        out["wrote"] = str(write_openset)
    click.echo(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
