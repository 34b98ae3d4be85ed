"""Triplet and distillation losses on values computed by hand."""

import pytest
import torch

from faceid.train.losses import DistillationLoss, TripletLoss


def test_triplet_loss_matches_hand_computed_hinge():
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.4, 0.0], [2.0, 0.0]])
    triplets = (torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([2, 3]))
    loss, active = TripletLoss(margin=0.2)(emb, triplets)
    # (0.09 - 0.16 + 0.2) = 0.13 and max(0.09 - 4 + 0.2, 0) = 0
    assert loss.item() == pytest.approx(0.13 / 2)
    assert active == 0.5


def test_triplet_loss_of_no_triplets_is_zero_and_keeps_the_graph():
    emb = torch.randn(3, 2, requires_grad=True)
    empty = (torch.tensor([], dtype=torch.long),) * 3
    loss, active = TripletLoss()(emb, empty)
    loss.backward()
    assert loss.item() == 0 and active == 0.0


def test_triplet_loss_gradient_pulls_positive_in_and_pushes_negative_out():
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.4, 0.0]], requires_grad=True)
    loss, _ = TripletLoss(0.2)(emb, (torch.tensor([0]), torch.tensor([1]), torch.tensor([2])))
    loss.backward()
    # gradient descent steps against the gradient:
    assert emb.grad[1, 0] > 0  # the positive (at +0.3) moves towards the anchor at 0
    assert emb.grad[2, 0] < 0  # the negative (at +0.4) moves away from it


def test_distillation_targets_are_centred_then_normalised():
    teacher = torch.tensor([[1.0, 0.1], [1.0, -0.1]])
    dl = DistillationLoss(teacher.mean(0))
    t = dl.targets(teacher)
    assert torch.allclose(t, torch.tensor([[0.0, 1.0], [0.0, -1.0]]))
    assert dl(t, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert dl(-t, teacher).item() == pytest.approx(4.0)
