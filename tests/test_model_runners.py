"""The two inference backends (onnxruntime, torch) against one contract, and the ONNX export:
the same embeddings, the same model id and the whole checkpoint payload carried along.

The shipped `default.onnx` must be the export of the shipped `default.pt`: whoever ships a new
checkpoint re-runs `python scripts/export_onnx.py`, or the test below says so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from faceid.errors import ModelError
from faceid.model.checkpoint import load_checkpoint, save_checkpoint
from faceid.model.encoder import Encoder
from faceid.model.runner import DEFAULT_ONNX, DEFAULT_PT

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.jpg"))


@pytest.fixture(scope="session")
def tiny_pair(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny checkpoint with extra payload (an openset record in meta, an unknown top-level
    key, flip averaging on) and its ONNX export."""
    from faceid.model.export import export_onnx

    ckpt = load_checkpoint(tiny_model)
    ckpt = dataclasses.replace(
        ckpt,
        preprocess={**ckpt.preprocess, "flip": True},
        identify_threshold=0.5,
        meta={"openset": {"rule": "fpir", "table": [[0.01, 0.42]]}},
        extra={"added_later": {"x": 1}},
    )
    folder = tmp_path_factory.mktemp("export")
    pt = save_checkpoint(ckpt, folder / "tiny.pt")
    onnx = folder / "tiny.onnx"
    export_onnx(pt, onnx)
    return pt, onnx


@pytest.fixture(scope="session", params=["onnx", "torch"])
def tiny_encoder(request: pytest.FixtureRequest, tiny_pair: tuple[Path, Path]) -> Encoder:
    pt, onnx = tiny_pair
    return Encoder.load(onnx if request.param == "onnx" else pt, "cpu")


def crops_for(size: int, n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ---------------------------------------------------------------- the runner contract


def test_runner_gives_unit_float32_vectors_of_the_cards_size(tiny_encoder: Encoder) -> None:
    out = tiny_encoder.embed(crops_for(tiny_encoder.input_size))
    assert out.dtype == np.float32 and out.shape == (5, tiny_encoder.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_runner_averages_a_face_with_its_mirror(tiny_encoder: Encoder) -> None:
    crops = crops_for(tiny_encoder.input_size)
    np.testing.assert_allclose(
        tiny_encoder.embed(crops), tiny_encoder.embed(crops[:, :, ::-1]), atol=1e-5
    )


def test_runner_embeds_a_crop_the_same_alone_or_in_a_batch(tiny_encoder: Encoder) -> None:
    crops = crops_for(tiny_encoder.input_size, n=70)  # more than one encoder batch
    together = tiny_encoder.embed(crops)
    np.testing.assert_allclose(tiny_encoder.embed(crops[3:4])[0], together[3], atol=1e-5)
    np.testing.assert_allclose(tiny_encoder.embed(crops[69:])[0], together[69], atol=1e-5)


def test_runner_reads_thresholds_and_meta_from_the_checkpoint(tiny_encoder: Encoder) -> None:
    assert tiny_encoder.threshold == pytest.approx(0.8)
    assert tiny_encoder.identify_threshold == pytest.approx(0.5)
    assert tiny_encoder.card.meta["openset"] == {"rule": "fpir", "table": [[0.01, 0.42]]}


def test_runner_refuses_crops_of_the_wrong_shape(tiny_encoder: Encoder) -> None:
    with pytest.raises(ValueError, match="crops"):
        tiny_encoder.embed(np.zeros((1, 7, 7, 3), np.uint8))


# ---------------------------------------------------------------- the export


def test_export_carries_the_whole_payload_and_the_model_id(tiny_pair: tuple[Path, Path]) -> None:
    pt, onnx = tiny_pair
    ckpt, exported = load_checkpoint(pt), Encoder.load(onnx, "cpu")
    assert exported.backend == "onnx" and exported.model_id == ckpt.model_id
    assert exported.card.payload == ckpt.payload()
    assert exported.card.payload["added_later"] == {"x": 1}  # a key this code never names


def test_export_matches_torch_on_the_tiny_model(tiny_pair: tuple[Path, Path]) -> None:
    pt, onnx = tiny_pair
    crops = crops_for(32, n=9)
    diff = np.abs(Encoder.load(onnx, "cpu").embed(crops) - Encoder.load(pt, "cpu").embed(crops))
    assert diff.max() <= 1e-5


def test_an_onnx_file_that_is_not_a_faceid_export_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ModelError, match="not a faceid model export"):
        Encoder.load(path, "cpu")


def test_a_corrupt_onnx_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07not really protobuf")
    with pytest.raises(ModelError, match="cannot read model"):
        Encoder.load(path, "cpu")


# ---------------------------------------------------------------- the shipped files


def test_the_shipped_onnx_is_the_export_of_the_shipped_checkpoint() -> None:
    """Fails when default.pt changed without `python scripts/export_onnx.py`."""
    onnx, ckpt = Encoder.load(DEFAULT_ONNX, "cpu"), load_checkpoint(DEFAULT_PT)
    assert onnx.model_id == ckpt.model_id, "re-export: python scripts/export_onnx.py"
    assert onnx.card.payload == ckpt.payload(), "re-export: python scripts/export_onnx.py"


def test_the_default_model_is_the_onnx_one_on_a_cpu() -> None:
    assert Encoder.load(None, "cpu").backend == "onnx"


def test_shipped_model_files_stay_within_25_mb() -> None:
    weights = ROOT / "faceid" / "weights"
    assert sum(f.stat().st_size for f in weights.iterdir() if f.is_file()) <= 25_000_000


@pytest.mark.slow
def test_onnx_and_torch_embeddings_of_real_faces_agree_within_1e_4() -> None:
    from faceid.align import align
    from faceid.detect import DlibHOGDetector
    from faceid.imageio import load_image

    detector, onnx = DlibHOGDetector(1), Encoder.load(DEFAULT_ONNX, "cpu")
    torch_enc = Encoder.load(DEFAULT_PT, "cpu")
    crops = []
    for path in EXAMPLES:
        image = load_image(path)
        crops += [align(image, f.landmarks, onnx.input_size) for f in detector.detect(image)]
    assert len(crops) >= len(EXAMPLES)
    crops = np.stack(crops)
    assert np.abs(onnx.embed(crops) - torch_enc.embed(crops)).max() <= 1e-4
    # batch 1, the path verify takes
    assert np.abs(onnx.embed(crops[:1]) - torch_enc.embed(crops[:1])).max() <= 1e-4


# ---------------------------------------------------------------- architecture variants


@pytest.mark.parametrize("head,act", [("gdc", "relu"), ("flatten", "prelu"), ("gdc", "prelu")])
def test_head_and_activation_variants_export_to_onnx_and_match_torch(
    tmp_path: Path, head: str, act: str
) -> None:
    import torch

    from faceid.model.checkpoint import Checkpoint
    from faceid.model.export import export_onnx
    from faceid.model.net import FaceNet, NetConfig

    torch.manual_seed(0)
    cfg = NetConfig(input_size=32, widths=(8, 16), blocks=(1, 1), head=head, act=act)
    net = FaceNet(cfg).eval()
    pt = save_checkpoint(
        Checkpoint(config=cfg.to_dict(), state_dict=net.state_dict(), threshold=0.8),
        tmp_path / "v.pt",
    )
    export_onnx(pt, tmp_path / "v.onnx")
    crops = crops_for(32, n=6)
    torch_enc, onnx_enc = Encoder.load(pt, "cpu"), Encoder.load(tmp_path / "v.onnx", "cpu")
    assert np.abs(onnx_enc.embed(crops) - torch_enc.embed(crops)).max() <= 1e-5
    assert torch_enc.runner.config.head == head and torch_enc.runner.config.act == act


def test_the_default_networks_weights_keep_their_names_and_a_new_head_warm_starts_its_body(
    tiny_model: Path,
) -> None:
    from faceid.model.net import FaceNet, NetConfig
    from faceid.train.loop import _warm_start

    shipped = load_checkpoint(DEFAULT_PT)
    # a config saved before the options existed still loads, as the default network
    before = {k: v for k, v in shipped.config.items() if k not in ("head", "act")}
    net = FaceNet(NetConfig.from_dict(before))
    assert net.config.head == "flatten" and net.config.act == "relu"
    assert set(net.state_dict()) == set(shipped.state_dict)
    gdc = FaceNet(NetConfig.from_dict({**shipped.config, "head": "gdc"}))
    _warm_start(gdc, shipped.state_dict)
    assert np.array_equal(
        gdc.state_dict()["stem.0.weight"].numpy(), shipped.state_dict["stem.0.weight"].numpy()
    )
    with pytest.raises(ValueError, match="unknown head"):
        NetConfig(head="avgpool")


def test_a_flatten_head_warm_starts_at_another_input_size_with_its_weights_kept_in_place(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch

    from faceid.model.net import FaceNet, NetConfig
    from faceid.train.loop import _warm_start, resample_flatten_head

    small = FaceNet(NetConfig(input_size=32, widths=(8, 16), blocks=(1, 1)))  # an 8x8 map
    large = FaceNet(NetConfig(input_size=48, widths=(8, 16), blocks=(1, 1)))  # a 12x12 map
    _warm_start(large, small.state_dict())
    assert "start fresh" not in capsys.readouterr().err
    assert large.head[3].weight.shape == (128, 16 * 12 * 12)
    assert torch.equal(large.body[0].conv1.weight, small.body[0].conv1.weight)

    # a weight the same at every position gives the same output for a uniform map
    per_channel = torch.randn(4, 16)
    uniform = per_channel[:, :, None, None].expand(4, 16, 8, 8).reshape(4, -1)
    resampled = resample_flatten_head(uniform, 16, 12)
    values = torch.randn(16)
    before = uniform @ values[:, None, None].expand(16, 8, 8).reshape(-1)
    after = resampled @ values[:, None, None].expand(16, 12, 12).reshape(-1)
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-5)

    # a weight on the top-left position stays on the top-left of the finer grid
    corner = torch.zeros(1, 16, 8, 8)
    corner[0, :, 0, 0] = 1.0
    moved = resample_flatten_head(corner.reshape(1, -1), 16, 12).reshape(16, 12, 12)
    assert moved[:, :2, :2].sum() > 0.9 * moved.sum()
    assert resample_flatten_head(torch.zeros(2, 16 * 10), 16, 12) is None  # not a square grid


@pytest.mark.parametrize("act", ["relu", "prelu"])
def test_a_deeper_network_warm_starts_from_a_shallower_one_computing_the_same_embeddings(
    act: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from faceid.model.net import FaceNet, NetConfig
    from faceid.train.loop import _warm_start

    torch.manual_seed(0)
    shallow = FaceNet(NetConfig(input_size=32, widths=(8, 16, 32), blocks=(1, 2, 1), act=act))
    with torch.no_grad():  # trained-looking BatchNorm: not the identity of a fresh network
        for m in shallow.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    deep = FaceNet(NetConfig(input_size=32, widths=(8, 16, 32), blocks=(2, 3, 2), act=act))
    _warm_start(deep, shallow.state_dict(), (1, 2, 1))
    assert "blocks [1, 4, 6] added as the identity" in capsys.readouterr().err
    # each stage's trained blocks keep their order, the down-sampling one first
    assert torch.equal(deep.body[2].short[0].weight, shallow.body[1].short[0].weight)
    assert torch.equal(deep.body[3].conv1.weight, shallow.body[2].conv1.weight)
    x = torch.randn(4, 3, 32, 32)
    shallow.eval(), deep.eval()
    with torch.no_grad():
        assert torch.allclose(deep(x), shallow(x), atol=1e-5)
    # the added blocks are trainable from the first step, not dead
    deep.train()
    deep(x).sum().backward()
    assert deep.body[1].bn2.weight.grad.abs().sum() > 0


def test_half_weights_halve_the_checkpoint_and_its_export_which_still_agree(
    tiny_model: Path, tmp_path: Path
) -> None:
    import torch

    from faceid.model.checkpoint import half_weights
    from faceid.model.export import export_onnx

    full = load_checkpoint(tiny_model)
    pt = save_checkpoint(half_weights(full), tmp_path / "half.pt")
    half = load_checkpoint(pt)
    assert half.state_dict["head.3.weight"].dtype == torch.float16
    assert half.state_dict["head.0.running_var"].dtype == torch.float32  # kept in range
    assert half.model_id != full.model_id  # other weights, another id
    export_onnx(tiny_model, tmp_path / "full.onnx")
    export_onnx(pt, tmp_path / "half.onnx")
    assert pt.stat().st_size < 0.6 * tiny_model.stat().st_size
    assert (tmp_path / "half.onnx").stat().st_size < 0.6 * (tmp_path / "full.onnx").stat().st_size
    crops = crops_for(32, n=6)
    torch_half = Encoder.load(pt, "cpu")
    onnx_half = Encoder.load(tmp_path / "half.onnx", "cpu")
    assert onnx_half.model_id == half.model_id
    assert np.abs(onnx_half.embed(crops) - torch_half.embed(crops)).max() <= 1e-5
    # the rounding moves an embedding a little, not to another face
    full_emb = Encoder.load(tiny_model, "cpu").embed(crops)
    assert 0 < np.abs(torch_half.embed(crops) - full_emb).max() < 1e-2
