"""Inference on ONNX Runtime: the shipped model without torch (fast to start, small to install).

The `.onnx` file is made by `faceid.model.export` from a checkpoint: its graph takes uint8
crops and does the preprocessing and flip averaging itself, and its metadata carries the
checkpoint's whole non-weight payload (see `faceid.model.card`), model id included.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from faceid.errors import ModelError
from faceid.model.card import ModelCard

METADATA_KEY = "faceid"
INPUT, OUTPUT = "crops", "embeddings"


def session_options(threads: int = 0):
    """No spin-waiting: with detection workers on every core, spinning threads stall them."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class OnnxRunner:
    """An exported faceid model on onnxruntime's CPU provider."""

    device = "cpu"
    checkpoint = None  # no torch checkpoint behind this one

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("onnxruntime is not installed: pip install onnxruntime") from None
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model not found: {os.fsdecode(path)}")
        try:
            self._session = ort.InferenceSession(
                os.fspath(path), session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception kinds
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"cannot read model {os.fsdecode(path)}: {reason}") from None
        text = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is None:
            raise ModelError(f"{os.fsdecode(path)} is an ONNX file but not a faceid model export")
        try:
            self.card = ModelCard(json.loads(text))
            size = self.card.input_size
            _ = self.card.digest, self.card.threshold
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{os.fsdecode(path)} has unreadable faceid metadata: {exc}") from None
        shape = self._session.get_inputs()[0].shape
        if list(shape[1:]) != [size, size, 3]:
            raise ModelError(
                f"{os.fsdecode(path)}: its graph takes {shape}, its metadata says {size} px crops"
            )

    def run(self, crops: np.ndarray, threads: int | None = None) -> np.ndarray:
        # threads: onnxruntime fixes its pool per session; the pool does not spin, so a small
        # batch costs the busy cores nothing, which is what the torch runner's cap is for.
        out = self._session.run([OUTPUT], {INPUT: np.ascontiguousarray(crops, dtype=np.uint8)})
        return np.asarray(out[0], dtype=np.float32)
