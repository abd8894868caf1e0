"""Inference backends: one model, run by PyTorch, ONNX Runtime or OpenVINO, in fp32, bf16 or int8.

:func:`build_predictor` prepares a backend for one input shape and returns a :class:`Predictor`:
``predictor(x)`` gives float32 logits like the model, and ``predictor.bind(x)`` a no-argument
callable for the timed loop (input converted once, as the papers time the network alone).

========================  =========  ==========================================================
backend                   precision  what runs
========================  =========  ==========================================================
``eager``                 fp32       the model as written: eval, ``torch.no_grad``, NCHW
``fused``                 fp32       :func:`~atrous.deploy.prepare_inference` (BN folded, channels_last)
``compile``               fp32       ``fused`` + ``torch.compile``
``torch-bf16``            bf16       ``fused`` under bf16 autocast
``torch-bf16-compile``    bf16       ``torch-bf16`` + ``torch.compile``
``onnxruntime``           fp32       the unfused export, ONNX Runtime
``onnxruntime-opt``       fp32       :func:`~atrous.deploy.export.optimized_onnx_bytes`, ONNX Runtime
``int8``                  int8       that graph quantized by ONNX Runtime (QDQ, :mod:`.quantize`)
``openvino``              fp32       that graph in OpenVINO's CPU runtime, precision hint f32
``openvino-bf16``         bf16       the same with precision hint bf16
``openvino-int8``         int8       that graph quantized by NNCF (OpenVINO's post-training
                                     quantization), other ops in OpenVINO's default precision
========================  =========  ==========================================================

A bf16 backend on a CPU without bf16 units (:attr:`~atrous.deploy.machine.CpuInfo.bf16_hardware`)
falls back to its fp32 form and says so in :attr:`Predictor.note`: emulated bf16 is slower than
fp32 there. int8 backends run everywhere (without VNNI/AMX, on AVX2 integer kernels), noted too.

Options after ``+``: ``+nospin`` (ONNX Runtime backends: worker threads do not spin between
runs, the predict/eval setting of :data:`~atrous.deploy.export.SHARED_CPU_SPINNING`) and
``+nopin`` (OpenVINO backends: threads not pinned to cores), e.g. ``int8+nospin``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UnknownName, UserError
from .machine import cpu_info


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    name: str
    precision: str  # fp32 | bf16 | int8 (before any fallback)
    family: str  # torch | onnxruntime | openvino
    extra: str | None  # the pip extra it needs (atrous[...]), None for PyTorch


_SPECS = [
    BackendSpec("eager", "fp32", "torch", None), BackendSpec("fused", "fp32", "torch", None),
    BackendSpec("compile", "fp32", "torch", None), BackendSpec("torch-bf16", "bf16", "torch", None),
    BackendSpec("torch-bf16-compile", "bf16", "torch", None),
    BackendSpec("onnxruntime", "fp32", "onnxruntime", "export"),
    BackendSpec("onnxruntime-opt", "fp32", "onnxruntime", "export"),
    BackendSpec("int8", "int8", "onnxruntime", "export"),
    BackendSpec("openvino", "fp32", "openvino", "openvino"),
    BackendSpec("openvino-bf16", "bf16", "openvino", "openvino"),
    BackendSpec("openvino-int8", "int8", "openvino", "openvino"),
]
SPECS = {s.name: s for s in _SPECS}
OPTIONS = {"nospin": "onnxruntime", "nopin": "openvino"}  # option -> the family it applies to
EXTRA_PACKAGES = {"export": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino")}  # openvino-int8: + nncf


def parse_backend(backend: str) -> tuple[BackendSpec, frozenset]:
    """``"int8+nospin"`` -> (the ``int8`` spec, {"nospin"}); unknown names and options are errors."""
    name, *options = backend.strip().split("+")
    if name not in SPECS:
        raise UnknownName(f"backend {name!r} is unknown; expected one of {', '.join(SPECS)}")
    spec = SPECS[name]
    for option in options:
        if OPTIONS.get(option) != spec.family:
            valid = [o for o, family in OPTIONS.items() if family == spec.family]
            raise UserError(f"backend {backend!r}: option {option!r} does not apply to {name}; "
                            f"options for it: {', '.join(valid) or 'none'}")
    return spec, frozenset(options)


def require_extra(spec: BackendSpec) -> None:
    """Raise a :class:`UserError` naming the extra to install when a package of ``spec`` is missing."""
    import importlib.util

    needs = EXTRA_PACKAGES.get(spec.extra, ()) + (("nncf",) if spec.name == "openvino-int8" else ())
    for package in needs:
        if importlib.util.find_spec(package) is None:
            raise UserError(f"backend {spec.name}: needs the Python package {package!r}; "
                            f"install it with pip install 'atrous[{spec.extra}]'")


def available(backend: str) -> bool:
    """Whether the packages ``backend`` needs are installed."""
    try:
        require_extra(parse_backend(backend)[0])
    except UserError:
        return False
    return True


class Predictor:
    """A prepared backend. ``precision`` is what it really runs in (after any fallback), ``label``
    the longer description, ``note`` why it differs from what was asked ("" when it does not)."""

    quantized: bytes | None = None  # an int8 backend's graph, for build_predictor(quantized=...)

    def __init__(self, backend: str, precision: str, label: str, note: str = ""):
        self.backend, self.precision, self.label, self.note = backend, precision, label, note

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bind(self, x: torch.Tensor) -> Callable[[], object]:
        raise NotImplementedError


class TorchPredictor(Predictor):
    def __init__(self, module: nn.Module, autocast_dtype: torch.dtype | None, no_grad: bool, **info):
        super().__init__(**info)
        self.module, self.autocast_dtype, self.no_grad = module, autocast_dtype, no_grad

    def _run(self, x):
        device = x.device.type
        autocast = (torch.autocast(device, dtype=self.autocast_dtype) if self.autocast_dtype
                    else contextlib.nullcontext())
        with (torch.no_grad() if self.no_grad else contextlib.nullcontext()), autocast:
            return self.module(x)

    def __call__(self, x):
        return self._run(x).float()

    def bind(self, x):
        return lambda: self._run(x)


class OrtPredictor(Predictor):
    def __init__(self, data: bytes, threads: int | None, device: str, spinning: bool | None, **info):
        from .export import ort_session

        super().__init__(**info)
        self.session = ort_session(data, threads, device=device, spinning=spinning)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x):
        return torch.from_numpy(self.session.run(None, {self.input_name: _array(x)})[0])

    def bind(self, x):
        feed = {self.input_name: _array(x)}
        return lambda: self.session.run(None, feed)


class OpenVinoPredictor(Predictor):
    def __init__(self, ov_model, config: dict, **info):
        import openvino as ov

        super().__init__(**info)
        self.ov_model, self.config = ov_model, dict(config)  # kept to compile again (benchmarks/ov_profile.py)
        self.compiled = ov.Core().compile_model(ov_model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # what OpenVINO resolved, e.g. bf16
        self.inference_precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)

    def __call__(self, x):
        self.request.infer({0: _array(x)})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())

    def bind(self, x):
        import openvino as ov

        request = self.compiled.create_infer_request()
        request.set_input_tensor(ov.Tensor(_array(x)))
        return request.infer


def _array(x) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
    return np.ascontiguousarray(array, dtype=np.float32)


def build_predictor(model: nn.Module, backend: str, size: Sequence[int], batch: int = 1, device: str = "cpu",
                    threads: int | None = None, amp: bool = False,
                    calibration: Iterable[np.ndarray] | None = None, quantized: bytes | None = None) -> Predictor:
    """Prepare ``backend`` (a name from :data:`SPECS`, with ``+`` options) for ``model`` at
    ``batch x 3 x H x W``. ``amp`` autocasts the fp32 PyTorch backends (float16 on CUDA, bfloat16
    on CPU). ``calibration``: input arrays for the int8 backends (default: two standard-normal
    inputs, enough for timing, not for accuracy). ``quantized``: a graph an int8 backend made
    before (:attr:`Predictor.quantized`), reused instead of quantizing again."""
    spec, options = parse_backend(backend)
    require_extra(spec)
    if device != "cpu" and spec.family == "openvino" or device != "cpu" and spec.precision == "int8":
        raise UserError(f"backend {spec.name}: CPU only")
    if spec.family == "torch":
        return _torch_predictor(model, spec, device, amp)
    size = tuple(size)
    if spec.precision == "int8" and quantized is None and calibration is None:
        from .quantize import random_calibration

        calibration = random_calibration(size, batch)
    if spec.family == "onnxruntime":
        return _ort_predictor(model, spec, options, size, batch, device, threads, calibration, quantized)
    return _openvino_predictor(model, spec, options, size, batch, threads, calibration, quantized)


def amp_dtype(device: str) -> torch.dtype:
    """Autocast precision: float16 on CUDA, bfloat16 on CPU."""
    return torch.float16 if device == "cuda" else torch.bfloat16


def _torch_predictor(model, spec, device, amp) -> Predictor:
    from .fuse import prepare_inference

    name = spec.name
    dtype = amp_dtype(device) if amp else None
    note = ""
    if spec.precision == "bf16":
        dtype = torch.bfloat16
        if device == "cpu" and (note := cpu_info().fallback_note("bf16")):
            dtype, note = None, f"{note}: ran fp32 (fused) instead"
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    label = f"{precision} autocast" if dtype else "fp32"
    if name == "eager":
        return TorchPredictor(model.eval(), dtype, True, backend=name, precision=precision, label=label)
    compiled = prepare_inference(model, compile=name.endswith("compile"))
    return TorchPredictor(compiled, dtype, False, backend=name, precision=precision, label=label, note=note)


def _quantize_for(spec, data, calibration, quantized):
    if quantized is not None:
        return quantized
    if spec.family == "onnxruntime":
        from .quantize import quantize_onnx

        return quantize_onnx(data, list(calibration))
    return nncf_quantize(data, calibration)


def _ort_predictor(model, spec, options, size, batch, device, threads, calibration, quantized) -> Predictor:
    from .export import onnx_bytes, optimized_onnx_bytes

    spinning = False if "nospin" in options else None
    name = spec.name + "".join(f"+{o}" for o in sorted(options))
    if spec.precision == "int8" and quantized is not None:
        data = quantized
    elif spec.name == "onnxruntime":
        data = onnx_bytes(model, size, batch)
    else:
        data = optimized_onnx_bytes(model, size, batch)
    note, label = "", "fp32"
    if spec.precision == "int8":
        data = _quantize_for(spec, data, calibration, quantized)
        note, label = cpu_info().fallback_note("int8"), "int8 (static, ONNX Runtime QDQ)"
    predictor = OrtPredictor(data, threads, device, spinning, backend=name, precision=spec.precision,
                             label=label, note=note)
    predictor.quantized = data if spec.precision == "int8" else None
    return predictor


def nncf_quantize(onnx_data: bytes, calibration: Iterable[np.ndarray], progress: bool = False) -> bytes:
    """OpenVINO post-training int8 quantization (NNCF, default preset, MinMax-style ranges from
    ``calibration``) of an ONNX graph; returns the quantized model as OpenVINO IR bytes (see
    :func:`read_ir`)."""
    import nncf
    import openvino as ov

    batches = [np.ascontiguousarray(b, dtype=np.float32) for b in calibration]
    if not batches:
        raise UserError("calibration: no images to calibrate the int8 model with")
    nncf.set_log_level(logging.ERROR)
    sink = io.StringIO()
    with contextlib.ExitStack() as stack:
        if not progress:  # NNCF draws its progress bars on stdout
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(contextlib.redirect_stderr(sink))
        model = ov.Core().read_model(onnx_data)
        quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))
    return write_ir(quantized)


def write_ir(ov_model) -> bytes:
    """An OpenVINO model as bytes (the .xml, a NUL-free separator line, the .bin)."""
    import tempfile

    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="atrous-ov-") as folder:
        ov.save_model(ov_model, f"{folder}/m.xml", compress_to_fp16=False)
        with open(f"{folder}/m.xml", "rb") as f:
            xml = f.read()
        with open(f"{folder}/m.bin", "rb") as f:
            weights = f.read()
    return len(xml).to_bytes(8, "little") + xml + weights


def read_ir(data: bytes):
    """The OpenVINO model of :func:`write_ir`'s bytes."""
    import openvino as ov

    n = int.from_bytes(data[:8], "little")
    xml, weights = data[8:8 + n], data[8 + n:]
    return ov.Core().read_model(model=xml, weights=ov.Tensor(np.frombuffer(weights, dtype=np.uint8).copy()))


def _openvino_predictor(model, spec, options, size, batch, threads, calibration, quantized) -> Predictor:
    import openvino as ov

    from .export import optimized_onnx_bytes

    name = spec.name + "".join(f"+{o}" for o in sorted(options))
    data = quantized if spec.precision == "int8" and quantized is not None else optimized_onnx_bytes(model, size, batch)
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if "nopin" in options:
        config["ENABLE_CPU_PINNING"] = False
    note = cpu_info().fallback_note(spec.precision)
    if spec.precision == "int8":
        quantized = _quantize_for(spec, data, calibration, quantized)
        ov_model = read_ir(quantized)
    else:
        ov_model = ov.Core().read_model(data)
        hint = "bf16" if spec.precision == "bf16" and not note else "f32"
        config["INFERENCE_PRECISION_HINT"] = hint
        if note:
            note += ": ran fp32 (precision hint f32) instead"
    predictor = OpenVinoPredictor(ov_model, config, backend=name, precision=spec.precision, label="", note=note)
    rest = {"bf16": "bf16", "f32": "fp32"}.get(predictor.inference_precision, predictor.inference_precision)
    if spec.precision == "int8":
        predictor.label = f"int8 (NNCF; other ops {rest})"
        predictor.quantized = quantized
    else:
        predictor.precision = rest
        predictor.label = f"{rest} (OpenVINO hint)"
    return predictor
