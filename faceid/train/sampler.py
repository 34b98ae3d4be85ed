"""P identities x K photos per batch, so every anchor has positives to mine.

Only people with at least two photos serve as anchors and positives; a few
one-photo people per batch (`singles`) add negatives the miners can use.
People with fewer than K photos are drawn with replacement: augmentation makes
the repeats different views.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class PKSampler:
    def __init__(
        self, labels: np.ndarray, p: int = 32, k: int = 4, singles: int = 0, seed: int = 0
    ) -> None:
        labels = np.asarray(labels)
        self.p, self.k, self.singles = p, k, singles
        self.rng = np.random.default_rng(seed)
        by_label: dict[int, list[int]] = {}
        for i, lab in enumerate(labels):
            by_label.setdefault(int(lab), []).append(i)
        self.groups = [np.array(v) for v in by_label.values() if len(v) >= 2]
        self.single_idx = np.array([v[0] for v in by_label.values() if len(v) == 1], np.int64)
        if len(self.groups) < p:
            raise ValueError(f"need at least {p} people with 2+ photos, have {len(self.groups)}")

    def __len__(self) -> int:
        return len(self.groups) // self.p

    def __iter__(self) -> Iterator[np.ndarray]:
        """One epoch: every multi-photo person appears in exactly one batch."""
        order = self.rng.permutation(len(self.groups))
        for b in range(len(self)):
            batch = []
            for g in order[b * self.p : (b + 1) * self.p]:
                members = self.groups[g]
                batch.append(self.rng.choice(members, self.k, replace=len(members) < self.k))
            if self.singles and len(self.single_idx):
                batch.append(
                    self.rng.choice(
                        self.single_idx, min(self.singles, len(self.single_idx)), replace=False
                    )
                )
            yield np.concatenate(batch)
