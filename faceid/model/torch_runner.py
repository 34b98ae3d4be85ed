"""Inference on torch: checkpoints (`.pt`), training's own evaluation, and the GPU."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from faceid.errors import ModelError, UsageError
from faceid.model.card import ModelCard
from faceid.model.checkpoint import Checkpoint, load_checkpoint


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
        raise UsageError(
            "`device` 'cuda' was asked for but no CUDA GPU is available", param="device"
        )
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown `device` {device!r}: use auto, cpu or cuda", param="device")
    return device


class TorchRunner:
    """A checkpoint's network on torch, preprocessing from uint8 as the ONNX graph does."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto") -> None:

        from faceid.model.net import FaceNet, NetConfig

        self.checkpoint = checkpoint
        self.card: ModelCard = checkpoint.card
        self.device = resolve_device(device)
        try:
            self.config = NetConfig.from_dict(checkpoint.config)
            net = FaceNet(self.config)
            net.load_state_dict(checkpoint.state_dict)
        except (TypeError, KeyError, RuntimeError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"checkpoint does not fit the network: {reason}") from None
        self.net = net.eval().to(self.device)
        self._preprocess = checkpoint.preprocess
        self._flip = bool(self._preprocess.get("flip"))

    @classmethod
    def load(cls, path: str | os.PathLike | None, device: str = "auto") -> TorchRunner:
        return cls(load_checkpoint(path), device)

    def run(self, crops: np.ndarray, threads: int | None = None) -> np.ndarray:
        import torch

        from faceid.model.net import normalize

        with torch.inference_mode(), cpu_threads((threads or 0) if self.device == "cpu" else 0):
            x = torch.from_numpy(np.ascontiguousarray(crops))
            pixels = x.to(self.device).permute(0, 3, 1, 2).float() / 255
            x = normalize(pixels, self._preprocess)
            return self.net.embed(x, flip=self._flip).float().cpu().numpy()
