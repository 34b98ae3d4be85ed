"""Export a checkpoint to ONNX for the torch-free inference path.

    python scripts/export_onnx.py          # the shipped model: default.pt -> default.onnx
    python scripts/export_onnx.py --model runs/x/best.pt -o x.onnx

Whoever ships a new faceid/weights/default.pt re-runs the first line: a test refuses a
default.onnx whose model id is not default.pt's. Needs the `train` extra (torch, onnx).
"""

from __future__ import annotations

from pathlib import Path

import click

WEIGHTS = Path(__file__).resolve().parents[1] / "faceid" / "weights"


@click.command()
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=WEIGHTS / "default.pt",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The .onnx to write [the checkpoint's name with .onnx].",
)
def main(model: Path, output: Path | None) -> None:
    """Write the ONNX export of a checkpoint and check it against torch on random crops."""
    import numpy as np

    from faceid.model.encoder import Encoder
    from faceid.model.export import export_onnx

    output = output or model.with_suffix(".onnx")
    card = export_onnx(model, output)
    onnx_enc, torch_enc = Encoder.load(output, "cpu"), Encoder.load(model, "cpu")
    size = card.input_size
    crops = np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    diff = float(np.abs(onnx_enc.embed(crops) - torch_enc.embed(crops)).max())
    click.echo(
        f"{output}: {card.model_id}, {output.stat().st_size / 1e6:.1f} MB, "
        f"max |onnx - torch| on random crops {diff:.2e}"
    )
    if onnx_enc.model_id != torch_enc.model_id or diff > 1e-4:
        raise click.ClickException("the export does not reproduce the checkpoint")


if __name__ == "__main__":
    main()
