"""What a model is, apart from its weights: the checkpoint's whole non-weight payload.

Both inference backends read the same card: the torch one from a `.pt` checkpoint, the
ONNX one from the JSON metadata an export writes into the `.onnx` file. The card keeps
the payload as it was (config, preprocessing, thresholds, `meta` and any key added to
checkpoints later), so a new field reaches the ONNX path without code changes here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelCard:
    """A model's settings and identity; `payload` is every non-weight checkpoint field."""

    payload: dict = field(default_factory=dict)

    @property
    def config(self) -> dict:
        return dict(self.payload["config"])

    @property
    def preprocess(self) -> dict:
        return dict(self.payload.get("preprocess") or {"mean": [0.5] * 3, "std": [0.5] * 3})

    @property
    def threshold(self) -> float:
        return float(self.payload["threshold"])

    @property
    def identify_threshold(self) -> float | None:
        t = self.payload.get("identify_threshold")
        return None if t is None else float(t)

    @property
    def meta(self) -> dict:
        return dict(self.payload.get("meta") or {})

    @property
    def digest(self) -> str:
        return str(self.payload["digest"])

    @property
    def model_id(self) -> str:
        """Derived from the weights' digest, so a re-export of the same weights keeps it."""
        return f"faceid-{self.digest[:12]}"

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    @property
    def embedding_dim(self) -> int:
        return int(self.config.get("embedding_dim", 128))
