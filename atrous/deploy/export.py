"""ONNX export of any registered model, checked against PyTorch with ONNX Runtime.

The TorchScript-based exporter is used (``dynamo=False``): it needs only ``onnx``, and the one
op it could not handle in the official RegSeg code (``tensor_split``) is already a static
``torch.split`` in :class:`~atrous.nn.DilatedConv`. The graph takes ``input`` (N x 3 x H x W,
float32, normalized RGB) and returns ``logits`` (N x C x H x W).
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..utils import atomic_path

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def onnx_bytes(model: nn.Module, size: Sequence[int] = (512, 1024), batch: int = 1,
               dynamic: bool = False, opset: int = OPSET) -> bytes:
    """The ONNX graph of ``model`` (eval mode) traced at ``batch x 3 x H x W``, as bytes.
    ``dynamic=True`` makes batch, height and width free dimensions."""
    h, w = size
    model = model.eval()
    x = torch.randn(batch, 3, h, w)
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer warns about every Python-level shape check; those are expected here
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(model, (x,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False)
    return buffer.getvalue()


def simplify_static(model_bytes: bytes) -> bytes:
    """Exact rewrites of a static-shape graph that let ONNX Runtime keep its blocked (NCHWc)
    layout: an ``AveragePool`` with ``ceil_mode=1``, kernel == stride and no padding whose input
    sides are multiples of the stride gives the same result with ``ceil_mode=0`` (RegSeg's
    shortcut pool, Fig. 4c), and ONNX Runtime only runs the latter in NCHWc. Graphs with free
    dimensions are returned unchanged where a side is unknown."""
    import onnx
    from onnx import helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load_from_string(model_bytes))
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input)}
    for node in model.graph.node:
        if node.op_type != "AveragePool":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        sides = shapes.get(node.input[0], [])[2:]
        if (attrs.get("ceil_mode") == 1 and attrs.get("kernel_shape") == attrs.get("strides")
                and not any(attrs.get("pads", [])) and sides
                and all(side > 0 and side % k == 0 for side, k in zip(sides, attrs["strides"]))):
            next(a for a in node.attribute if a.name == "ceil_mode").i = 0
    return model.SerializeToString()


def optimized_onnx_bytes(model: nn.Module, size: Sequence[int] = (512, 1024), batch: int = 1,
                         dynamic: bool = False, opset: int = OPSET) -> bytes:
    """Our graph for ONNX Runtime (the ``onnxruntime-opt`` backend, ``atrous export --optimize``):
    the :func:`~atrous.deploy.fuse`-d model, plus :func:`simplify_static` for a static size."""
    from .fuse import fuse

    data = onnx_bytes(fuse(model), size, batch, dynamic, opset)
    return data if dynamic else simplify_static(data)


# Session settings of the predict/eval paths (``OnnxModel``), chosen to hold up when other work
# shares the CPU (docs/benchmarks.md, shared-CPU table): ONNX Runtime's worker threads otherwise
# spin for some 20-50 ms after each run and fight the other processes for the cores. The benchmark
# keeps ONNX Runtime's defaults (spinning on) so that its tables stay comparable with earlier ones;
# its ``+nospin`` backends time these settings.
SHARED_CPU_SPINNING = False


def ort_session(model_bytes_or_path, threads: int | None = None, optimization: str = "default",
                device: str = "cpu", spinning: bool | None = None):
    """An ONNX Runtime session. ``optimization`` is ``"default"`` (ORT's own defaults, i.e. all
    graph optimizations) or ``"disable"``; ``threads`` sets ``intra_op_num_threads``;
    ``spinning`` sets ``session.intra_op.allow_spinning`` and ``session.inter_op.allow_spinning``
    (None: ONNX Runtime's default, which spins)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    if spinning is not None:
        for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
            options.add_session_config_entry(key, "1" if spinning else "0")
    if optimization == "disable":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    elif optimization != "default":
        raise ValueError(f"optimization: expected 'default' or 'disable', got {optimization!r}")
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError("device cuda: this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(model_bytes_or_path, options, providers=providers)


def run_ort(session, x: torch.Tensor | np.ndarray) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(array, dtype=np.float32)})[0]


def check_onnx(model: nn.Module, session, size: Sequence[int], batch: int = 1, seed: int = 0) -> float:
    """Max absolute difference between ONNX Runtime's and PyTorch's logits on a random input."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, *size, generator=g)
    with torch.no_grad():
        expected = model.eval()(x)
    got = run_ort(session, x)
    if got.shape != tuple(expected.shape):
        raise ValueError(f"ONNX output shape {got.shape} differs from PyTorch's {tuple(expected.shape)}")
    return float(np.abs(got - expected.numpy()).max())


def export_onnx(model: nn.Module, out: str | os.PathLike, size: Sequence[int] = (512, 1024),
                batch: int = 1, dynamic: bool = False, opset: int = OPSET, check: bool = True,
                optimize: bool = False, record=None) -> dict:
    """Write ``model`` as ONNX to ``out`` (atomically). With ``check`` the file is run in ONNX
    Runtime and compared with PyTorch at the export size (and, when ``dynamic``, at a second
    size). ``optimize`` exports the BatchNorm-folded model (:func:`~atrous.deploy.fuse`) and, for
    a static size, applies :func:`simplify_static` (the ``onnxruntime-opt`` benchmark backend).
    The weights record (``record``, default ``model.record``) goes into the file's metadata.
    Returns ``{"path", "bytes", "max_abs_diff": {size: diff}}``."""
    make = optimized_onnx_bytes if optimize else onnx_bytes
    data = with_record(make(model, size, batch, dynamic, opset), record or getattr(model, "record", None))
    import onnx

    onnx.checker.check_model(onnx.load_from_string(data))
    diffs = {}
    if check:
        session = ort_session(data)
        sizes = [tuple(size)]
        if dynamic:
            sizes.append((size[0] + 32, size[1] - 32 if size[1] > 64 else size[1] + 64))
        for s in sizes:
            diffs[f"{s[0]}x{s[1]}"] = check_onnx(model, session, s, batch)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return {"path": os.fspath(out), "bytes": len(data), "max_abs_diff": diffs}


def with_record(model_bytes: bytes, record) -> bytes:
    """The ONNX graph with the weights record as JSON in its ``metadata_props`` (key
    :data:`atrous.weights.RECORD_KEY`); unchanged when ``record`` is None."""
    if record is None:
        return model_bytes
    import onnx

    from ..weights import RECORD_KEY

    graph = onnx.load_from_string(model_bytes)
    kept = [p for p in graph.metadata_props if p.key != RECORD_KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    graph.metadata_props.add(key=RECORD_KEY, value=record.to_json())
    return graph.SerializeToString()


def read_onnx_record(session, path: str):
    """The weights record in an ONNX file's metadata, or None (a file atrous did not write)."""
    from ..errors import WeightsError
    from ..weights import RECORD_KEY, WeightsRecord

    text = session.get_modelmeta().custom_metadata_map.get(RECORD_KEY)
    if text is None:
        return None
    try:
        return WeightsRecord.from_json(text)
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: its weights record cannot be read ({exc})") from None


class OnnxModel(nn.Module):
    """An exported (or int8-quantized) ONNX file behind the model contract: ``model(x)`` runs it in
    ONNX Runtime and returns the logits as a tensor, so ``atrous eval`` measures an ONNX model with
    the same data and metric code as a PyTorch one. A graph with a static input shape raises an
    error naming the file when given another shape (export with ``--dynamic``, or ``--size`` equal
    to the evaluation size)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None,
                 spinning: bool | None = SHARED_CPU_SPINNING):
        super().__init__()
        from ..errors import MissingFile, WeightsError
        from ..weights import WeightsRecord

        if not os.path.isfile(path):
            raise MissingFile(f"ONNX model {path}: no such file")
        self.path = str(path)
        try:
            self.session = ort_session(self.path, threads, spinning=spinning)
        except Exception as exc:  # onnxruntime raises its own types for a file it cannot parse
            if type(exc).__module__.startswith("onnxruntime"):
                raise WeightsError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
            raise
        dims = self.session.get_inputs()[0].shape
        self.input_shape = tuple(d if isinstance(d, int) else None for d in dims)
        classes = self.session.get_outputs()[0].shape[1]
        self.record = read_onnx_record(self.session, self.path)
        self.num_classes = self.record.num_classes if self.record else classes if isinstance(classes, int) else None
        if self.record is None and self.num_classes:
            self.record = WeightsRecord(model="onnx", num_classes=self.num_classes, provenance={"source": self.path})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(want is not None and want != got for want, got in zip(self.input_shape, x.shape)):
            raise UserError(f"ONNX model {self.path}: takes input {self.input_shape} (None = free), "
                            f"got {tuple(x.shape)}; export with --dynamic, or at this size")
        return torch.from_numpy(run_ort(self.session, x)).to(x.device)
