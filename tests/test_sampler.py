"""P x K batch composition."""

import numpy as np
import pytest

from faceid.train.sampler import PKSampler


def test_each_batch_has_p_people_with_k_photos_plus_singles():
    labels = np.repeat(np.arange(20), 3)
    labels = np.concatenate([labels, np.arange(100, 110)])  # ten one-photo people
    s = PKSampler(labels, p=4, k=2, singles=3, seed=1)
    batches = list(s)
    assert len(batches) == len(s) == 5
    for b in batches:
        counts = np.bincount(labels[b])
        multi = counts[counts > 0]
        assert sorted(multi.tolist()) == [1, 1, 1, 2, 2, 2, 2]


def test_an_epoch_covers_every_multi_photo_person_once():
    labels = np.repeat(np.arange(12), 2)
    seen = np.concatenate([np.unique(labels[b]) for b in PKSampler(labels, p=4, k=2)])
    assert sorted(seen.tolist()) == list(range(12))


def test_people_with_fewer_photos_than_k_are_repeated_not_dropped():
    labels = np.repeat(np.arange(4), 2)
    b = next(iter(PKSampler(labels, p=4, k=3)))
    assert len(b) == 12 and set(labels[b]) == {0, 1, 2, 3}


def test_too_few_people_is_refused():
    with pytest.raises(ValueError):
        PKSampler(np.array([0, 0, 1]), p=2, k=2)
