"""``--backend auto``: the fastest backend on this machine whose output stays close enough to fp32,
measured once per model, weights, input shape and machine, and remembered.

* :func:`accuracy_gate` compares a backend's logits with the fp32 model's on images that were not
  used to calibrate it: the share of pixels whose argmax (the predicted class) agrees, and the
  largest logit difference relative to the largest fp32 logit. The thresholds of every precision
  are in :data:`GATES`.
* :func:`select_backend` builds the candidates (:func:`default_candidates`), drops those that fail
  the gate, times the rest interleaved (:func:`~atrous.deploy.benchmark.time_interleaved`) and
  keeps the fastest. The decision is cached in ``$XDG_CACHE_HOME/atrous/backends.json`` (else
  ``~/.cache/atrous``), keyed by model name, a digest of its weights, the input shape, the thread
  count, the CPU model and matrix flags, the library versions, the candidates and the calibration
  source; an int8 winner's quantized graph is cached beside it, so a later run neither times nor
  quantizes again.
* :class:`BackendModel` is the model contract on a given backend, or on the one ``auto`` picks
  for each input shape.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .backends import Predictor, available, build_predictor, parse_backend
from .machine import cpu_info, fingerprint


@dataclasses.dataclass(frozen=True)
class Gate:
    """Minimum argmax agreement with fp32 and maximum logit difference (relative to the largest
    fp32 logit) for a precision."""

    min_agreement: float
    max_relative_diff: float


# The one place the thresholds live. fp32 paths differ from eager only by summation order. bf16
# (8-bit mantissa) and int8 move logits by about 1% of their scale and flip pixels where two
# classes are nearly tied; the agreements are set so that the mIoU change stays within the issue's
# bounds (bf16 <= 0.3 points, int8 <= 1.0; the CamVid ONNX Runtime int8 model lost 0.70 points).
GATES = {
    "fp32": Gate(min_agreement=0.999, max_relative_diff=1e-3),
    "fp16": Gate(min_agreement=0.99, max_relative_diff=0.1),
    "bf16": Gate(min_agreement=0.99, max_relative_diff=0.15),
    "int8": Gate(min_agreement=0.97, max_relative_diff=0.5),
}


@dataclasses.dataclass
class GateResult:
    backend: str
    precision: str
    agreement: float  # share of pixels with the fp32 argmax
    max_abs_diff: float
    scale: float  # largest |fp32 logit|
    passed: bool

    @property
    def relative_diff(self) -> float:
        return self.max_abs_diff / self.scale if self.scale else float("inf")


def accuracy_gate(reference: Sequence[torch.Tensor], predictor: Predictor,
                  images: Sequence[torch.Tensor]) -> GateResult:
    """Run ``predictor`` on ``images`` (tensors N x 3 x H x W, not used to calibrate it) and compare
    with the fp32 ``reference`` logits of the same images, by :data:`GATES` of its precision."""
    agree = total = 0
    diff = scale = 0.0
    for expected, x in zip(reference, images):
        got = predictor(x).float().cpu()
        if got.shape != expected.shape or not torch.isfinite(got).all():
            return GateResult(predictor.backend, predictor.precision, 0.0, float("inf"), 1.0, False)
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        total += expected[:, 0].numel()
        diff = max(diff, float((got - expected).abs().max()))
        scale = max(scale, float(expected.abs().max()))
    gate = GATES[predictor.precision]
    result = GateResult(predictor.backend, predictor.precision, agree / total, diff, scale, False)
    result.passed = result.agreement >= gate.min_agreement and result.relative_diff <= gate.max_relative_diff
    return result


def synthetic_images(size: Sequence[int], count: int = 2, batch: int = 1, seed: int = 1) -> list[np.ndarray]:
    """Smooth random images, normalized like real ones (a 1/16-scale standard-normal field
    upsampled bilinearly, plus fine noise): a stand-in for calibration and gate images when no
    real ones are given. A real-image calibration (``atrous.deploy.quantize.calibration_images``)
    is better for int8 accuracy; the gate tells whether the stand-in was good enough."""
    h, w = size
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        coarse = torch.randn(batch, 3, max(2, h // 16), max(2, w // 16), generator=g)
        field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        out.append((field + 0.25 * torch.randn(batch, 3, h, w, generator=g)).numpy())
    return out


def default_candidates(device: str = "cpu") -> list[str]:
    """The backends ``auto`` tries: on CPU every installed fp32, bf16 (where the CPU has bf16
    units) and int8 path, with the predict/eval session settings (ONNX Runtime without spinning);
    the ``compile`` backends are left out (they need a C++ compiler and a minute to compile);
    on CUDA the fused PyTorch model."""
    if device != "cpu":
        return ["fused"]
    names = ["fused", "onnxruntime-opt+nospin", "int8+nospin", "openvino", "openvino-int8"]
    if cpu_info().bf16_hardware:
        names += ["torch-bf16", "openvino-bf16"]
    return [n for n in names if available(n)]


def weights_digest(model: nn.Module) -> str:
    """sha256 of the model's state dict: the weights record's content hash
    (:func:`atrous.weights.tensor_hash`)."""
    from ..weights import tensor_hash

    return tensor_hash(model.state_dict())


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "atrous"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, unreadable or torn by a crash elsewhere: start afresh
        return {}
    return data if isinstance(data, dict) else {}


def _write_atomic(path: Path, data: bytes) -> None:
    from ..utils import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


@dataclasses.dataclass
class Selection:
    backend: str
    predictor: Predictor
    key: str
    cached: bool  # True when the choice came from the cache (nothing was timed)
    ms: dict  # ms per call of each timed candidate (empty when cached)
    gates: dict  # GateResult of each candidate, as dicts
    errors: dict  # candidates that could not be built: backend -> message


def select_backend(model: nn.Module, name: str, size: Sequence[int], batch: int = 1, threads: int | None = None,
                   candidates: Sequence[str] | None = None, calibration: Sequence[np.ndarray] | None = None,
                   gate_images: Sequence[np.ndarray] | None = None, calibration_label: str | None = None,
                   cache: str | os.PathLike | None = None, refresh: bool = False, iters: int = 6,
                   progress: bool = False) -> Selection:
    """The fastest of ``candidates`` (default :func:`default_candidates`) that passes
    :func:`accuracy_gate`, for registered model ``name`` (``model``: its weights) at
    ``batch x 3 x H x W`` on CPU with ``threads``. ``calibration``: arrays for the int8 backends
    (default :func:`synthetic_images`), named by ``calibration_label`` in the cache key (e.g.
    ``"camvid:train, 32 images"``); ``gate_images``: other arrays for the gate (default:
    synthetic ones of another seed). ``cache``: the cache folder (default :func:`cache_dir`);
    ``refresh`` measures again even when a decision is cached."""
    from .benchmark import set_threads

    threads = set_threads(threads)
    size = tuple(int(s) for s in size)
    candidates = list(candidates or default_candidates("cpu"))
    for backend in candidates:
        parse_backend(backend)  # unknown names are errors before anything is built
    if calibration is None:
        calibration, calibration_label = synthetic_images(size, 2, batch, seed=1), "synthetic"
    key_fields = {"model": name, "weights": weights_digest(model), "shape": [batch, 3, *size],
                  "candidates": candidates, "calibration": calibration_label or "given",
                  "gates": {k: dataclasses.astuple(v) for k, v in GATES.items()}, **fingerprint(threads)}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:24]
    folder = Path(cache) if cache is not None else cache_dir()
    index_path = folder / "backends.json"
    entry = None if refresh else _read_cache(index_path).get(key)
    if entry is not None:
        predictor = _from_cache(model, entry, folder, size, batch, threads)
        if predictor is not None:
            return Selection(entry["backend"], predictor, key, True, {}, entry.get("gates", {}), {})
    images = gate_images if gate_images is not None else synthetic_images(size, 2, batch, seed=2)
    selection = _measure(model, candidates, size, batch, threads, calibration, images, iters, progress, key)
    _store(folder, index_path, key, key_fields, selection)
    return selection


def _measure(model, candidates, size, batch, threads, calibration, gate_images, iters, progress, key) -> Selection:
    from .benchmark import time_interleaved

    images = [torch.as_tensor(np.asarray(x, dtype=np.float32)) for x in gate_images]
    with torch.no_grad():
        reference = [model.eval()(x) for x in images]
    passed, gates, errors = {}, {}, {}
    for backend in candidates:
        try:
            predictor = build_predictor(model, backend, size, batch, "cpu", threads, calibration=calibration)
        except Exception as exc:  # a backend that cannot run here is skipped, and said why
            errors[backend] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            continue
        gate = accuracy_gate(reference, predictor, images)
        gates[backend] = dataclasses.asdict(gate)
        if gate.passed:
            passed[backend] = predictor
    if not passed:
        raise RuntimeError(f"backend auto: no candidate passed the accuracy gate: {gates} {errors}")
    x = images[0]
    runners = {b: p.bind(x) for b, p in passed.items()}
    times = time_interleaved(runners, "cpu", warmup=2, iters=iters, rounds=min(3, iters), progress=progress,
                             desc="backend auto")
    ms = {b: 1000 * float(np.median(t)) for b, t in times.items()}
    best = min(ms, key=ms.get)
    return Selection(best, passed[best], key, False, ms, gates, errors)


def _store(folder: Path, index_path: Path, key: str, key_fields: dict, selection: Selection) -> None:
    graph = None
    if selection.predictor.quantized is not None:
        graph = f"graphs/{key}-{parse_backend(selection.backend)[0].name}.bin"
        _write_atomic(folder / graph, selection.predictor.quantized)
    index = _read_cache(index_path)  # read again just before writing: another process may have added
    index[key] = {"backend": selection.backend, "graph": graph, "ms": selection.ms, "gates": selection.gates,
                  "errors": selection.errors, "key": key_fields,
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    _write_atomic(index_path, json.dumps(index, indent=1, sort_keys=True).encode())


def _from_cache(model, entry, folder, size, batch, threads) -> Predictor | None:
    """The cached choice rebuilt (None when its quantized graph is missing: measure again)."""
    quantized = None
    if entry.get("graph"):
        path = folder / entry["graph"]
        if not path.is_file():
            return None
        quantized = path.read_bytes()
    return build_predictor(model, entry["backend"], size, batch, "cpu", threads, quantized=quantized)


class BackendModel(nn.Module):
    """The model contract on another backend: ``backend`` (a name of
    :data:`~atrous.deploy.backends.SPECS`, with ``+`` options) or ``"auto"`` (:func:`select_backend`
    on the first input of each shape; later ones reuse it, and the choice is cached across runs).
    Graph backends are built per input shape. CPU only; the logits come back on the input's
    device. ``options`` go to :func:`select_backend` (``auto``); ``calibration`` (arrays, or a
    function of the input size returning them) also reaches the fixed int8 backends."""

    def __init__(self, model: nn.Module, name: str, backend: str = "auto", threads: int | None = None, **options):
        super().__init__()
        if backend != "auto":
            parse_backend(backend)  # an unknown name fails now, naming the valid ones
        self.model, self.name, self.backend = model.eval(), name, backend
        self.threads, self.options = threads, options
        self.num_classes = getattr(model, "num_classes", None)
        self.record = getattr(model, "record", None)
        self.predictors: dict[tuple, Predictor] = {}
        self.selections: dict[tuple, Selection] = {}

    def predictor_for(self, shape: tuple) -> Predictor:
        if shape not in self.predictors:
            if self.backend == "auto":
                options = dict(self.options)
                if callable(options.get("calibration")):
                    options["calibration"] = options["calibration"](shape[2:])
                selection = select_backend(self.model, self.name, shape[2:], shape[0], self.threads, **options)
                self.selections[shape] = selection
                self.predictors[shape] = selection.predictor
            else:
                calibration = self.options.get("calibration")
                calibration = calibration(shape[2:]) if callable(calibration) else calibration
                self.predictors[shape] = build_predictor(self.model, self.backend, shape[2:], shape[0], "cpu",
                                                         self.threads, calibration=calibration)
        return self.predictors[shape]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor_for(tuple(x.shape))(x.cpu()).to(x.device)

    def describe(self) -> str:
        """Which backend ran each input shape (and why, for ``auto``)."""
        parts = []
        for shape, predictor in self.predictors.items():
            chosen = self.selections.get(shape)
            how = " (cached choice)" if chosen and chosen.cached else ""
            parts.append(f"{shape[2]}x{shape[3]}: {predictor.backend}, {predictor.precision}{how}"
                         + (f"; {predictor.note}" if predictor.note else ""))
        return "; ".join(parts)


def on_backend(model: nn.Module, backend: str | None, threads: int | None = None) -> nn.Module:
    """``model`` run by ``backend`` for predict and eval (None: as it is). The int8 backends and
    ``auto`` calibrate on the training split of the dataset the weights record names when it is
    readable here, else on synthetic images (said in the cache key and by :meth:`describe`)."""
    if backend is None:
        return model
    from .quantize import record_calibration

    record = getattr(model, "record", None)
    calibration, label = record_calibration(record)
    options = {"calibration": calibration} if calibration is not None else {}
    if backend == "auto":
        options["calibration_label"] = label
    name = record.model if record is not None else getattr(model, "variant", type(model).__name__)
    return BackendModel(model, name, backend, threads, **options)
