"""Store the teacher's descriptor of every plain (un-augmented) face of a cache with masters.

    python scripts/teacher_targets.py --cache cache/lfw-devtrain-96m

Writes CACHE/teacher.npy: the fixed distillation targets that `scripts/train.py --teacher
fixed` reads, from the torch re-implementation of dlib's network on each master's own chip
(about 30 s for LFW's DevTrain on two cores, where `prepare_data.py --teacher` asks dlib for
20 minutes). It is what `--teacher online` is compared against at equal compute.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--cache", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True
)
@click.option("--batch", default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
def main(cache: Path, batch: int, device: str) -> None:
    """Describe every master of CACHE with the teacher into CACHE/teacher.npy."""
    import numpy as np
    from tqdm import tqdm

    from faceid.atomic import atomic_open
    from faceid.model.torch_runner import resolve_device
    from faceid.train.data import MASTERS, TEACHER
    from faceid.train.teacher import load_teacher
    from faceid.train.views import describe_masters

    path = cache / (MASTERS + ".npy")
    if not path.exists():
        raise click.ClickException(f"{cache} has no masters: prepare it with --master 200")
    masters = np.load(path, mmap_mode="r")
    device = resolve_device(device)
    teacher = load_teacher(device)
    out = np.concatenate(
        [
            describe_masters(teacher, masters[i : i + 1024], device, batch)
            for i in tqdm(range(0, len(masters), 1024), desc="teacher", unit="1024 faces")
        ]
    )
    with atomic_open(cache / TEACHER) as f:
        np.save(f, out)
    click.echo(f"{cache / TEACHER}: {len(out)} descriptors")


if __name__ == "__main__":
    main()
