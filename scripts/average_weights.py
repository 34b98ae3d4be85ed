"""Average the weights of checkpoints of one network (a model soup) and calibrate the result.

    python scripts/average_weights.py --cache cache/lfw-devtrain-96m -o soup.pt \
        runs/c9-banks2/final.pt runs/c10-banks3/final.pt

The average is a new model: its verification thresholds and open-set calibration are
measured on the cache's validation people (training's seeded split), and it is judged
like any epoch, with scripts/validate.py, before it is shipped. Needs the `train` extra.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument(
    "models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--cache", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--val-share", default=0.1, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
def main(
    models: tuple[Path, ...], cache: Path, output: Path, val_share: float, seed: int, force: bool
) -> None:
    """Write the average of MODELS' weights, with thresholds measured on validation people."""
    from faceid.errors import ModelError
    from faceid.model.checkpoint import save_checkpoint
    from faceid.train.soup import average_checkpoints

    if len(models) < 2:
        raise click.UsageError("give two or more checkpoints to average")
    if output.exists() and not force:
        raise click.UsageError(f"{output} exists: choose another file or pass --force")
    try:
        ckpt, row = average_checkpoints(models, cache, val_share=val_share, seed=seed)
    except (ValueError, ModelError) as exc:
        raise click.ClickException(str(exc)) from None
    save_checkpoint(ckpt, output, overwrite=force)
    click.echo(json.dumps({"wrote": str(output), "model_id": ckpt.model_id, **row}, indent=1))


if __name__ == "__main__":
    main()
