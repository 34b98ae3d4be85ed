"""Checkpoints: self-describing, verified on load, never silently overwritten."""

import numpy as np
import pytest
import torch

from faceid.errors import ModelError
from faceid.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from faceid.model.encoder import Encoder
from faceid.model.net import FaceNet, NetConfig

CFG = NetConfig(input_size=32, widths=(8, 16), blocks=(1, 1))


def _ckpt(seed=0):
    torch.manual_seed(seed)
    return Checkpoint(config=CFG.to_dict(), state_dict=FaceNet(CFG).state_dict(), threshold=0.7)


def test_round_trip_keeps_weights_threshold_and_model_id(tmp_path):
    c = _ckpt()
    save_checkpoint(c, tmp_path / "m.pt")
    back = load_checkpoint(tmp_path / "m.pt")
    assert back.threshold == 0.7 and back.model_id == c.model_id
    assert all(torch.equal(back.state_dict[k], v) for k, v in c.state_dict.items())


def test_different_weights_get_different_model_ids():
    assert _ckpt(0).model_id != _ckpt(1).model_id


def test_existing_file_is_not_overwritten_without_asking(tmp_path):
    save_checkpoint(_ckpt(), tmp_path / "m.pt")
    with pytest.raises(ModelError, match="exists"):
        save_checkpoint(_ckpt(1), tmp_path / "m.pt")


def test_altered_weights_are_refused(tmp_path):
    save_checkpoint(_ckpt(), tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name] + 1
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="digest"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04garbage"])
def test_corrupt_files_give_one_model_error(tmp_path, content):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "x.pt")


def test_foreign_torch_files_are_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a faceid checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    torch.save({"format": "faceid-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "evil.pt")


def test_encoder_gives_unit_vectors_batched_like_one_at_a_time(tmp_path):
    save_checkpoint(_ckpt(), tmp_path / "m.pt")
    enc = Encoder.load(tmp_path / "m.pt", device="cpu")
    crops = torch.randint(0, 255, (5, 32, 32, 3), dtype=torch.uint8).numpy()
    batch = enc.embed(crops)
    single = np.stack([enc.embed(crops[i : i + 1])[0] for i in range(5)])
    assert batch.shape == (5, 128)
    assert abs((batch**2).sum(1) - 1).max() < 1e-5
    assert abs(batch - single).max() < 1e-5


def test_missing_default_model_says_no_model_is_installed(tmp_path, monkeypatch):
    import faceid.model.checkpoint as ck

    monkeypatch.setattr(ck, "DEFAULT_CHECKPOINT", tmp_path / "none.pt")
    with pytest.raises(ModelError, match="no model is installed"):
        ck.load_checkpoint(None)


def test_identify_threshold_round_trips_and_defaults_to_the_verify_threshold(tmp_path):
    c = _ckpt()
    save_checkpoint(c, tmp_path / "plain.pt")
    assert Encoder.load(tmp_path / "plain.pt", "cpu").identify_threshold == 0.7
    c.identify_threshold = 0.4
    save_checkpoint(c, tmp_path / "strict.pt")
    enc = Encoder.load(tmp_path / "strict.pt", "cpu")
    assert (enc.threshold, enc.identify_threshold) == (0.7, 0.4)
