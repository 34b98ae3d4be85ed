"""Encoder: crops in, unit embeddings out, batched, on whichever backend the model file needs.

`Encoder.load` opens `.onnx` files on onnxruntime (the default: no torch import) and `.pt`
checkpoints on torch (see `faceid.model.runner`); both give the same embeddings and model id.
"""

from __future__ import annotations

import os

import numpy as np

from faceid.model.card import ModelCard
from faceid.model.runner import Runner, open_model

# Below this many crops the CPU encoder runs on one thread. A 64 px network at batch 1 gains
# little from intra-op threads, and when the other cores are busy (detection workers, another
# job) their OpenMP spin-waits turn a ~4 ms forward pass into hundreds of milliseconds.
SMALL_BATCH = 8


class Encoder:
    """A loaded model ready for inference, whatever runs it."""

    def __init__(self, runner: Runner, batch_size: int = 64) -> None:
        self.runner = runner
        self.card: ModelCard = runner.card
        self.device = runner.device
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str = "auto") -> Encoder:
        return cls(open_model(path, device))

    @property
    def checkpoint(self):
        """The torch Checkpoint behind a `.pt` model (None for an ONNX one)."""
        return getattr(self.runner, "checkpoint", None)

    @property
    def net(self):
        """The torch network (torch backend only)."""
        return self.runner.net  # type: ignore[attr-defined]

    @property
    def backend(self) -> str:
        return "torch" if self.checkpoint is not None else "onnx"

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def embedding_dim(self) -> int:
        return self.card.embedding_dim

    @property
    def preprocess(self) -> dict:
        return self.card.preprocess

    @property
    def model_id(self) -> str:
        return self.card.model_id

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def identify_threshold(self) -> float:
        t = self.card.identify_threshold
        return self.card.threshold if t is None else t

    @property
    def openset(self) -> dict | None:
        """The open-set calibration (see faceid.openset), or None for older checkpoints."""
        return self.card.meta.get("openset")

    def embed(self, crops: np.ndarray, threads: int | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N, D) float32 unit vectors.

        threads: CPU threads for this call; None picks one for small batches (SMALL_BATCH)
        and leaves the backend's setting otherwise.
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"expected (N, {self.input_size}, {self.input_size}, 3) crops, got {crops.shape}"
            )
        out = np.empty((len(crops), self.embedding_dim), np.float32)
        if threads is None:
            threads = 1 if len(crops) < SMALL_BATCH else 0
        for i in range(0, len(crops), self.batch_size):
            batch = crops[i : i + self.batch_size]
            out[i : i + len(batch)] = self.runner.run(batch, threads)
        return out
