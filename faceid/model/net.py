"""The encoder network: a compact ResNet whose head gives an L2-normalised embedding.

Faces are aligned, so position carries meaning: the default head flattens the final
feature map (instead of global average pooling) before projecting to 128-d; the
"gdc" head (MobileFaceNet's global depthwise convolution) keeps a learned weight per
position and channel for far fewer parameters. Activations are ReLU or PReLU.
Everything that shapes the network is in `NetConfig`, which checkpoints store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

# How pixels become the network's input; checkpoints record it (Checkpoint.preprocess).
PREPROCESS: dict = {"mean": [0.5] * 3, "std": [0.5] * 3, "flip": True}


def normalize(pixels: torch.Tensor, preprocess: dict | None = None) -> torch.Tensor:
    """NCHW pixels in [0, 1] -> the network's input, (x - mean) / std per channel.

    The one place this is written: training, validation and the Encoder all call it, so
    the network always sees what it was trained on.
    """
    pre = PREPROCESS if preprocess is None else preprocess
    mean = torch.as_tensor(pre["mean"], dtype=pixels.dtype, device=pixels.device)
    std = torch.as_tensor(pre["std"], dtype=pixels.dtype, device=pixels.device)
    return (pixels - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


@dataclass(frozen=True)
class NetConfig:
    input_size: int = 64
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 2, 2, 1)
    embedding_dim: int = 128
    dropout: float = 0.2
    extra: dict = field(default_factory=dict)
    head: str = "flatten"  # "flatten" | "gdc" (see HEADS)
    act: str = "relu"  # "relu" | "prelu"

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}: use one of {', '.join(HEADS)}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"unknown act {self.act!r}: use one of {', '.join(ACTIVATIONS)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["blocks"] = list(self.widths), list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        d = dict(d)
        d["widths"], d["blocks"] = tuple(d["widths"]), tuple(d["blocks"])
        return cls(**d)


def _activation(kind: str, channels: int) -> nn.Module:
    """ReLU, or PReLU with one learned slope per channel (ArcFace / MobileFaceNet's choice)."""
    return nn.PReLU(channels) if kind == "prelu" else nn.ReLU(inplace=True)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, act: str = "relu") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        # ReLU stays functional, so the default network's state_dict keys never change
        self.act1 = self.act2 = None
        if act == "prelu":
            self.act1, self.act2 = nn.PReLU(cout), nn.PReLU(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x))
        out = F.relu(out) if self.act1 is None else self.act1(out)
        out = self.bn2(self.conv2(out)) + (x if self.short is None else self.short(x))
        return F.relu(out) if self.act2 is None else self.act2(out)


def _flatten_head(cin: int, side: int, config: NetConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(cin),
        nn.Dropout(config.dropout),
        nn.Flatten(),
        nn.Linear(cin * side * side, config.embedding_dim, bias=False),
        nn.BatchNorm1d(config.embedding_dim),
    )


def _gdc_head(cin: int, side: int, config: NetConfig) -> nn.Sequential:
    """A depthwise convolution as large as the map: one weight per position and channel
    (cin x side^2 of them, against the flatten head's cin x side^2 x embedding_dim)."""
    return nn.Sequential(
        nn.BatchNorm2d(cin),
        nn.Conv2d(cin, cin, side, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.Dropout(config.dropout),
        nn.Flatten(),
        nn.Linear(cin, config.embedding_dim, bias=False),
        nn.BatchNorm1d(config.embedding_dim),
    )


HEADS = {"flatten": _flatten_head, "gdc": _gdc_head}
ACTIVATIONS = ("relu", "prelu")


class FaceNet(nn.Module):
    """Stem (stride 2), one stage per width (stride 2 after the first), then the head."""

    def __init__(self, config: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, w[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(w[0]),
            _activation(config.act, w[0]),
        )
        layers, cin = [], w[0]
        for i, (width, n) in enumerate(zip(w, config.blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, width, 2 if (i > 0 and j == 0) else 1, config.act))
                cin = width
        self.body = nn.Sequential(*layers)
        side = config.input_size // 2 ** len(w)
        self.head = HEADS[config.head](cin, side, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, S, S) normalised floats -> (N, D) unit vectors."""
        return F.normalize(self.head(self.body(self.stem(x))), dim=1)

    def embed(self, x: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """Inference embedding; with `flip`, averaged with the mirror image's.

        A face and its reflection are the same person, so averaging the two
        steadies the vector at twice the (small) encoder cost.
        """
        if not flip:
            return self(x)
        if not self.training and len(x) <= 16:
            # Small inference batches: one pass over the face and its mirror halves the fixed
            # per-call cost (batch 1: ~6.5 -> ~3.9 ms on one CPU core). Large batches gain
            # nothing and lose cache locality, so they keep two passes.
            both = self(torch.cat([x, x.flip(3)]))
            return F.normalize(both[: len(x)] + both[len(x) :], dim=1)
        return F.normalize(self(x) + self(x.flip(3)), dim=1)
