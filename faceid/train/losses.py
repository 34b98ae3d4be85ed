"""Losses over mined triplets, and the distillation term.

The triplet loss is FaceNet's max(d(a,p) - d(a,n) + margin, 0) on squared L2
between unit embeddings. It consumes whatever index triplets a miner chose and
reports the share of them still active (non-zero): when that share falls
towards zero the miner has run out of informative triplets.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from faceid.distance import squared_l2
from faceid.train.distances import SquaredL2


class TripletLoss(nn.Module):
    def __init__(self, margin: float = 0.2, distance: SquaredL2 | None = None) -> None:
        super().__init__()
        self.margin = margin
        self.distance = distance or SquaredL2()

    def forward(self, embeddings: torch.Tensor, triplets) -> tuple[torch.Tensor, float]:
        """Mean loss over the given triplets and the share of them with non-zero loss."""
        a, p, n = triplets
        if len(a) == 0:
            return embeddings.sum() * 0.0, 0.0
        d_ap = self.distance.paired(embeddings[a], embeddings[p])
        d_an = self.distance.paired(embeddings[a], embeddings[n])
        losses = F.relu(d_ap - d_an + self.margin)
        return losses.mean(), float((losses > 0).float().mean())


class DistillationLoss(nn.Module):
    """Pull the student's embedding towards the teacher's, in the teacher's centred space.

    dlib's descriptors crowd into a narrow cone (their mean has norm ~0.9), so raw
    targets would let the student collapse; centring on the training mean and
    re-normalising spreads them over the sphere first.
    """

    def __init__(self, teacher_mean: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", teacher_mean.float())

    def targets(self, teacher: torch.Tensor) -> torch.Tensor:
        return F.normalize(teacher.float() - self.mean, dim=1)

    def forward(self, embeddings: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return squared_l2(embeddings.float(), self.targets(teacher)).mean()


class RelationalDistillLoss(nn.Module):
    """Match the batch's student distances to the teacher's raw ones, hard impostors first.

    Centring dlib's descriptors (needed for the regression target) costs the teacher
    accuracy; its raw pairwise distances keep the full signal. Each side's squared
    distances are taken in units of its own mean over the batch (the student's scale is
    set by the triplet margin), compared with a smooth L1, and pairs the teacher calls
    different people (beyond `teacher_threshold`, dlib's 0.6 squared) that the student
    puts close get up to `1 + hard_weight` times the weight: those decide identification.
    """

    def __init__(
        self,
        teacher_threshold: float = 0.36,
        hard_weight: float = 4.0,
        temperature: float = 0.5,
        distance: SquaredL2 | None = None,
    ) -> None:
        super().__init__()
        self.teacher_threshold = teacher_threshold
        self.hard_weight = hard_weight
        self.temperature = temperature
        self.distance = distance or SquaredL2()

    def forward(self, embeddings: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        n = len(embeddings)
        off = ~torch.eye(n, dtype=torch.bool, device=embeddings.device)
        d_s = self.distance.pairwise(embeddings.float())[off]
        d_t = self.distance.pairwise(teacher.float())[off]
        weight = 1 + self.hard_weight * (
            (d_t > self.teacher_threshold) * torch.exp(-d_s.detach() / self.temperature)
        )
        loss = F.smooth_l1_loss(d_s / d_s.mean(), d_t / d_t.mean(), reduction="none", beta=0.1)
        return (weight * loss).sum() / weight.sum()
