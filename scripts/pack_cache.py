"""Pack a prepared training cache into JPEG crops, small enough to carry to a GPU machine.

    python scripts/pack_cache.py cache/lfw-devtrain-96 cache/lfw-devtrain-96-packed
    # for --teacher online: WebP masters and the teacher's file, crops cut on loading
    python scripts/pack_cache.py cache/lfw-devtrain-96m cache/lfw-devtrain-96m-packed --masters 80

The packed folder trains exactly like the original (`scripts/train.py --cache FOLDER`); it
needs Pillow to read, not dlib, so a machine with torch alone can train from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--quality", default=95, show_default=True, type=click.IntRange(50, 100))
@click.option(
    "--masters",
    "masters_quality",
    type=click.IntRange(50, 100),
    default=None,
    help="Pack the masters as WebP at this quality (and dlib's network file) instead of "
    "the crops: a cache for --teacher online.",
)
def main(src: Path, dst: Path, quality: int, masters_quality: int | None) -> None:
    from faceid.train.data import pack_cache

    summary = pack_cache(src, dst, quality=quality, masters_quality=masters_quality)
    click.echo(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
