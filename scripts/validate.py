"""Validation figures and operating points of a checkpoint, on the held-out training people.

Uses the same seeded split as scripts/train.py (people never trained on, drawn
from peopleDevTrain.txt), so thresholds chosen here never touch the test people:

    python scripts/validate.py --cache cache/lfw-devtrain-96 --model faceid/weights/default.pt
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option("--cache", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--val-share", default=0.1, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(cache: Path, model: Path | None, val_share: float, seed: int) -> None:
    from faceid.evaluate import metrics
    from faceid.model.encoder import Encoder
    from faceid.model.runner import DEFAULT_PT
    from faceid.train.data import FaceCache
    from faceid.train.loop import pair_distances, split_people, validation_pairs

    enc = Encoder.load(model or DEFAULT_PT, "cpu")  # torch: uses the network
    data = FaceCache.load(cache)
    _, val_idx = split_people(data.labels, val_share, seed)
    pairs, same = validation_pairs(data.labels[val_idx], seed)
    dist = pair_distances(enc.net, data.crops[val_idx], pairs, "cpu")
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
    click.echo(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
