"""The weights record and the one loader: every file layout atrous reads, the strict check and its
report, partial loading, and refusing files that hold pickled code."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import atrous
from atrous.errors import WeightsError
from atrous.weights import (Normalization, WeightsRecord, default_record, load, load_state, read_weights_file,
                            save_weights, torch_load)

from conftest import load_fixture

TINY = dict(stem_width=8, widths=(8, 16, 16, 16), depths=(1, 1), group_width=8, dilations=[[1], [1, 5]],
            decoder_widths=(16, 8, 16))


def tiny(num_classes=3, **extra):
    torch.manual_seed(0)
    return atrous.create_model("regseg", num_classes=num_classes, **{**TINY, **extra}).eval()


def test_record_round_trip_rebuilds_the_model_as_trained(tmp_path):
    model = tiny()
    record = WeightsRecord(model="regseg", num_classes=3, options=TINY, classes=("a", "b", "c"),
                           palette=((1, 2, 3), (4, 5, 6), (7, 8, 9)), train_crop=(48, 48), eval_resize=64,
                           normalization=Normalization(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)),
                           provenance={"iteration": 7, "weights": "ema"})
    path = save_weights(tmp_path / "w.safetensors", model, record)
    loaded = load(path)
    assert not loaded.training and loaded.record.sha256 and loaded.record.replace(sha256=None) == record
    # dilations (1, 5) survive: the model is rebuilt from the record's options, not the defaults
    assert loaded.backbone.stage16[-1].conv2.conv.dilations == (1, 5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(WeightsError, match="holds weights of 'regseg'"):
        load(path, "dwrseg_base")
    assert load(path, "regseg").num_classes == 3  # a name that agrees is fine


def test_changed_tensors_fail_the_content_hash(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_weights(tmp_path / "w.safetensors", tiny(), default_record(tiny()))
    with safe_open(str(path), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    state["decoder.classifier.bias"] += 1
    save_file(state, str(tmp_path / "edited.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match="content hash"):
        load(tmp_path / "edited.safetensors")


def test_strict_report_and_partial_loading():
    source, target = tiny(num_classes=5), tiny(num_classes=3)
    state = source.state_dict()
    with pytest.raises(WeightsError) as info:
        load_state(target, state, "city.safetensors")
    assert "city.safetensors does not fit regseg" in str(info.value)
    assert "mis-shaped (2): decoder.classifier.weight" in str(info.value)
    assert info.value.report.misshaped and not info.value.report.missing
    report = load_state(target, state, "city.safetensors", part="encoder")  # the backbone alone: strict, fits
    assert report.complete and all(k.startswith("backbone.") for k in report.loaded)
    assert torch.equal(target.backbone.stem.conv.weight, source.backbone.stem.conv.weight)
    report = load_state(tiny(num_classes=3), state, "city.safetensors", strict=False)
    assert "kept the initialisation of 2" in report.summary()
    with pytest.raises(ValueError, match="regseg has parts decoder, encoder"):
        load_state(target, state, part="head")


def official_file(tmp_path, layout: str, state: dict) -> str:
    """A file as each official repository's trainer writes it, numpy scalars included."""
    if layout == "regseg":
        payload = {"model": state, "optimizer": {}, "epoch": 3}
    elif layout == "dsnet":
        payload = {"state_dict": {f"module.model.{k}": v for k, v in state.items()},
                   "best_mIoU": np.float64(0.8), "epoch": 3}
    else:
        payload = {"model_state": state, "best_iou": np.float64(0.7), "epoch": np.int64(3)}
    path = tmp_path / f"{layout}.pth"
    torch.save(payload, path)
    return str(path)


@pytest.mark.parametrize("layout, name, reference", [
    ("regseg", "regseg", "regseg_exp48_decoder26"),
    ("dsnet", "dsnet", "dsnet_head128"),
    ("fassdnet", "fassdnet", "fassdnet")])
def test_official_layouts_with_numpy_scalars_load(tmp_path, layout, name, reference):
    fixture = load_fixture(reference)
    path = official_file(tmp_path, layout, fixture["state_dict"])
    model = atrous.load(path, name)
    with torch.no_grad():
        out = model(fixture["input"])
    ref = fixture["output"]  # the fixtures' tolerance (meta.json): relative to the largest logit
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3 * ref.abs().max().item())
    assert model.record.provenance["source"] == path


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a malicious "checkpoint" does: run code while being unpickled
        return (open, (self.marker, "w"))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"w": torch.zeros(1)}, "x": Payload(str(marker))}, f)
    torch.save({"model": {"w": torch.zeros(1)}, "hook": Payload(str(marker))}, tmp_path / "evil2.pt")
    for bad in (path, tmp_path / "evil2.pt"):
        with pytest.raises(WeightsError) as info:
            torch_load(bad)
        text = str(info.value)
        assert "never runs code" in text and str(bad) in text
        assert "weights_only" not in text and info.value.__cause__ is None
    assert not marker.exists()


def test_unreadable_files_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="corrupt.safetensors: not a readable safetensors file"):
        read_weights_file(bad)
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="corrupt.pt: not a readable PyTorch"):
        read_weights_file(tmp_path / "corrupt.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_weights_file(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="names no model"):
        torch.save(tiny().state_dict(), tmp_path / "plain.pt")
        load(tmp_path / "plain.pt")
    assert load(tmp_path / "plain.pt", "regseg", **TINY).num_classes == 3  # with the name it loads
