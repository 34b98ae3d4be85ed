"""Detect and align a folder of per-person folders into a training cache.

Example (the shipped model's training pool, with dlib's descriptors as
distillation targets):

    python scripts/prepare_data.py --root ../shared/data/lfw \
        --people ../shared/data/lfw/peopleDevTrain.txt --out cache/lfw-devtrain --teacher
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from faceid.evaluate.protocols import read_people, scan_identities
from faceid.train.data import prepare_cache


@click.command()
@click.option(
    "--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True
)
@click.option(
    "--people",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="LFW people file: only these people (e.g. peopleDevTrain.txt).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--size", default=64, show_default=True, help="Crop side in pixels.")
@click.option("--upsample", default=1, show_default=True, help="HOG detector upsampling.")
@click.option("--workers", default=0, help="Worker processes (0 = all cores).")
@click.option("--teacher/--no-teacher", default=False, help="Also store dlib's descriptors.")
@click.option(
    "--master",
    default=0,
    show_default=True,
    help="Also keep each face in the teacher's geometry at this side (200: consistent "
    "distillation, see faceid/train/views.py); 0 = no.",
)
@click.option("--limit", default=0, help="Only the first N images (smoke tests).")
def main(root, people, out, size, upsample, workers, teacher, master, limit):
    identities = scan_identities(root)
    names = [n for n, _ in read_people(people)] if people else sorted(identities)
    items = [(n, p) for n in sorted(names) for p in identities.get(n, [])]
    if limit:
        items = items[:limit]
    summary = prepare_cache(
        items,
        out,
        size=size,
        upsample=upsample,
        workers=workers or None,
        teacher=teacher,
        master=master,
    )
    summary = {k: v for k, v in summary.items() if k != "notes"}
    click.echo(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
