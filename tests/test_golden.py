"""Every registered model's outputs against its stored golden file (tests/golden/; the seeded
state, the probes and the tolerance are described in golden_outputs.py): eager PyTorch, the
BatchNorm-folded model and the ONNX export run by ONNX Runtime. Any change to a network's
computation fails here; a deliberate one is recorded with ``scripts/regenerate_golden.py --write``."""
from __future__ import annotations

import pytest
import torch

from atrous.deploy import fuse, unfused_batchnorms
from atrous.deploy.export import onnx_bytes, ort_session, run_ort

from golden_outputs import (GOLDEN_DIR, INPUT_SHAPE, TOLERANCE, golden_input, golden_models, load_golden,
                            load_stored_input, probe_outputs, relative_error, seeded_model, short_dilations)

MODELS = golden_models()
_MODELS: dict[str, torch.nn.Module] = {}


def model_for(name: str) -> torch.nn.Module:
    """The seeded float32 model, built once per test session (the tests share it and none
    modifies it: ``fuse`` works on a copy)."""
    if name not in _MODELS:
        _MODELS[name] = seeded_model(name)
    return _MODELS[name]


def check(name: str, outputs: dict[str, torch.Tensor], what: str) -> None:
    golden = load_golden(name)
    errors = {key: relative_error(y, golden[key]) for key, y in outputs.items()}
    bad = {key: err for key, err in errors.items() if not err <= TOLERANCE}
    assert not bad, (f"{name} ({what}): max |output - golden| / golden RMS is "
                     + ", ".join(f"{err:.3g} on {key}" for key, err in bad.items())
                     + f" (tolerance {TOLERANCE:g}). If the change is intended, run "
                     "scripts/regenerate_golden.py --write and commit the files it names.")


def test_every_model_has_a_golden_file_and_no_file_is_stale():
    stored = sorted(p.stem for p in GOLDEN_DIR.glob("*.safetensors") if p.stem != "input")
    assert stored == MODELS
    for name in MODELS:
        assert sorted(load_golden(name)) == ["logits", "tall", "wide"]


def test_seeded_input_is_the_stored_one():
    """The golden files are only valid for this input; a changed torch RNG would show here first."""
    assert torch.equal(load_stored_input(), golden_input())


@pytest.mark.parametrize("name", MODELS)
def test_long_probes_reach_every_dilation(name):
    """The wide and tall probes are long enough that each dilated conv's rate matters."""
    assert short_dilations(model_for(name), name) == []


@pytest.mark.parametrize("name", MODELS)
def test_eager_outputs_match_golden(name):
    outputs = probe_outputs(model_for(name), name)
    assert outputs["logits"].shape == (1, load_golden(name)["logits"].shape[1], *INPUT_SHAPE[2:])
    check(name, outputs, "eager")


@pytest.mark.parametrize("name", MODELS)
def test_fused_outputs_match_golden(name):
    model = model_for(name)
    fused = fuse(model)
    assert fused.folded_batchnorms > 0
    assert len(unfused_batchnorms(fused)) < len(unfused_batchnorms(model))
    check(name, probe_outputs(fused, name), "BatchNorm folded by atrous.deploy.fuse")


@pytest.mark.parametrize("name", MODELS)
def test_onnx_logits_match_golden(name):
    """The ONNX export (at the small probe's size only: exporting is the slow part) in ONNX Runtime."""
    session = ort_session(onnx_bytes(model_for(name), INPUT_SHAPE[2:]), threads=1)
    check(name, {"logits": torch.from_numpy(run_ort(session, golden_input()))}, "ONNX export in ONNX Runtime")
