"""Compare training runs from their logs: a markdown table and a plot against wall clock.

    python scripts/compare_runs.py runs/eq-fixed runs/eq-online --plot reports/runs.png
    python scripts/compare_runs.py runs/a runs/b --epochs 40   # over the epochs both have

Each run's best epoch is the one `scripts/train.py` kept (`--select auto`); beside it, the
mean of its last epochs, steadier than any single epoch on a hundred validation people.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--last", default=5, show_default=True, help="Epochs in the closing mean.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="PNG to draw.")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Only each run's first N epochs: runs of unequal length (one stopped, one still "
    "going) compared over the span they share.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def main(
    runs: tuple[Path, ...], last: int, plot: Path | None, epochs: int | None, as_json: bool
) -> None:
    """Summarise each run's log.jsonl (best epoch, last epochs) and optionally plot them."""
    from faceid.train.runs import METRICS, plot_runs, read_log, summarise

    logs = {
        run.name if run.is_dir() else run.parent.name: [
            row for row in read_log(run) if epochs is None or row["epoch"] <= epochs
        ]
        for run in runs
    }
    table = {name: summarise(rows, last) for name, rows in logs.items()}
    if plot is not None:
        plot_runs(logs, plot)
    if as_json:
        click.echo(json.dumps(table, indent=1))
        return
    heads = [m.removeprefix("val_") for m in METRICS]
    click.echo(
        "| run | epochs | minutes | photos/s | "
        + " | ".join(f"{h}: best epoch / last {last}" for h in heads)
        + " |"
    )
    click.echo("|---" * (4 + len(heads)) + "|")
    for name, s in table.items():
        nan = float("nan")
        cells = [
            f"{s.get(f'{m}_best_epoch', nan):.3f} / {s.get(f'{m}_last{last}', nan):.3f}"
            for m in METRICS
        ]
        click.echo(
            f"| {name} | {s['epochs']} (best {s['best_epoch']}) | {s['seconds'] / 60:.0f} | "
            f"{s['images_per_s']:.0f} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
