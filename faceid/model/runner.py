"""The inference backend protocol: a batch of uint8 crops in, unit embeddings out.

Two implementations, one file each: `onnx_runner` (onnxruntime, the default: no torch to
import, small to install) and `torch_runner` (checkpoints, training's own evaluation and
the GPU). `open_model` picks one from the file's suffix and the device asked for.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from faceid.errors import ModelError, UsageError
from faceid.model.card import ModelCard

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_ONNX = WEIGHTS / "default.onnx"
DEFAULT_PT = WEIGHTS / "default.pt"


class Runner(Protocol):
    """One loaded model that embeds crops; the Encoder batches and validates around it."""

    card: ModelCard
    device: str

    def run(self, crops: np.ndarray, threads: int | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N, D) float32 unit vectors (flip averaged when
        the card's preprocess says so). threads: CPU threads for this call, 0 or None: the
        backend's own choice."""
        ...


def gpu_present() -> bool:
    """An NVIDIA driver is loaded: checked without importing torch (which costs seconds)."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def open_model(path: str | os.PathLike | None = None, device: str = "auto") -> Runner:
    """The runner for a model file: `.onnx` on onnxruntime, anything else as a torch checkpoint.

    No path: the shipped model, as ONNX on the CPU; with device 'cuda' (or 'auto' on a
    machine with an NVIDIA GPU and torch installed) the shipped checkpoint on torch instead,
    which has the same weights and model id.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"unknown `device` {device!r}: use auto, cpu or cuda", param="device")
    if path is None:
        wants_gpu = device == "cuda" or (device == "auto" and gpu_present() and torch_installed())
        if wants_gpu and DEFAULT_PT.is_file():
            path = DEFAULT_PT
        elif DEFAULT_ONNX.is_file():
            path = DEFAULT_ONNX
        elif DEFAULT_PT.is_file():
            path = DEFAULT_PT
        else:
            raise ModelError("no model is installed: the shipped model files are missing")
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if device == "cuda":
            raise UsageError(
                "`device` 'cuda' runs torch checkpoints: pass a .pt `model`, or `device` 'cpu'",
                param=("device", "model"),
            )
        from faceid.model.onnx_runner import OnnxRunner

        return OnnxRunner(path)
    from faceid.model.torch_runner import TorchRunner

    return TorchRunner.load(path, device)
