"""Checkpoints that carry everything needed to use them, and prove their integrity.

A checkpoint holds the network config, preprocessing, weights, the calibrated
threshold and a model id derived from a digest of the weights. Galleries record
that id, so embeddings of different models are never mixed. Loading uses
`torch.load(weights_only=True)` (no pickle code execution) and recomputes the
digest, refusing files whose weights were altered.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from faceid.atomic import atomic_open
from faceid.errors import ModelError
from faceid.model.card import ModelCard

FORMAT = "faceid-checkpoint"
VERSION = 1
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "weights" / "default.pt"
_KNOWN = frozenset(
    {
        "format",
        "version",
        "config",
        "preprocess",
        "threshold",
        "identify_threshold",
        "digest",
        "meta",
        "state_dict",
    }
)


@dataclass
class Checkpoint:
    config: dict
    state_dict: dict
    threshold: float
    # Stricter, for identification: a stranger is compared with every enrolled
    # person, so the per-pair false-accept rate must be lower than for one-to-one
    # verification. Calibrated at FAR 1e-2 on validation people; None: `threshold`.
    identify_threshold: float | None = None
    preprocess: dict = field(default_factory=lambda: {"mean": [0.5] * 3, "std": [0.5] * 3})
    meta: dict = field(default_factory=dict)
    # Top-level payload keys this version does not know, kept so they survive a load and save
    # and travel into an ONNX export.
    extra: dict = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return weights_digest(self.state_dict)

    @property
    def model_id(self) -> str:
        return f"faceid-{self.digest[:12]}"

    def payload(self) -> dict:
        """Every field of the file except the weights (what an ONNX export carries)."""
        return {
            **self.extra,
            "format": FORMAT,
            "version": VERSION,
            "config": self.config,
            "preprocess": self.preprocess,
            "threshold": float(self.threshold),
            "identify_threshold": (
                None if self.identify_threshold is None else float(self.identify_threshold)
            ),
            "digest": self.digest,
            "meta": self.meta,
        }

    @property
    def card(self) -> ModelCard:
        return ModelCard(self.payload())


def weights_digest(state_dict: dict) -> str:
    """sha256 over names, shapes, dtypes and bytes of every tensor, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()


def half_weights(ckpt: Checkpoint) -> Checkpoint:
    """The checkpoint with its convolution and projection weights stored in float16.

    Those tensors are nearly all of the file, so it halves (the shipped model files share a
    25 MB budget, and a deeper network needs the room). The network still computes in
    float32: loading copies the values into float32 parameters, and the rounding moves an
    embedding by about 1e-4. Normalisation parameters and statistics stay float32 (a running
    variance can fall below float16's range). The weights' digest, and so the model id, is
    that of the stored float16 values; measure a half checkpoint, not its float32 source."""
    import torch

    state = {
        k: v.half() if v.dtype == torch.float32 and v.ndim > 1 else v
        for k, v in ckpt.state_dict.items()
    }
    return replace(ckpt, state_dict=state)


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write atomically; refuse to replace an existing file unless overwrite is set."""
    import torch

    path = Path(path)
    if path.exists() and not overwrite:
        raise ModelError(f"{path} exists: choose another file or pass overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **ckpt.payload(),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.state_dict.items()},
    }
    with atomic_open(path) as f:
        torch.save(payload, f)
    return path


def _check_container(path: Path) -> None:
    """Say in words what a file is when it is plainly not a checkpoint (torch's own errors
    for such files are things like "101", the byte it choked on)."""
    from faceid.imageio import image_format

    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ModelError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    if not head:
        raise ModelError(f"{path} is an empty file, not a faceid checkpoint")
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch's zip or pickle format
        return
    kind = image_format(head)
    what = f"a {kind} image" if kind else "not a PyTorch file"
    if kind is None and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        what = "a text file"
    raise ModelError(f"{path} is not a faceid checkpoint: it is {what}")


def load_checkpoint(path: str | os.PathLike | None = None) -> Checkpoint:
    """Load and verify a checkpoint; the default one ships inside the package."""
    import torch

    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_file():
        if path == DEFAULT_CHECKPOINT:
            raise ModelError(
                "no model is installed: the default checkpoint is missing; pass `model`",
                param="model",
            )
        raise ModelError(f"checkpoint not found: {path}")
    _check_container(path)
    if importlib.util.find_spec("torch") is None:
        raise ModelError(
            f"{path} is a torch checkpoint and torch is not installed: "
            "pip install 'faceid[train]', or use its ONNX export (scripts/export_onnx.py)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for corrupt or unsafe files
        text = str(exc)
        if "Weights only load failed" in text:
            reason = "it holds Python objects that are unsafe to load, so it is not one of ours"
        elif "zip archive" in text or "central directory" in text:
            reason = "its archive is truncated or corrupt (an interrupted copy?)"
        else:
            reason = f"torch could not load it ({type(exc).__name__})"
        raise ModelError(f"{path} is not a usable faceid checkpoint: {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not a faceid checkpoint")
    if payload.get("version") != VERSION:
        raise ModelError(
            f"{path} has checkpoint format version {payload.get('version')}, expected {VERSION}"
        )
    try:
        ckpt = Checkpoint(
            config=dict(payload["config"]),
            state_dict=dict(payload["state_dict"]),
            threshold=float(payload["threshold"]),
            identify_threshold=(
                None
                if payload.get("identify_threshold") is None
                else float(payload["identify_threshold"])
            ),
            preprocess=dict(payload["preprocess"]),
            meta=dict(payload.get("meta", {})),
            extra={k: v for k, v in payload.items() if k not in _KNOWN},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} is missing checkpoint fields: {exc}") from None
    if ckpt.digest != payload.get("digest"):
        raise ModelError(f"{path} does not match its recorded digest: the weights were altered")
    return ckpt
