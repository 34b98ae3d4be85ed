"""The shipped encoder on its own: unit embeddings, batching, and its one preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceid.detect import DlibHOGDetector
from faceid.distance import pairwise_squared_l2, squared_l2
from faceid.model.encoder import Encoder
from faceid.model.net import normalize
from faceid.pipeline import crop_photo

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder.load(device="cpu")


@pytest.fixture(scope="module")
def crops(encoder: Encoder) -> np.ndarray:
    detector = DlibHOGDetector()
    paths = sorted((EXAMPLES / "people").glob("*/*.jpg"))
    return np.stack([crop_photo(p, detector, encoder.input_size).crop for p in paths])


def test_embeddings_are_unit_vectors_of_the_models_dimension(encoder, crops) -> None:
    emb = encoder.embed(crops)
    assert emb.shape == (len(crops), 128) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_a_batch_gives_what_one_at_a_time_gives(encoder, crops) -> None:
    together = encoder.embed(crops)
    alone = np.concatenate([encoder.embed(c[None]) for c in crops])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_two_photos_of_one_person_are_closer_than_two_people(encoder, crops) -> None:
    emb = encoder.embed(crops)  # Alvaro Uribe x2, Amelie Mauresmo x2, Carlos Moya x2
    d = pairwise_squared_l2(emb, emb)
    assert d[0, 1] < d[0, 2] and d[2, 3] < d[2, 4] and d[4, 5] < d[0, 4]


def test_wrongly_shaped_crops_are_refused(encoder) -> None:
    with pytest.raises(ValueError, match="crops"):
        encoder.embed(np.zeros((1, 10, 10, 3), np.uint8))


def test_normalize_maps_pixels_to_minus_one_to_one_by_default() -> None:
    pixels = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert normalize(pixels).flatten().tolist() == [-1.0, 0.0, 1.0]
    custom = normalize(pixels, {"mean": [0.0] * 3, "std": [0.5] * 3})
    assert custom.flatten().tolist() == [0.0, 1.0, 2.0]


def test_squared_l2_agrees_for_numpy_and_torch_and_pairwise() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 8)), rng.normal(size=(3, 8))
    full = squared_l2(a[:, None, :], b[None, :, :])
    np.testing.assert_allclose(pairwise_squared_l2(a, b), full, atol=1e-9)
    np.testing.assert_allclose(
        squared_l2(torch.from_numpy(a[:3]), torch.from_numpy(b)).numpy(), full[[0, 1, 2], [0, 1, 2]]
    )
