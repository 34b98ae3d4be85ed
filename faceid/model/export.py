"""Export a checkpoint to ONNX: the graph for onnxruntime, the checkpoint's payload beside it.

The graph takes (N, S, S, 3) uint8 RGB crops and returns (N, D) unit embeddings: the
preprocessing (scale, mean, std) and the flip averaging are inside it, so the ONNX
backend is a single session call. Every non-weight field of the checkpoint (`config`,
`preprocess`, thresholds, `meta`, any key added later, and the weights' digest from which
the model id comes) is written as JSON under the `faceid` metadata key, so an exported
model behaves as its checkpoint does and galleries made with either stay valid.

Needs torch, onnx and onnxscript (the `train` extra); `scripts/export_onnx.py` is the command.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from faceid.model.card import ModelCard
from faceid.model.onnx_runner import INPUT, METADATA_KEY, OUTPUT

OPSET = 20


def _graph_module(checkpoint):
    """The network wrapped with uint8 preprocessing and flip averaging, as the runners use it."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from faceid.model.net import FaceNet, NetConfig, normalize

    net = FaceNet(NetConfig.from_dict(checkpoint.config))
    net.load_state_dict(checkpoint.state_dict)
    pre = checkpoint.preprocess

    class Inference(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.flip = bool(pre.get("flip"))

        def forward(self, crops: torch.Tensor) -> torch.Tensor:
            x = normalize(crops.permute(0, 3, 1, 2).float() / 255, pre)
            if not self.flip:
                return self.net(x)
            return F.normalize(self.net(x) + self.net(x.flip(3)), dim=1)

    return Inference().eval()


def export_onnx(checkpoint_path: str | os.PathLike | None, output: str | os.PathLike) -> ModelCard:
    """Write `output` (.onnx) from a checkpoint (None: the shipped one); returns its card."""
    import onnx
    import torch

    from faceid.atomic import atomic_open
    from faceid.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint_path)
    module = _graph_module(ckpt)
    size = ckpt.card.input_size
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes={"crops": {0: batch}},
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    _keep_float16_storage(model, ckpt.state_dict)
    model.producer_name = "faceid"
    model.doc_string = f"faceid encoder {ckpt.model_id}: uint8 NHWC crops -> unit embeddings"
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(ckpt.payload(), sort_keys=True)
    onnx.checker.check_model(model)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(output) as f:
        f.write(model.SerializeToString())
    return ckpt.card


def _keep_float16_storage(model, state_dict: dict) -> None:
    """Store each weight the checkpoint holds in float16 in float16 here too, cast back to
    float32 as the graph starts (onnxruntime folds the casts when it loads the model): the
    export is as small as its checkpoint and computes what the torch network computes."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    half = {f"net.{k}" for k, v in state_dict.items() if v.dtype == torch.float16}
    casts = []
    for init in model.graph.initializer:
        if init.name not in half:
            continue
        stored = numpy_helper.from_array(
            numpy_helper.to_array(init).astype(np.float16), f"{init.name}.float16"
        )
        casts.append(
            onnx.helper.make_node("Cast", [stored.name], [init.name], to=onnx.TensorProto.FLOAT)
        )
        init.CopyFrom(stored)
    nodes = casts + list(model.graph.node)  # a graph's nodes run in their stored order
    del model.graph.node[:]
    model.graph.node.extend(nodes)
