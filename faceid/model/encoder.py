"""Encoder: crops in, unit embeddings out, batched, on the best device present."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from faceid.errors import ModelError, UsageError
from faceid.model.checkpoint import Checkpoint, load_checkpoint

# Below this many crops the CPU encoder runs on one thread. A 64 px network at batch 1 gains
# little from intra-op threads, and when the other cores are busy (detection workers, another
# job) their OpenMP spin-waits turn a ~4 ms forward pass into hundreds of milliseconds.
SMALL_BATCH = 8


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run torch's CPU ops on n threads for the block (0: leave the setting alone)."""
    import torch

    before = torch.get_num_threads()
    if not n or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str = "auto") -> str:
    """'auto' picks CUDA when a GPU is present, else the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


class Encoder:
    """A loaded checkpoint ready for inference."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto", batch_size: int = 64) -> None:
        import torch

        from faceid.model.net import FaceNet, NetConfig

        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.batch_size = batch_size
        try:
            self.config = NetConfig.from_dict(checkpoint.config)
            net = FaceNet(self.config)
            net.load_state_dict(checkpoint.state_dict)
        except (TypeError, KeyError, RuntimeError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"checkpoint does not fit the network: {reason}") from None
        self.net = net.eval().to(self.device)
        pre = checkpoint.preprocess
        self._mean = torch.tensor(pre["mean"], device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(pre["std"], device=self.device).view(1, 3, 1, 1) * 255

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str = "auto") -> Encoder:
        return cls(load_checkpoint(path), device)

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def model_id(self) -> str:
        return self.checkpoint.model_id

    @property
    def threshold(self) -> float:
        return self.checkpoint.threshold

    @property
    def identify_threshold(self) -> float:
        t = self.checkpoint.identify_threshold
        return self.checkpoint.threshold if t is None else t

    @property
    def openset(self) -> dict | None:
        """The open-set calibration (see faceid.openset), or None for older checkpoints."""
        return self.checkpoint.meta.get("openset")

    def embed(self, crops: np.ndarray, threads: int | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N, D) float32 unit vectors.

        threads: CPU threads for this call; None picks one for small batches (SMALL_BATCH)
        and leaves torch's setting otherwise.
        """
        import torch

        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"expected (N, {self.input_size}, {self.input_size}, 3) crops, got {crops.shape}"
            )
        out = np.empty((len(crops), self.config.embedding_dim), np.float32)
        if threads is None:
            threads = 1 if len(crops) < SMALL_BATCH else 0
        with torch.inference_mode(), cpu_threads(threads if self.device == "cpu" else 0):
            for i in range(0, len(crops), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(crops[i : i + self.batch_size]))
                x = (x.to(self.device).permute(0, 3, 1, 2).float() - self._mean) / self._std
                emb = self.net.embed(x, flip=bool(self.checkpoint.preprocess.get("flip")))
                out[i : i + len(x)] = emb.float().cpu().numpy()
        return out
