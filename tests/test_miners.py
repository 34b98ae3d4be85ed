"""Miners on tiny hand-built embeddings whose right triplets are known."""

import torch

from faceid.train.miners import batch_all, batch_hard, semi_hard


def _points(*xs):
    """1-D positions as 2-D embeddings: squared distance = (xi - xj)^2."""
    return torch.tensor([[x, 0.0] for x in xs])


def test_batch_hard_picks_farthest_positive_and_closest_negative():
    # person 0 at 0.0, 0.1, 0.5; person 1 at 0.6, 1.0
    emb = _points(0.0, 0.1, 0.5, 0.6, 1.0)
    labels = torch.tensor([0, 0, 0, 1, 1])
    a, p, n = batch_hard(emb, labels)
    got = {int(i): (int(j), int(k)) for i, j, k in zip(a, p, n)}
    assert got[0] == (2, 3)  # farthest positive 0.5, closest negative 0.6
    assert got[2] == (0, 3)
    assert got[3] == (4, 2)
    assert got[4] == (3, 2)


def test_batch_hard_skips_anchors_without_a_positive():
    emb = _points(0.0, 0.1, 3.0)
    labels = torch.tensor([0, 0, 7])
    a, _, n = batch_hard(emb, labels)
    assert sorted(a.tolist()) == [0, 1]
    assert n.tolist() == [2, 2]


def test_semi_hard_keeps_negatives_beyond_the_positive_but_inside_the_margin():
    # anchor 0 at 0, positive at 0.3 (d=0.09); negatives at 0.4 (d=0.16) and 0.2 (d=0.04)
    emb = _points(0.0, 0.3, 0.4, 0.2)
    labels = torch.tensor([0, 0, 1, 2])
    a, p, n = semi_hard(emb, labels, margin=0.1)
    triplets = set(zip(a.tolist(), p.tolist(), n.tolist()))
    assert (0, 1, 2) in triplets  # 0.09 < 0.16 < 0.19
    assert all(k != 3 or i != 0 for i, _, k in triplets)  # 0.04 < d_ap: hard, not semi-hard


def test_semi_hard_returns_nothing_when_all_negatives_are_easy():
    emb = _points(0.0, 0.1, 5.0)
    labels = torch.tensor([0, 0, 1])
    a, _, _ = semi_hard(emb, labels, margin=0.2)
    assert len(a) == 0


def test_batch_all_returns_exactly_the_triplets_with_positive_loss():
    emb = _points(0.0, 0.3, 0.4, 3.0)
    labels = torch.tensor([0, 0, 1, 2])
    a, p, n = batch_all(emb, labels, margin=0.2)
    d = lambda i, j: (emb[i, 0] - emb[j, 0]) ** 2  # noqa: E731
    expected = {
        (i, j, k)
        for i in range(4)
        for j in range(4)
        for k in range(4)
        if i != j
        and labels[i] == labels[j]
        and labels[k] != labels[i]
        and d(i, j) - d(i, k) + 0.2 > 0
    }
    assert set(zip(a.tolist(), p.tolist(), n.tolist())) == expected
    assert (0, 1, 2) in expected and (0, 1, 3) not in expected


def test_miners_hold_no_gradient():
    emb = torch.randn(8, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    for miner in (batch_hard, semi_hard, batch_all):
        for t in miner(emb, labels):
            assert not t.requires_grad and t.dtype == torch.long
