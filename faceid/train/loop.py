"""The training loop: P x K batches, augmentation, online mining, triplet loss
(plus optional distillation), warm-up and cosine schedule, a checkpoint every
epoch, resume, validation on held-out people, the best model kept, and optionally the
average of the last epochs' weights.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from faceid.atomic import atomic_open
from faceid.distance import pairwise_squared_l2, squared_l2
from faceid.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from faceid.model.net import PREPROCESS, FaceNet, NetConfig, normalize
from faceid.train.augment import augment
from faceid.train.bank import BANK
from faceid.train.data import FaceCache
from faceid.train.losses import DistillationLoss, RelationalDistillLoss, TripletLoss
from faceid.train.miners import MINERS
from faceid.train.runs import OPENSET_PEOPLE, SELECT, is_better
from faceid.train.sampler import PKSampler


@dataclass
class TrainConfig:
    cache: str
    out: str
    epochs: int = 30
    p: int = 32
    k: int = 4
    singles: int = 32
    miner: str = "batch-hard"
    margin: float = 0.2
    distill: float = 0.0
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    val_share: float = 0.1
    select: str = "auto"  # best-epoch criterion: see SELECT
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    people: list[str] | None = None
    init: str | None = None  # start from this checkpoint's weights (a warm restart)
    # "fixed": dlib's descriptors stored in the cache, computed once on the plain crop;
    # "online": the torch teacher describes the very view the student sees (consistent
    # distillation, needs a cache prepared with masters; see faceid/train/views.py);
    # "bank": the same consistent views and blends, described once and stored in the
    # cache's view bank (faceid/train/bank.py), at the cost of fixed targets.
    teacher: str = "fixed"
    blends: int = 32  # online, bank: two-person blends per batch, taught by the teacher alone
    relational: float = 1.0  # online, bank: weight of the batch-distance term
    banks: list[str] = field(default_factory=lambda: [BANK])  # bank: the cache's banks to read
    teacher_batch: int = 64
    minutes: float = 0.0  # > 0: fit `epochs` to this wall-clock budget (see epochs_within)
    precision: str = "auto"  # "bf16", "fp32", or "auto": see autocast_bf16
    # > 0: also write swa.pt, the mean of the weights of the schedule's last N epochs
    # (stochastic weight averaging), its BatchNorm statistics measured again on training views
    average_last: int = 0
    net: dict = field(default_factory=lambda: NetConfig().to_dict())


def split_people(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a seeded share of the multi-photo people: validation never sees trained faces."""
    counts = np.bincount(labels)
    multi = np.flatnonzero(counts >= 2)
    rng = np.random.default_rng(seed)
    val_people = rng.choice(multi, max(2, int(round(len(multi) * share))), replace=False)
    is_val = np.isin(labels, val_people)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def validation_pairs(labels: np.ndarray, seed: int, max_same_per_person: int = 10):
    """All same-person pairs (capped per person) and as many different-person pairs."""
    rng = np.random.default_rng(seed)
    same = []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        pairs = [(a, b) for i, a in enumerate(idx) for b in idx[i + 1 :]]
        rng.shuffle(pairs)
        same += pairs[:max_same_per_person]
    diff = []
    while len(diff) < len(same):
        a, b = rng.integers(0, len(labels), 2)
        if labels[a] != labels[b]:
            diff.append((a, b))
    pairs = np.array(same + diff)
    return pairs, np.array([True] * len(same) + [False] * len(diff))


def to_input(crops: np.ndarray, device: str) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]."""
    return (
        torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float() / 255
    )


def embed(net: FaceNet, crops: np.ndarray, device: str, batch: int = 256) -> np.ndarray:
    """Validation embeddings exactly as the shipped Encoder computes them (flip averaged)."""
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = normalize(to_input(crops[i : i + batch], device))
            out.append(net.embed(x, flip=True).float().cpu())
    return torch.cat(out).numpy()


def pair_distances(net: FaceNet, crops: np.ndarray, pairs: np.ndarray, device: str) -> np.ndarray:
    """Squared L2 between the embeddings of each (i, j) pair of crops."""
    emb = embed(net, crops, device)
    return squared_l2(emb[pairs[:, 0]], emb[pairs[:, 1]])


OPENSET_MIN_PEOPLE = 3
"""Fewer validation people than this cannot make a gallery with strangers to calibrate on."""


def openset_figures(emb: np.ndarray, labels: np.ndarray, *, draws: int = 64) -> tuple[dict, dict]:
    """Open-set figures of held-out people, and the calibration they come from.

    rank-1: the first photo of each person enrolled, the others searched for. FNIR at
    FPIR 1 %: the share of enrolled people's photos not named right at the threshold that
    names 1 % of strangers, for a gallery of OPENSET_PEOPLE (estimated by faceid.openset
    from galleries drawn among these people, extrapolated in log N past their number).
    """
    from faceid import openset
    from faceid.evaluate import metrics

    cal = openset.calibrate_embeddings(emb, labels, draws=draws)
    first = np.unique(labels, return_index=True)[1]
    probes = np.setdiff1d(np.arange(labels.size), first)
    dist = pairwise_squared_l2(emb[probes], emb[first])
    ranks = metrics.true_ranks(dist, labels[probes], labels[first])
    rule = openset.rule_for(cal, OPENSET_PEOPLE, 0.01)
    figures = {
        "val_rank1": float(np.mean(ranks == 1)),
        "val_openset_people": int(first.size),
        f"val_threshold_fpir1e-2_n{OPENSET_PEOPLE}": float(rule.threshold),
        SELECT["openset"][0]: float(rule.fnir),
    }
    return figures, cal


def validate(
    net: FaceNet,
    crops: np.ndarray,
    pairs: np.ndarray,
    same: np.ndarray,
    device: str,
    labels: np.ndarray | None = None,
) -> tuple[dict, dict | None]:
    """Verification figures on the validation pairs; with labels, open-set figures too, and
    the open-set calibration they come from (None without), which a checkpoint of these
    weights stores as it is rather than embedding the crops again."""
    from faceid.evaluate import metrics

    emb = embed(net, crops, device)
    dist = squared_l2(emb[pairs[:, 0]], emb[pairs[:, 1]])
    threshold, acc = metrics.best_threshold(dist, same)
    tar, _ = metrics.tar_at_far(dist, same, 1e-2)
    row = {
        "val_accuracy": float(acc),
        "val_threshold": float(threshold),
        "val_threshold_far1e-2": float(metrics.threshold_at_far(dist, same, 1e-2)),
        "val_auc": float(metrics.roc_auc(dist, same)),
        "val_tar_far1e-2": float(tar),
        # 1e-3 is below a validation set's resolution unless it has 1,000+ impostor pairs:
        # see val_far_resolution.
        "val_tar_far1e-3": float(metrics.tar_at_far(dist, same, 1e-3)[0]),
        "val_far_resolution": 1.0 / max(1, int((~same).sum())),
        # Pairs are listed same-first: interleave folds so each holds both kinds.
        "val_kfold_accuracy": float(
            metrics.kfold_accuracy(dist, same, np.arange(len(same)) % 10)["mean"]
        ),
    }
    cal = None
    if labels is not None and np.unique(labels).size >= OPENSET_MIN_PEOPLE:
        figures, cal = openset_figures(emb, labels)
        row.update(figures)
    return row, cal


def lr_at(step: float, total: float, warmup: float, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1.0, total - warmup)))


def epochs_within(budget_s: float, spent_s: float, done: int, epoch_s: float) -> int:
    """Epochs a run can complete in its budget: those done plus the ones the rest fits.

    For a run with a hard time limit (a lent GPU gives 10 minutes a command): the schedule is
    stretched over what will actually be trained, rather than cut off midway through.
    """
    return max(done, done + int((budget_s - spent_s) // max(epoch_s, 1e-9)))


def average_is_stale(first: int, epochs: int, last_n: int) -> bool:
    """Whether a running average begun at epoch `first` (1-based) now reaches back more than a
    quarter past the last `last_n` epochs of an `epochs`-long schedule.

    Under a time budget the schedule is re-estimated every epoch, and a slow stretch early on
    (a busy machine) can make it look short enough to open the window far too soon; resuming
    with a longer --epochs does the same. Such an average would hold early, high-rate weights,
    so it is begun again. The quarter's slack keeps the usual one-epoch drift of the estimate
    from restarting it again and again: the average then covers the last `last_n` epochs,
    or up to a quarter more.
    """
    return first < epochs - last_n + 1 - max(1, last_n // 4)


def autocast_bf16(precision: str, device: str) -> bool:
    """Whether training runs its forward pass under bfloat16 autocast.

    "auto" says yes on a device with native bfloat16 arithmetic (a GPU from Ampere on, a CPU
    with AVX512-BF16 or AMX; see `native_bf16`): on such a CPU oneDNN's bfloat16 convolutions
    train this network twice as fast as float32 (342 photos/s against 169 on two EPYC cores
    with AVX512-BF16, README "Training"), while the weights, optimizer and losses stay
    float32. A CPU or an older GPU without it emulates bfloat16 (on the CPU an order of
    magnitude slower than float32), so "auto" keeps float32 there.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}: use auto, bf16 or fp32")
    if precision != "auto":
        return precision == "bf16"
    return native_bf16(device)


def native_bf16(device: str) -> bool:
    """Whether `device` computes bfloat16 natively: GPUs from Ampere on (compute capability 8;
    older ones emulate it, as torch's `including_emulation` says), and CPUs with AVX512-BF16
    or AMX tiles."""
    if device == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def train(cfg: TrainConfig, *, resume: bool = True, progress: bool = True) -> dict:
    """Train into cfg.out (last.pt, best.pt, final.pt, log.jsonl); returns the best row.

    best.pt is the epoch chosen by `cfg.select`, final.pt the last epoch's weights (written
    at the end, and again by running a finished run's command once more); with
    `cfg.average_last`, swa.pt the average of the last epochs' weights.
    """
    from tqdm import tqdm

    from faceid.model.torch_runner import resolve_device

    started = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    data = FaceCache.load(Path(cfg.cache), cfg.people)
    train_idx, val_idx = split_people(data.labels, cfg.val_share, cfg.seed)
    val_crops = data.crops[val_idx]
    val_pairs, val_same = validation_pairs(data.labels[val_idx], cfg.seed)
    sampler = PKSampler(data.labels[train_idx], cfg.p, cfg.k, cfg.singles, cfg.seed)

    net_cfg = NetConfig.from_dict(cfg.net)
    net = FaceNet(net_cfg)
    if cfg.init:
        init = load_checkpoint(cfg.init)
        _warm_start(net, init.state_dict, init.config.get("blocks"))
    net = net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    miner = MINERS[cfg.miner]
    triplet_loss = TripletLoss(cfg.margin)
    distill = teacher = relational = bank = None
    if cfg.teacher == "bank":
        from faceid.train.bank import ViewBank

        bank = ViewBank.load(Path(cfg.cache), data.entries, train_idx, tuple(cfg.banks))
        teacher_mean = torch.from_numpy(bank.targets[train_idx, 0].mean(0))  # the plain views
        distill = DistillationLoss(teacher_mean).to(device)
        relational = RelationalDistillLoss()
    elif cfg.teacher == "online":
        if data.masters is None:
            raise ValueError("an online teacher needs a cache prepared with masters")
        from faceid.train.data import teacher_weights
        from faceid.train.teacher import load_teacher

        teacher = load_teacher(device, teacher_weights(Path(cfg.cache)))
        teacher_mean = _teacher_mean(teacher, data, train_idx, cfg, device)
        distill = DistillationLoss(teacher_mean).to(device)
        relational = RelationalDistillLoss()
    elif cfg.distill > 0:
        if data.teacher is None:
            raise ValueError("`distill` needs a cache prepared with teacher descriptors")
        teacher_mean = torch.from_numpy(data.teacher[train_idx].mean(0))
        distill = DistillationLoss(teacher_mean).to(device)
    blend_rng = np.random.default_rng(cfg.seed + 1)

    def inputs(
        idx: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch as training sees it: its views (then blends drawn with `rng`), and their
        teacher targets."""
        if teacher is not None:
            return _consistent_views(data, idx, cfg, teacher, rng, device)
        if bank is not None:
            crops, targets = bank.draw(idx, cfg.blends, rng)
            return to_input(crops, device), targets
        x = augment(to_input(data.crops[idx], device))
        return x, None if data.teacher is None else torch.from_numpy(data.teacher[idx])

    # parameters only: the average's BatchNorm statistics are measured again at the end
    averaged = AveragedModel(net, use_buffers=False) if cfg.average_last > 0 else None
    use_amp = autocast_bf16(cfg.precision, device)
    if use_amp and not native_bf16(device):
        # measured on two AVX2-only EPYC (Zen 3) cores: 63 s a step against 5 s in float32
        kind, native = ("GPU", "Ampere on") if device == "cuda" else ("CPU", "AVX512-BF16 or AMX")
        print(
            f"warning: this {kind} has no native bfloat16 ({native}): precision bf16 is "
            "emulated here (on a CPU about 12x slower than float32); precision auto picks float32",
            file=sys.stderr,
        )
    # bfloat16 keeps float32's range: no loss scaling is needed on either device

    start_epoch, best, elapsed, spent_before = 0, None, 0.0, 0.0
    window_from = 0  # the first epoch in the running average
    last = out / "last.pt"
    if resume and last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sampler.rng = np.random.default_rng(cfg.seed + state["epoch"])
        start_epoch, best, elapsed = state["epoch"], state.get("best"), state.get("elapsed", 0.0)
        if averaged is not None and "averaged" in state:
            averaged.load_state_dict(state["averaged"])
            window_from = state.get("averaged_from", start_epoch - int(averaged.n_averaged) + 1)
        if cfg.minutes > 0 and "epochs" in state:  # the budget's schedule, not --epochs
            cfg.epochs = state["epochs"]
        # a resumed budget counts the wall clock already spent (validation and saving too)
        spent_before = state.get("wall", elapsed)
    epoch_seconds: list[float] = []
    row = cal = None  # the last epoch's row and calibration, once this call has trained one

    steps_per_epoch = len(sampler)
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    log = (out / "log.jsonl").open("a")
    epoch = start_epoch
    while epoch < cfg.epochs:
        if (
            averaged is not None
            and averaged.n_averaged > 0
            and average_is_stale(window_from, cfg.epochs, cfg.average_last)
        ):
            averaged = AveragedModel(net, use_buffers=False)
        t0 = time.time()
        net.train()
        sums = {
            "loss": 0.0,
            "triplet": 0.0,
            "distill": 0.0,
            "relational": 0.0,
            "active": 0.0,
            "triplets": 0,
        }
        bar = tqdm(
            sampler,
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        for step, batch in enumerate(bar):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + step, total, warmup, cfg.lr)
            idx = train_idx[batch]
            x, targets = inputs(idx, blend_rng)
            labels = torch.from_numpy(data.labels[idx]).to(device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_amp):
                emb_all = net(normalize(x)).float()
            emb = emb_all[: len(idx)]  # blends have no identity: distillation only
            triplets = miner(emb, labels, cfg.margin)
            t_loss, active = triplet_loss(emb, triplets)
            loss = t_loss
            d_loss = r_loss = torch.zeros(())
            if distill is not None:
                d_loss = distill(emb_all, targets.to(device))
                loss = loss + cfg.distill * d_loss
            if relational is not None and cfg.relational > 0:
                r_loss = relational(emb_all, targets.to(device))
                loss = loss + cfg.relational * r_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["loss"] += float(loss.detach())
            sums["triplet"] += float(t_loss.detach())
            sums["distill"] += float(d_loss.detach())
            sums["relational"] += float(r_loss.detach())
            sums["active"] += active
            sums["triplets"] += len(triplets[0])
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", active=f"{active:.2f}")
        elapsed += time.time() - t0
        row = {k: v / steps_per_epoch for k, v in sums.items()}
        row.update(
            epoch=epoch + 1,
            lr=opt.param_groups[0]["lr"],
            seconds=round(elapsed, 1),
            images_per_s=round(steps_per_epoch * len(batch) / (time.time() - t0), 1),
        )
        figures, cal = validate(net, val_crops, val_pairs, val_same, device, data.labels[val_idx])
        row.update(figures)
        if averaged is not None and epoch + 1 > cfg.epochs - cfg.average_last:
            if averaged.n_averaged == 0:
                window_from = epoch + 1
            averaged.update_parameters(net)
            row["averaged_epochs"] = int(averaged.n_averaged)
        if is_better(row, best, cfg.select):
            best = row
            _export(net, cfg, row, out / "best.pt", cal)
        log.write(json.dumps(row) + "\n")
        log.flush()
        if progress:
            tqdm.write(
                json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
            )
        with atomic_open(last) as f:  # resume point: never half-written
            torch.save(
                {
                    "state_dict": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "epoch": epoch + 1,
                    "best": best,
                    "elapsed": elapsed,
                    "wall": spent_before + time.time() - started,
                    "epochs": cfg.epochs,
                }
                | (
                    {}
                    if averaged is None
                    else {"averaged": averaged.state_dict(), "averaged_from": window_from}
                ),
                f,
            )
        epoch += 1
        epoch_seconds.append(time.time() - t0)
        if cfg.minutes > 0:
            # Re-estimated after every epoch from the median of the last few, so a run that
            # slows down (a busier machine, the page cache) still ends within its budget and
            # one slow epoch moves nothing; the cosine schedule follows the new total smoothly.
            cfg.epochs = epochs_within(
                cfg.minutes * 60,
                spent_before + time.time() - started,
                epoch,
                float(np.median(epoch_seconds[-5:])),
            )
            total = cfg.epochs * steps_per_epoch
    log.close()
    if epoch > 0:
        # The schedule's end beside the selected epoch: on a few hundred validation people the
        # selection figure is noisy, and a lucky epoch at a high learning rate can win it.
        if row is None:  # a finished run's command run again: its last epoch, validated now
            row, cal = validate(net, val_crops, val_pairs, val_same, device, data.labels[val_idx])
            row["epoch"] = epoch
        _export(net, cfg, row, out / "final.pt", cal)
    if averaged is not None and int(averaged.n_averaged) > 0:
        # Batches drawn from fresh seeds, not from where training left its generators: the
        # command of a finished run, run again, then writes the very same swa.pt.
        torch.manual_seed(cfg.seed)
        fresh = PKSampler(data.labels[train_idx], cfg.p, cfg.k, cfg.singles, cfg.seed)
        fresh_rng = np.random.default_rng(cfg.seed + 1)
        swa = _measured_average(averaged, fresh, fresh_rng, train_idx, inputs, device)
        row, cal = validate(swa, val_crops, val_pairs, val_same, device, data.labels[val_idx])
        row.update(epoch=epoch, averaged_epochs=int(averaged.n_averaged))
        _export(swa, cfg, row, out / "swa.pt", cal)
    return best


def _measured_average(
    averaged: AveragedModel,
    sampler: PKSampler,
    rng: np.random.Generator,
    train_idx: np.ndarray,
    inputs: Callable[[np.ndarray, np.random.Generator], tuple[torch.Tensor, torch.Tensor | None]],
    device: str,
) -> FaceNet:
    """The averaged network with BatchNorm statistics of its own, measured over one epoch of
    training batches: the running statistics of the averaged epochs belong to their own
    weights, not to the mean of them (Izmailov et al. 2018, torch's `update_bn`)."""
    swa = averaged.module
    update_bn((normalize(inputs(train_idx[b], rng)[0]) for b in sampler), swa, device)  # no_grad
    return swa


def _warm_start(net: FaceNet, state: dict, blocks: Sequence[int] | None = None) -> None:
    """Load a checkpoint's weights; a network of another shape (a new head or activation)
    takes every tensor whose name and shape match, and says what starts fresh.

    A deeper network (more blocks per stage than the checkpoint's `blocks`) takes each
    stage's trained blocks in order and starts its added blocks as the identity (see
    `_deepened`): it computes what the checkpoint computed, and training goes on from there
    with the added depth, instead of from scratch (Net2DeeperNet, Chen et al. 2016).

    A flatten head trained at another input size is not thrown away: its projection is a
    weight per channel and map position, and the same aligned face at another size gives
    the same positions on a finer or coarser grid, so the weights are resampled onto the
    new grid (see `resample_flatten_head`) instead of starting fresh."""
    added: list[int] = []
    if blocks is not None and tuple(blocks) != tuple(net.config.blocks):
        state, added = _deepened(state, tuple(blocks), tuple(net.config.blocks))
    own = net.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    key = "head.3.weight"  # the flatten head's Linear (net._flatten_head)
    if net.config.head == "flatten" and key in state and key in own and key not in fits:
        channels = net.config.widths[-1]
        side = net.config.input_size // 2 ** len(net.config.widths)
        resampled = resample_flatten_head(state[key], channels, side)
        if resampled is not None and resampled.shape == own[key].shape:
            fits[key] = resampled
            print(f"warm start: {key} resampled onto the {side}x{side} map", file=sys.stderr)
    fresh = sorted(set(own) - set(fits))
    net.load_state_dict(fits, strict=False)
    for i in added:
        _as_identity(net.body[i])
    if added:
        print(f"warm start: blocks {added} added as the identity", file=sys.stderr)
        fresh = [k for k in fresh if not any(k.startswith(f"body.{i}.") for i in added)]
    if fresh:
        print(
            f"warm start: {len(fits)} tensors loaded, {len(fresh)} start fresh ({fresh[0]}, ...)",
            file=sys.stderr,
        )


def _deepened(
    state: dict, source: tuple[int, ...], target: tuple[int, ...]
) -> tuple[dict, list[int]]:
    """A checkpoint's weights renamed for a network with `target` blocks per stage: stage s's
    j-th trained block becomes the new network's j-th block of stage s (its down-sampling
    first block stays first). Returns the renamed weights and the indices of the blocks that
    have no trained counterpart; a shallower target drops each stage's last blocks."""
    renamed = {k: v for k, v in state.items() if not k.startswith("body.")}
    added, src, dst = [], 0, 0
    for have, want in zip(source, target):
        for j in range(want):
            if j < have:
                old, new = f"body.{src + j}.", f"body.{dst + j}."
                renamed |= {new + k[len(old) :]: v for k, v in state.items() if k.startswith(old)}
            elif j > 0:  # a stage's first block down-samples: never the identity
                added.append(dst + j)
        src, dst = src + have, dst + want
    return renamed, added


def _as_identity(block: torch.nn.Module) -> None:
    """Make a residual block without a shortcut projection compute its input unchanged: its
    branch's last BatchNorm scales to zero, and a PReLU after the sum gets slope 1 (a ReLU
    passes the sum as it is, since the block's input is itself a ReLU's output). The zero
    scale still has a gradient, so the branch starts learning at the first step (the
    zero-init residual of Goyal et al. 2017)."""
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
        if block.act2 is not None:
            block.act2.weight.fill_(1.0)


def resample_flatten_head(weight: torch.Tensor, channels: int, side: int) -> torch.Tensor | None:
    """A flatten head's (D, C*s*s) projection -> (D, C*side*side) for another input size.

    Bilinear over the map (cell centres aligned, as the maps of one aligned face at two
    sizes are), scaled by s^2 / side^2 so that a map of the same values gives the same
    output from more or fewer positions. None when the weight is not a C x s x s grid.
    """
    d, n = weight.shape
    s = math.isqrt(n // channels) if n % channels == 0 else 0
    if s == 0 or channels * s * s != n:
        return None
    grid = weight.float().reshape(d, channels, s, s)
    out = torch.nn.functional.interpolate(
        grid, size=(side, side), mode="bilinear", align_corners=False
    )
    return (out * (s * s) / (side * side)).reshape(d, channels * side * side).to(weight.dtype)


def _consistent_views(
    data: FaceCache,
    idx: np.ndarray,
    cfg: TrainConfig,
    teacher: torch.nn.Module,
    rng: np.random.Generator,
    device: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's crops and the teacher's answers about exactly those images.

    The batch's masters get `cfg.blends` two-person blends appended, are augmented
    once, and both views are cut from the same augmented masters.
    """
    from faceid.train.views import blend, make_views, photometric, to_float

    masters = to_float(data.masters[idx]).to(device)
    maps = data.student_maps[idx]
    if cfg.blends:
        mixed, parent, _ = blend(masters, data.labels[idx], cfg.blends, rng)
        masters, maps = torch.cat([masters, mixed]), np.concatenate([maps, maps[parent]])
    crops, chips = make_views(photometric(masters), maps, NetConfig.from_dict(cfg.net).input_size)
    with torch.inference_mode():
        targets = torch.cat([teacher(c) for c in chips.split(cfg.teacher_batch)])
    return crops, targets.clone()


def _teacher_mean(
    teacher: torch.nn.Module, data: FaceCache, train_idx: np.ndarray, cfg: TrainConfig, device: str
) -> torch.Tensor:
    """The teacher's mean descriptor over (up to 2,000 of) the training photos, un-augmented.

    Centring on it spreads dlib's narrow cone of descriptors over the sphere, so the
    regression target cannot collapse the student.
    """
    from faceid.train.views import describe_masters

    rows = np.sort(np.random.default_rng(cfg.seed).permutation(train_idx)[:2000])
    return torch.from_numpy(
        describe_masters(teacher, data.masters[rows], device, cfg.teacher_batch).mean(0)
    )


def held_out_calibration(openset: dict) -> dict:
    """A validation calibration as a checkpoint stores it, its source naming the people."""
    source = openset["source"] | {"people_from": "the training run's validation people (held out)"}
    return openset | {"source": source}


def _export(
    net: FaceNet,
    cfg: TrainConfig,
    row: dict,
    path: Path,
    openset: dict | None = None,
) -> None:
    """A self-contained inference checkpoint, calibrated on validation people: the
    verification thresholds, and (when validation had people enough) the open-set
    calibration identify uses to choose its threshold for a gallery's size
    (meta["openset"]): `validate`'s own, so the stored rule is the one the row reports."""
    meta = {"train_config": asdict(cfg) | {"people": None}, "validation": row}
    if openset is not None:
        meta["openset"] = held_out_calibration(openset)
    ckpt = Checkpoint(
        config=NetConfig.from_dict(cfg.net).to_dict(),
        state_dict={k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        threshold=row["val_threshold"],
        identify_threshold=row["val_threshold_far1e-2"],
        preprocess=dict(PREPROCESS),
        meta=meta,
    )
    save_checkpoint(ckpt, path, overwrite=True)
    load_checkpoint(path)  # refuse to leave a checkpoint that does not read back
