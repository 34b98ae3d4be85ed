"""dlib's ResNet face descriptor re-implemented in torch: a teacher for every view.

dlib-bin computes one descriptor in ~140 ms on one core and cannot batch, so the
distillation targets used to be computed once per photo on the un-augmented crop,
and the student never learnt what the teacher says about the augmented views and
blends it is actually trained on. The same network in torch runs batched (a few ms
a chip on the CPU, far less on a GPU), so the teacher can answer about exactly the
image the student sees.

The weights are read from dlib's own file (`dlib_face_recognition_resnet_model_v1.dat`
in `face_recognition_models`, public domain) by parsing its serialization; nothing is
converted (a packed training cache carries the file itself to a machine without it).
The teacher is a training tool only: it is never shipped, never used to initialise the
student and never used at inference.

File layout (dlib's `serialize` of a `loss_metric<fc_no_bias<...>>` network): a loss
record, the layers' version numbers from the output inwards, then each layer's
contents from the input outwards. Integers are a control byte (low 4 bits: byte
count, bit 7: sign) and little-endian bytes; strings a length and bytes; scalar
floats a mantissa and a binary exponent; tensors version 2, n, k, rows, cols and
float32 data. A convolution's parameters are its filters in torch's (out, in, rows,
cols) order followed by its biases; an affine layer's are scale then shift; the fc
matrix is stored inputs x outputs.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from faceid.errors import ModelError

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
CHIP_PADDING = 0.25

# dlib's 5-point chip template (get_face_chip_details, unpadded, fractions of the side),
# in the order of the 5-point shape predictor: image-right eye outer and inner corner,
# image-left eye outer and inner corner, base of the nose.
DLIB_TEMPLATE_5PT = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)

# Residual blocks from the input: (width, downsampling) per block.
_BLOCKS = (
    [(32, False)] * 3
    + [(64, True)]
    + [(64, False)] * 3
    + [(128, True)]
    + [(128, False)] * 2
    + [(256, True)]
    + [(256, False)] * 2
    + [(256, True)]
)


def chip_template(padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's template with `padding` added around it, as fractions of the chip side."""
    return (padding + DLIB_TEMPLATE_5PT) / (2 * padding + 1)


# ---------------------------------------------------------------------------- file reader


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int(self) -> int:
        control = self.data[self.pos]
        n = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -value if control & 0x80 else value

    def string(self) -> str:
        n = self.int()
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        return s.decode("ascii")

    def scalar(self) -> float:
        mantissa = self.int()
        return float(mantissa) * 2.0 ** self.int()

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise ModelError("unexpected tensor version in dlib's model file")
        shape = [self.int() for _ in range(4)]
        count = int(np.prod(shape))
        out = np.frombuffer(self.data, "<f4", count, self.pos).reshape(shape)
        self.pos += 4 * count
        return out

    def next_record(self, names: tuple[str, ...]) -> str:
        """Skip to the next layer record among `names` (trailers hold no float data)."""
        pattern = re.compile(b"|".join(bytes([1, len(n)]) + re.escape(n.encode()) for n in names))
        m = pattern.search(self.data, self.pos)
        if m is None:
            raise ModelError("dlib's model file ended before the network did")
        self.pos = m.start()
        return self.string()


@dataclass
class DlibWeights:
    """The numbers of dlib's network, in the order the layers are applied."""

    means: tuple[float, float, float]
    convs: list[dict] = field(default_factory=list)  # weight, bias, stride, padding
    affines: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    fc: np.ndarray | None = None  # (128, 256): torch's Linear.weight layout


def read_dlib_weights(path: str | Path) -> DlibWeights:
    """Parse dlib's face-descriptor network file into arrays (no dlib needed)."""
    data = Path(path).read_bytes()
    r = _Reader(data)
    r.int()
    if r.string() != "loss_metric_2":
        raise ModelError(f"{path} is not dlib's face descriptor network")
    if r.next_record(("input_rgb_image_sized",)) != "input_rgb_image_sized":
        raise ModelError(f"{path}: no input layer")
    weights = DlibWeights(means=(r.scalar(), r.scalar(), r.scalar()))
    size = (r.int(), r.int())
    if size != (CHIP_SIZE, CHIP_SIZE):
        raise ModelError(f"{path}: expected {CHIP_SIZE}x{CHIP_SIZE} chips, got {size}")
    while True:
        name = r.next_record(("con_4", "affine_", "fc_2"))
        if name == "con_4":
            params = r.tensor().reshape(-1)
            out_ch, rows, cols = r.int(), r.int(), r.int()
            stride, _, padding, _ = r.int(), r.int(), r.int(), r.int()
            n_w = params.size - out_ch
            in_ch = n_w // (out_ch * rows * cols)
            weights.convs.append(
                {
                    "weight": params[:n_w].reshape(out_ch, in_ch, rows, cols),
                    "bias": params[n_w:],
                    "stride": stride,
                    "padding": padding,
                }
            )
        elif name == "affine_":
            params = r.tensor().reshape(-1)
            half = params.size // 2
            weights.affines.append((params[:half], params[half:]))
        else:
            outputs, inputs = r.int(), r.int()
            weights.fc = r.tensor().reshape(inputs, outputs).T.copy()
            break
    if len(weights.convs) != 1 + 2 * len(_BLOCKS) or len(weights.affines) != len(weights.convs):
        raise ModelError(f"{path}: unexpected layer count {len(weights.convs)}")
    return weights


# ---------------------------------------------------------------------------- network


class _ConvAffine(nn.Module):
    """dlib's con (with bias) followed by affine (batch norm folded: scale and shift)."""

    def __init__(self, conv: dict, affine: tuple[np.ndarray, np.ndarray]) -> None:
        super().__init__()
        self.stride, self.padding = conv["stride"], conv["padding"]
        self.register_buffer("weight", torch.from_numpy(np.array(conv["weight"])))
        # Fold the affine into the convolution: scale * (w * x + b) + shift.
        scale, shift = (torch.from_numpy(np.array(a)) for a in affine)
        self.weight.mul_(scale.view(-1, 1, 1, 1))
        self.register_buffer("bias", torch.from_numpy(np.array(conv["bias"])) * scale + shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


def _join(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the smaller tensor is zero-padded (channels, bottom, right)."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class DlibResNet(nn.Module):
    """dlib's 29-convolution ResNet: 150x150 RGB chip -> 128-d descriptor (not unit length)."""

    def __init__(self, weights: DlibWeights) -> None:
        super().__init__()
        self.register_buffer("means", torch.tensor(weights.means, dtype=torch.float32))
        layers = [_ConvAffine(c, a) for c, a in zip(weights.convs, weights.affines)]
        self.stem = layers[0]
        self.blocks = nn.ModuleList(
            nn.ModuleList(layers[1 + 2 * i : 3 + 2 * i]) for i in range(len(_BLOCKS))
        )
        self.down = [d for _, d in _BLOCKS]
        self.register_buffer("fc", torch.from_numpy(weights.fc))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """chips: (N, 3, 150, 150) RGB floats in 0..255 -> (N, 128)."""
        x = (chips - self.means.view(1, 3, 1, 1)) / 256
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for (first, second), down in zip(self.blocks, self.down):
            y = second(F.relu(first(x)))
            x = F.relu(_join(y, F.avg_pool2d(x, 2, 2) if down else x))
        return x.mean((2, 3)) @ self.fc.T


@functools.cache
def load_teacher(device: str = "cpu", path: Path | None = None) -> DlibResNet:
    """The teacher, in eval mode, without gradients: from `path` (dlib's file carried with a
    packed cache) or face_recognition_models' own copy."""
    from faceid.detect import model_file

    net = DlibResNet(read_dlib_weights(path or model_file(MODEL_FILE))).to(device).eval()
    net.requires_grad_(False)
    return net
