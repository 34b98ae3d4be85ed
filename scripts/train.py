"""Train the faceid encoder with triplet loss on online-mined triplets.

The shipped default model was trained with (see README, "Training"):

    python scripts/train.py --cache cache/lfw-devtrain --out runs/default --epochs 40 \
        --miner batch-hard --distill 1.0

`--cache` is made by scripts/prepare_data.py from the people of
peopleDevTrain.txt only; a seeded 10% of them are held out for validation and
threshold calibration. Interrupted runs resume from OUT/last.pt.
"""

from __future__ import annotations

import json

import click

from faceid.train.miners import MINERS


@click.command()
@click.option("--cache", required=True, help="Folder made by scripts/prepare_data.py.")
@click.option(
    "--out",
    required=True,
    help="Run folder: last.pt, best.pt, final.pt, swa.pt, log.jsonl.",
)
@click.option("--epochs", default=30, show_default=True)
@click.option("--p", "p", default=32, show_default=True, help="Identities per batch.")
@click.option("--k", "k", default=4, show_default=True, help="Photos per identity.")
@click.option("--singles", default=32, show_default=True, help="One-photo people per batch.")
@click.option("--miner", type=click.Choice(sorted(MINERS)), default="batch-hard", show_default=True)
@click.option("--margin", default=0.2, show_default=True, help="Triplet margin alpha.")
@click.option(
    "--distill",
    default=0.0,
    show_default=True,
    help="Weight of distillation from dlib's descriptors (0 = triplet loss only).",
)
@click.option(
    "--teacher",
    type=click.Choice(["fixed", "online", "bank"]),
    default="fixed",
    show_default=True,
    help="fixed: dlib's stored descriptors of the plain crops; online: the torch re-implementation "
    "of dlib's network describes the very augmented views and blends the student sees "
    "(needs a cache prepared with --master); bank: such views and blends described once, "
    "from the cache's view bank (scripts/view_bank.py).",
)
@click.option(
    "--blends", default=32, show_default=True, help="Online, bank: two-person blends per batch."
)
@click.option(
    "--relational",
    default=1.0,
    show_default=True,
    help="Online, bank: weight of matching the teacher's raw in-batch distances.",
)
@click.option(
    "--bank",
    "banks",
    multiple=True,
    default=["bank"],
    show_default=True,
    help="Bank: a view bank of the cache to read (repeat to read several side by side).",
)
@click.option("--lr", default=2e-3, show_default=True)
@click.option("--input-size", default=64, show_default=True)
@click.option("--widths", default="32,64,128,256", show_default=True)
@click.option(
    "--head",
    type=click.Choice(["flatten", "gdc"]),
    default="flatten",
    show_default=True,
    help="flatten the last map, or a global depthwise convolution (MobileFaceNet).",
)
@click.option("--act", type=click.Choice(["relu", "prelu"]), default="relu", show_default=True)
@click.option("--blocks", default="1,2,2,1", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--select",
    type=click.Choice(["auto", "auc", "tar1e-3", "openset"]),
    default="auto",
    show_default=True,
    help="Best-epoch criterion: validation ROC AUC, TAR at FAR 1e-3, or the open-set FNIR at "
    "FPIR 1 % for 500 people (auto: open-set when the rows have it, else AUC).",
)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", default=0, help="torch CPU threads (0 = torch's default).")
@click.option(
    "--precision",
    type=click.Choice(["auto", "bf16", "fp32"]),
    default="auto",
    show_default=True,
    help="bfloat16 autocast for the forward pass (auto: on a GPU or CPU with native "
    "bfloat16, Ampere on or AVX512-BF16/AMX, where it trains about twice as fast).",
)
@click.option("--fresh", is_flag=True, help="Ignore OUT/last.pt instead of resuming.")
@click.option("--init", default=None, help="Start from this checkpoint's weights (warm restart).")
@click.option(
    "--minutes",
    default=0.0,
    help="Wall-clock budget: after every epoch, --epochs is set to what fits "
    "(0 = train exactly --epochs).",
)
@click.option(
    "--average-last",
    default=0,
    show_default=True,
    help="Also write OUT/swa.pt: the mean of the weights of the schedule's last N epochs, "
    "or up to N/4 more when the schedule moves (--minutes, a longer --epochs on resume; "
    "stochastic weight averaging), calibrated on the validation people like an epoch.",
)
def main(
    cache,
    out,
    epochs,
    p,
    k,
    singles,
    miner,
    margin,
    distill,
    teacher,
    blends,
    relational,
    banks,
    lr,
    input_size,
    widths,
    head,
    act,
    blocks,
    seed,
    select,
    device,
    threads,
    precision,
    fresh,
    init,
    minutes,
    average_last,
):
    from faceid.model.net import NetConfig
    from faceid.train.loop import TrainConfig, train

    net = NetConfig(
        input_size=input_size,
        widths=tuple(int(w) for w in widths.split(",")),
        blocks=tuple(int(b) for b in blocks.split(",")),
        head=head,
        act=act,
    )
    cfg = TrainConfig(
        cache=cache,
        out=out,
        epochs=epochs,
        p=p,
        k=k,
        singles=singles,
        miner=miner,
        margin=margin,
        distill=distill,
        teacher=teacher,
        blends=blends,
        relational=relational,
        banks=list(banks),
        lr=lr,
        seed=seed,
        select=select,
        device=device,
        threads=threads,
        precision=precision,
        net=net.to_dict(),
        init=init,
        minutes=minutes,
        average_last=average_last,
    )
    best = train(cfg, resume=not fresh)
    click.echo(json.dumps(best, indent=1))


if __name__ == "__main__":
    main()
