"""Do two `faceid evaluate` reports give the same figures? (e.g. the ONNX and the torch model)

    faceid evaluate pairs --pairs ../shared/data/lfw/pairsDevTest.txt --root ../shared/data/lfw \\
        --model faceid/weights/default.onnx --device cpu --no-cache --out reports/pairs-onnx
    faceid evaluate pairs --pairs ../shared/data/lfw/pairsDevTest.txt --root ../shared/data/lfw \\
        --model faceid/weights/default.pt --device cpu --no-cache --out reports/pairs-torch
    python scripts/compare_reports.py reports/pairs-onnx/report.json reports/pairs-torch/report.json

Every number of the two reports is compared, except what describes the run rather than the
model's result (timings, dates, paths, cache use). `--no-cache` matters: both models have the
same model id, so the embedding cache would otherwise hand the second run the first's vectors.
Exit 0 when every figure agrees to --decimals places.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

SKIP = {"timings", "created", "out", "path", "cache", "plots", "pairs_file", "root", "device"}


def numbers(data: object, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf, keyed by its path, skipping what describes the run."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            if key not in SKIP:
                out.update(numbers(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.update(numbers(value, f"{prefix}[{i}]"))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix] = float(data)
    return out


@click.command()
@click.argument("first", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("second", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--decimals", default=4, show_default=True)
def main(first: Path, second: Path, decimals: int) -> None:
    """Compare every figure of two report.json files."""
    a, b = (numbers(json.loads(p.read_text())) for p in (first, second))
    if set(a) != set(b):
        raise click.ClickException(f"the reports differ in shape: {sorted(set(a) ^ set(b))[:5]}")
    differ = {k: (a[k], b[k]) for k in a if round(a[k], decimals) != round(b[k], decimals)}
    worst = max((abs(a[k] - b[k]) for k in a), default=0.0)
    click.echo(
        f"{len(a)} figures compared; largest difference {worst:.2e}; "
        f"{len(differ)} differ at {decimals} decimals"
    )
    for key, (x, y) in sorted(differ.items())[:20]:
        click.echo(f"  {key}: {x} vs {y}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
