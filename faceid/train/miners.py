"""Online triplet mining on one batch.

Miners look at the batch's pairwise distances and return index triplets
(anchor, positive, negative) as LongTensors. They run without gradients: the
loss recomputes distances for the chosen triplets, so mining never leaks into
backpropagation. Anchors without a positive in the batch (people with one photo)
still serve as negatives for everyone else.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from faceid.train.distances import SquaredL2

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


@torch.no_grad()
def batch_hard(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    distance: SquaredL2 | None = None,
) -> Triplets:
    """Per anchor: its farthest positive and its closest negative (Hermans et al. 2017)."""
    dist = (distance or SquaredL2()).pairwise(embeddings.detach().float())
    pos, neg = _masks(labels)
    valid = pos.any(1) & neg.any(1)
    hardest_p = dist.masked_fill(~pos, float("-inf")).argmax(1)
    hardest_n = dist.masked_fill(~neg, float("inf")).argmin(1)
    anchors = valid.nonzero().flatten()
    return anchors, hardest_p[anchors], hardest_n[anchors]


@torch.no_grad()
def semi_hard(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    distance: SquaredL2 | None = None,
) -> Triplets:
    """Per (anchor, positive): the closest negative farther than the positive but within
    the margin (FaceNet). Pairs with no such negative give no triplet."""
    dist = (distance or SquaredL2()).pairwise(embeddings.detach().float())
    pos, neg = _masks(labels)
    a, p = pos.nonzero(as_tuple=True)
    d_ap = dist[a, p][:, None]
    d_an = dist[a]
    ok = neg[a] & (d_an > d_ap) & (d_an < d_ap + margin)
    has = ok.any(1)
    n = d_an.masked_fill(~ok, float("inf")).argmin(1)
    return a[has], p[has], n[has]


@torch.no_grad()
def batch_all(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    distance: SquaredL2 | None = None,
) -> Triplets:
    """Every valid triplet whose loss is not zero."""
    dist = (distance or SquaredL2()).pairwise(embeddings.detach().float())
    pos, neg = _masks(labels)
    loss = dist[:, :, None] - dist[:, None, :] + margin  # [a, p, n]
    ok = pos[:, :, None] & neg[:, None, :] & (loss > 0)
    a, p, n = ok.nonzero(as_tuple=True)
    return a, p, n


MINERS: dict[str, Callable[..., Triplets]] = {
    "batch-hard": batch_hard,
    "semi-hard": semi_hard,
    "batch-all": batch_all,
}
