"""Describe many augmented views and blends of every face of a cache once, for training.

    python scripts/view_bank.py --cache cache/lfw-devtrain-96m --views 8 --blends 2

Writes CACHE/bank/ (or --name's folder; see faceid/train/bank.py), which
`scripts/train.py --teacher bank` reads: consistent distillation (the teacher's answer
about the very image the student sees) at the cost per step of fixed targets, the
teacher's cost paid once and reused by every later run on the cache. A second bank
(another --seed, --name) gives later runs new views to read beside the first.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option(
    "--cache", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True
)
@click.option("--views", default=8, show_default=True, help="Views per photo (the first plain).")
@click.option("--blends", default=2, show_default=True, help="Two-person blends per photo.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--name",
    default="bank",
    show_default=True,
    help="The bank's folder in the cache: another seed in another folder adds views, "
    "which train.py reads side by side (--bank bank --bank NAME).",
)
@click.option("--batch", default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", default=0, help="torch CPU threads (0 = torch's default).")
def main(
    cache: Path,
    views: int,
    blends: int,
    seed: int,
    name: str,
    batch: int,
    device: str,
    threads: int,
) -> None:
    """Write CACHE/NAME/: VIEWS views and BLENDS blends of each face with the teacher's
    descriptor of each."""
    import torch

    from faceid.model.torch_runner import resolve_device
    from faceid.train.bank import build_bank
    from faceid.train.data import FaceCache, teacher_weights
    from faceid.train.teacher import load_teacher

    if threads:
        torch.set_num_threads(threads)
    data = FaceCache.load(cache)
    if data.masters is None:
        raise click.ClickException(f"{cache} has no masters: prepare it with --master 200")
    device = resolve_device(device)
    meta = build_bank(
        data,
        cache / name,
        load_teacher(device, teacher_weights(cache)),
        views=views,
        blends=blends,
        batch=batch,
        seed=seed,
        device=device,
    )
    click.echo(json.dumps(meta))


if __name__ == "__main__":
    main()
