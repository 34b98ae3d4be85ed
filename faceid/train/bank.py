"""A view bank: many augmented views and blends of every training photo, each described
once by the teacher, read by training like the crop cache.

Consistent distillation (faceid/train/views.py) asks the teacher about exactly the image
the student sees. Online, on a CPU, that costs as much as the student's own step and
halves the epochs a run can afford. The bank pays the teacher once: `views` views of
each photo (the first plain, the others through the same photometric and pose
augmentation as online training) and `blends` two-person blends per photo, stored as
student crops (uint8) with the teacher's descriptor of each. Training then draws one
stored view per photo per step (`--teacher bank`) at the cost of the fixed-target recipe.

Layout, in CACHE/bank/ (git-ignored with the cache): views.u8.npy (entries, V, S, S, 3)
and view_targets.npy (entries, V, 128), indexed by the cache's entries; blends.u8.npy
(M, S, S, 3), blend_targets.npy (M, 128) and blend_parents.npy (M, 2) entry indices, so
training can keep only the blends of people it trains on; bank.json says how it was made.
A cache can hold several banks (CACHE/bank-s1/, ...: other seeds, other views of the same
photos); a run reads the ones it names as one bank with their views side by side, so a
later cycle sees new views without losing those it has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from faceid.train.data import FaceCache

BANK = "bank"
VIEWS, VIEW_TARGETS = "views.u8.npy", "view_targets.npy"
BLENDS, BLEND_TARGETS, BLEND_PARENTS = "blends.u8.npy", "blend_targets.npy", "blend_parents.npy"
META = "bank.json"


def build_bank(
    data: FaceCache,
    out: Path,
    teacher: torch.nn.Module,
    *,
    views: int = 8,
    blends: int = 1,
    batch: int = 64,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Write a bank for a loaded cache with masters, indexed by its entries.

    Blends pair two different people drawn from one shuffled batch, so they span the
    whole cache; training drops those with a parent outside its training people.
    """
    from tqdm import tqdm

    from faceid.atomic import atomic_open
    from faceid.train.views import blend, make_views, photometric, to_float, to_u8

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)  # a bank being rewritten is not a bank yet
    n = int(data.entries.max()) + 1  # entries past the last usable one are never read
    crop_size = data.crops.shape[1]
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    view_px = np.lib.format.open_memmap(
        out / VIEWS, "w+", np.uint8, (n, views, crop_size, crop_size, 3)
    )
    view_t = np.zeros((n, views, 128), np.float32)
    order = rng.permutation(len(data.labels))
    blend_px, blend_t, parents = [], [], []

    def describe(chips: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return torch.cat([teacher(c.to(device)) for c in chips.split(batch)]).float().cpu()

    for start in tqdm(range(0, len(order), batch), desc="bank", unit="batch", disable=not progress):
        rows = np.sort(order[start : start + batch])
        at = data.entries[rows]
        m = to_float(data.masters[rows])
        maps = data.student_maps[rows]
        for v in range(views):
            if v == 0:  # the plain view: the inference crop and its fixed target
                crops, chips = make_views(m, maps, crop_size, jitter=False)
            else:
                crops, chips = make_views(
                    photometric(m.clone(), generator=gen), maps, crop_size, generator=gen
                )
            view_px[at, v] = to_u8(crops)
            view_t[at, v] = describe(chips).numpy()
        if blends and np.unique(data.labels[rows]).size >= 2:
            mixed, first, second = blend(m, data.labels[rows], blends * len(rows), rng)
            crops, chips = make_views(
                photometric(mixed, generator=gen), maps[first], crop_size, generator=gen
            )
            blend_px.append(to_u8(crops))
            blend_t.append(describe(chips).numpy())
            parents.append(np.stack([at[first], at[second]], 1))
    view_px.flush()
    del view_px
    with atomic_open(out / VIEW_TARGETS) as f:
        np.save(f, view_t)
    shape = (0, crop_size, crop_size, 3)
    np.save(out / BLENDS, np.concatenate(blend_px) if blend_px else np.zeros(shape, np.uint8))
    np.save(out / BLEND_TARGETS, np.concatenate(blend_t) if blend_t else np.zeros((0, 128)))
    np.save(out / BLEND_PARENTS, np.concatenate(parents) if parents else np.zeros((0, 2), int))
    meta = {
        "entries": int(n),
        "usable": int(len(data.labels)),
        "views": views,
        "blends_per_photo": blends,
        "blends": int(sum(len(p) for p in parents)),
        "crop_size": crop_size,
        "seed": seed,
    }
    (out / META).write_text(json.dumps(meta, indent=1))  # last: a bank without it is partial
    return meta


@dataclass
class ViewBank:
    """The views of the loaded cache rows in one or more banks, and the blends among the
    given people.

    views: per bank, (entries, V_b, S, S, 3) memory-mapped, read at `entries[row]`;
    targets (rows, sum V_b, 128), the banks' views side by side; blend arrays hold only
    the blends whose both parents are among `keep` (the training rows), of all banks.
    """

    views: list[np.ndarray]
    entries: np.ndarray
    targets: np.ndarray
    blends: np.ndarray
    blend_targets: np.ndarray

    @classmethod
    def load(
        cls, cache: Path, entries: np.ndarray, keep: np.ndarray, names: tuple[str, ...] = (BANK,)
    ) -> ViewBank:
        """entries: the cache entry of each loaded row; keep: the rows training may use;
        names: the bank folders of the cache to read (scripts/view_bank.py --name)."""
        entries = np.asarray(entries)
        views, targets, blends, blend_targets = [], [], [], []
        for name in names:
            folder = Path(cache) / name
            if not (folder / META).exists():
                raise FileNotFoundError(
                    f"{cache} has no view bank {name!r}: make one with "
                    f"scripts/view_bank.py --cache {cache} --name {name}"
                )
            views.append(np.load(folder / VIEWS, mmap_mode="r"))
            targets.append(np.asarray(np.load(folder / VIEW_TARGETS, mmap_mode="r")[entries]))
            parents = np.load(folder / BLEND_PARENTS)
            allowed = np.isin(parents, entries[keep]).all(1)
            blends.append(np.load(folder / BLENDS, mmap_mode="r")[allowed])
            blend_targets.append(np.load(folder / BLEND_TARGETS)[allowed].astype(np.float32))
        if len({v.shape[2:] for v in views}) > 1:
            raise ValueError(f"the banks {', '.join(names)} hold crops of different sizes")
        return cls(
            views=views,
            entries=entries,
            targets=np.concatenate(targets, axis=1),
            blends=np.ascontiguousarray(np.concatenate(blends)),
            blend_targets=np.concatenate(blend_targets),
        )

    def draw(
        self, rows: np.ndarray, n_blends: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, torch.Tensor]:
        """One random stored view per row, then `n_blends` random blends: crops and targets."""
        v = rng.integers(0, self.targets.shape[1], len(rows))
        crops = np.empty((len(rows), *self.views[0].shape[2:]), np.uint8)
        first = 0
        for views in self.views:  # reads just the drawn views off the disk, bank by bank
            here = (v >= first) & (v < first + views.shape[1])
            crops[here] = views[self.entries[rows[here]], v[here] - first]
            first += views.shape[1]
        targets = self.targets[rows, v]
        if n_blends and len(self.blends):
            pick = np.sort(rng.choice(len(self.blends), min(n_blends, len(self.blends)), False))
            crops = np.concatenate([crops, self.blends[pick]])
            targets = np.concatenate([targets, self.blend_targets[pick]])
        return crops, torch.from_numpy(np.ascontiguousarray(targets))
