"""Backends in every precision (issue 14): logits agree with eager, reduced precision falls back on
a CPU without the units, missing packages name their extra, the accuracy gate, the cached
``--backend auto`` choice and the per-precision matmul rates of the bench. No timings are asserted."""
from __future__ import annotations

import json

import pytest
import torch

from atrous import create_model
from atrous.deploy import auto as auto_mod
from atrous.deploy import backends as backends_mod
from atrous.deploy.auto import GATES, Selection, accuracy_gate, select_backend, synthetic_images
from atrous.deploy.backends import Predictor, build_predictor, parse_backend
from atrous.deploy.machine import CpuInfo
from atrous.errors import UnknownName, UserError

SIZE = (64, 96)
EPYC = CpuInfo("AMD EPYC 7B12", frozenset({"avx2", "fma"}))
# Largest logit difference from eager, relative to the largest eager logit, per precision: fp32
# paths differ by summation order only; bf16 keeps 8 mantissa bits; int8 quantizes every activation.
TOLERANCE = {"fp32": 1e-4, "bf16": 0.05, "int8": 0.2}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("regseg", num_classes=5).eval()


@pytest.fixture(scope="module")
def image():
    return torch.from_numpy(synthetic_images(SIZE, 1, seed=3)[0])


def _check_against_eager(model, backend, image, threads=1):
    with torch.no_grad():
        expected = model(image)
    predictor = build_predictor(model, backend, SIZE, threads=threads)
    got = predictor(image)
    assert got.shape == expected.shape and got.dtype == torch.float32
    relative = float((got - expected).abs().max() / expected.abs().max())
    assert relative <= TOLERANCE[predictor.precision], (backend, relative)
    predictor.bind(image)()  # the timed form runs too
    return predictor


@pytest.mark.parametrize("backend", ["fused", "torch-bf16", "onnxruntime-opt+nospin"])  # int8: the auto test
def test_torch_and_onnxruntime_backends_agree_with_eager(model, image, backend):
    if backend.startswith("onnxruntime"):
        pytest.importorskip("onnxruntime")
    predictor = _check_against_eager(model, backend, image)
    assert predictor.precision == parse_backend(backend)[0].precision or predictor.note  # or it fell back


def test_openvino_backends_agree_with_eager(model, image):
    """About 10-20 s: NNCF's quantizer matches its patterns against the graph in Python whatever
    the input size; this is the one test of OpenVINO's int8 path."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    precisions = {b: _check_against_eager(model, b, image).precision
                  for b in ("openvino", "openvino-bf16+nopin", "openvino-int8")}
    assert precisions["openvino"] == "fp32" and precisions["openvino-int8"] == "int8"


def test_bf16_backends_fall_back_to_fp32_without_bf16_units(model, image, monkeypatch):
    monkeypatch.setattr(backends_mod, "cpu_info", lambda: EPYC)
    predictor = _check_against_eager(model, "torch-bf16", image)
    assert predictor.precision == "fp32" and "no bf16 units" in predictor.note
    if backends_mod.available("openvino-bf16"):
        predictor = _check_against_eager(model, "openvino-bf16", image)
        assert predictor.precision == "fp32" and "precision hint f32" in predictor.note
        assert predictor.inference_precision == "f32"
    monkeypatch.setattr(auto_mod, "cpu_info", lambda: EPYC)
    assert not any("bf16" in b for b in auto_mod.default_candidates("cpu"))


def test_missing_packages_name_the_extra(model, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("openvino", "nncf") else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'atrous\[openvino\]'"):
        build_predictor(model, "openvino-int8", SIZE)
    assert not any(b.startswith("openvino") for b in auto_mod.default_candidates("cpu"))
    with pytest.raises(UnknownName, match="unknown; expected one of"):
        parse_backend("tensorrt")
    with pytest.raises(UserError, match="does not apply to openvino"):
        parse_backend("openvino+nospin")


class _Shuffled(Predictor):
    """Logits with the classes rotated: every argmax changes."""

    def __init__(self, model):
        super().__init__("shuffled", "bf16", "bf16")
        self.model = model

    def __call__(self, x):
        with torch.no_grad():
            return self.model(x).roll(1, dims=1)


def test_accuracy_gate_passes_close_logits_and_fails_others(model, image):
    with torch.no_grad():
        reference = [model(image)]
    good = accuracy_gate(reference, build_predictor(model, "fused", SIZE), [image])
    assert good.passed and good.agreement == 1.0 and good.relative_diff <= GATES["fp32"].max_relative_diff
    bad = accuracy_gate(reference, _Shuffled(model), [image])
    assert not bad.passed and bad.agreement < GATES["bf16"].min_agreement


def test_auto_selection_is_cached_with_its_int8_graph(model, tmp_path, monkeypatch):
    """About 5-10 s: one ONNX Runtime int8 quantization (then read back from the cache)."""
    options = dict(threads=1, cache=tmp_path, iters=2, candidates=["fused", "torch-bf16"])
    first = select_backend(model, "regseg", SIZE, **options)
    assert isinstance(first, Selection) and not first.cached and set(first.ms) <= {"fused", "torch-bf16"}
    assert first.gates["fused"]["passed"] and first.backend in first.ms
    index = json.loads((tmp_path / "backends.json").read_text())
    entry = index[first.key]
    assert entry["backend"] == first.backend and entry["key"]["model"] == "regseg" and entry["key"]["cpu"]

    def fail(*args, **kwargs):
        raise AssertionError("a cached choice is neither timed nor quantized again")

    with monkeypatch.context() as patch:
        patch.setattr("atrous.deploy.benchmark.time_interleaved", fail)
        again = select_backend(model, "regseg", SIZE, **options)
    assert again.cached and again.backend == first.backend and again.key == first.key
    other = create_model("regseg", num_classes=5).eval()  # other weights: another key
    assert select_backend(other, "regseg", SIZE, **options).key != first.key

    pytest.importorskip("onnxruntime")  # an int8 winner is rebuilt from its cached graph
    int8 = dict(threads=1, cache=tmp_path, iters=2, candidates=["int8+nospin"],
                calibration=synthetic_images(SIZE, 1, seed=5), calibration_label="synthetic seed 5")
    chosen = select_backend(model, "regseg", SIZE, **int8)
    assert chosen.backend == "int8+nospin" and chosen.gates["int8+nospin"]["passed"]
    graph = json.loads((tmp_path / "backends.json").read_text())[chosen.key]["graph"]
    assert (tmp_path / graph).is_file()
    monkeypatch.setattr("atrous.deploy.quantize.quantize_onnx", fail)
    cached = select_backend(model, "regseg", SIZE, **int8)
    image = torch.from_numpy(synthetic_images(SIZE, 1, seed=9)[0])
    assert cached.cached and torch.equal(cached.predictor(image), chosen.predictor(image))


def test_auto_model_selects_per_shape(model, tmp_path):
    wrapped = auto_mod.BackendModel(model, "regseg", threads=1, cache=tmp_path, iters=2, candidates=["fused"])
    x = torch.from_numpy(synthetic_images(SIZE, 1, seed=4)[0])
    with torch.no_grad():
        assert torch.allclose(wrapped(x), model(x), atol=1e-5)
    assert list(wrapped.selections) == [(1, 3, *SIZE)] and wrapped.num_classes == 5


def test_bench_rates_follow_each_rows_precision_under_competing_load():
    from atrous.deploy.benchmark import benchmark, format_results

    results = benchmark("regseg", ["fused", "torch-bf16"], size=SIZE, threads=1, warmup=1, iters=2,
                        progress=False, competing_load=1)
    by = {r.backend: r for r in results}
    assert by["fused"].matmul_precision == "fp32" and by["fused"].competing_load == 1
    assert by["torch-bf16"].matmul_precision == by["torch-bf16"].precision.split()[0]
    assert all(r.matmul_gflops_per_s > 0 for r in results)
    text = format_results(results)
    assert "CPU matrix units" in text and "1 competing busy process" in text and "fp32" in text
