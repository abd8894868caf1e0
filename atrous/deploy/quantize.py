"""Post-training static int8 quantization for CPU with ONNX Runtime.

PyTorch 2.13's own static quantization paths do not fit here: FX graph mode needs symbolic
tracing (our models branch on shapes), eager mode needs stubs inside every model, and the PT2E
flow has left ``torch.ao``. ONNX Runtime's ``quantize_static`` works on the exported graph of any
registered model: activations and weights become int8 (QDQ format, per-channel weights), with
activation ranges calibrated on real images (MinMax by default).

Activations are unsigned (uint8) and weights signed (int8), the combination ONNX Runtime's x86
kernels are fastest with; on AVX2 machines without VNNI it may saturate in rare cases, and
``reduce_range=True`` (7-bit weights) is the documented remedy if accuracy drops.
"""
from __future__ import annotations

import glob
import logging
import os
import tempfile
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from ..errors import UserError
from ..data.base import IMAGE_EXTENSIONS


def random_calibration(size: Sequence[int], batch: int = 1, count: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Standard-normal inputs: enough to build a quantized graph for timing, not for accuracy."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, 3, *size), dtype=np.float32) for _ in range(count)]


def _image_files(source: str) -> list[str]:
    if os.path.isdir(source):
        files = [os.path.join(root, f) for root, _, names in os.walk(source) for f in names
                 if f.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        files = [f for f in glob.glob(source) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(files)


def parse_dataset_spec(spec: str) -> tuple[dict, str] | None:
    """``NAME:ROOT[:SPLIT]`` (e.g. ``camvid:/data/camvid:train``) or a recipe YAML with a
    ``data:`` mapping -> ``(data mapping, split)``; None when ``spec`` is neither."""
    if spec.endswith((".yaml", ".yml")) and os.path.isfile(spec):
        import yaml

        with open(spec) as f:
            recipe = yaml.safe_load(f) or {}
        data = recipe.get("data", recipe)
        if not isinstance(data, dict) or "dataset" not in data:
            raise UserError(f"{spec}: expected a 'data:' mapping with a 'dataset' key")
        return {k: v for k, v in data.items() if k != "transforms"}, "train"
    name, sep, rest = spec.partition(":")
    if not sep or os.path.exists(spec):
        return None
    root, _, split = rest.partition(":")
    return {"dataset": name, "root": root}, split or "train"


def record_calibration(record, limit: int = 32):
    """``(source, label)`` for calibrating the int8 backends of weights with ``record``: the
    training split of the dataset the record names when it is readable here, else ``(None,
    "synthetic")`` (the backends then calibrate on synthetic images). ``source`` is a function of
    the input size that returns the arrays."""
    data = dict(record.data) if record is not None and record.data else None
    if data is None:
        return None, "synthetic"
    split = ((record.provenance or {}).get("config") or {}).get("train", {}).get("split", "train")
    data.pop("transforms", None)
    try:
        from ..data import build_dataset

        build_dataset(data, split, train=False)
    except (UserError, OSError):
        return None, "synthetic"

    def arrays(size):
        return list(dataset_calibration(data, split, size, limit))

    return arrays, f"{data.get('dataset')}:{data.get('root')}:{split}, {limit} images"


def dataset_calibration(spec: dict, split: str, size: Sequence[int], limit: int) -> Iterator[np.ndarray]:
    """Up to ``limit`` images of ``split`` spread over it, resized to ``size``, normalised."""
    from ..data import build_dataset

    ds = build_dataset(spec, split, train=False)
    count = min(limit, len(ds))
    if count == 0:
        raise UserError(f"calibration: the {split} split of {spec.get('dataset')} is empty")
    step = max(1, len(ds) // count)
    for i in range(0, step * count, step):
        image = ds[i][0].unsqueeze(0).float()
        yield torch.nn.functional.interpolate(image, size=tuple(size), mode="bilinear", align_corners=False).numpy()


def calibration_images(source: str, size: Sequence[int], limit: int = 32,
                       normalization=None) -> Iterator[np.ndarray]:
    """Up to ``limit`` normalized 1 x 3 x H x W float32 arrays for calibration, resized to
    ``size``. ``source`` is a folder or glob of images, or a dataset spec (see
    :func:`parse_dataset_spec`; its training split by default, never the evaluation split).
    Image files are normalised by ``normalization`` (the weights record's; default ImageNet)."""
    from ..weights import Normalization

    norm = normalization or Normalization()
    dataset = parse_dataset_spec(source)
    h, w = size
    if dataset is not None:
        yield from dataset_calibration(*dataset, size, limit)
        return
    files = _image_files(source)
    if not files:
        raise UserError(f"--calib {source}: no images found (expected a folder, a glob, NAME:ROOT[:SPLIT] "
                         f"or a recipe .yaml)")
    from PIL import Image

    step = max(1, len(files) // limit)
    for path in files[::step][:limit]:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32)
        yield norm.apply(rgb)[None]


class _Reader:
    """ONNX Runtime CalibrationDataReader over an iterable of input arrays."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray], progress: bool):
        from ..progress import progress as progress_bar

        self.input_name = input_name
        self.batches = iter(progress_bar(batches, desc="calibration", unit="img", disable=not progress, leave=False))

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self):  # not needed for MinMax; present for readers that are asked to
        pass


def quantize_onnx(model_bytes: bytes, calibration: Iterable[np.ndarray], per_channel: bool = True,
                  reduce_range: bool = False, method: str = "minmax", progress: bool = False) -> bytes:
    """The int8 (QDQ, uint8 activations / int8 weights) version of an fp32 ONNX graph, with
    activation ranges from ``calibration`` (arrays shaped like the graph input)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise UserError(f"method: {method!r} is unknown; expected one of {', '.join(methods)}")
    reader_cls = type("CalibrationReader", (_Reader, CalibrationDataReader), {})
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a warning per tensor it leaves in float
    try:
        with tempfile.TemporaryDirectory(prefix="atrous-quant-") as tmp:
            fp32, pre, out = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
            with open(fp32, "wb") as f:
                f.write(model_bytes)
            quant_pre_process(fp32, pre, skip_symbolic_shape=True)
            import onnx

            input_name = onnx.load(pre).graph.input[0].name
            quantize_static(pre, out, reader_cls(input_name, calibration, progress), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=per_channel, reduce_range=reduce_range, calibrate_method=methods[method])
            with open(out, "rb") as f:
                return f.read()
    finally:
        root.setLevel(level)


def quantize_model(model: torch.nn.Module, out: str | os.PathLike, calib: str, size=(512, 1024),
                   limit: int = 32, per_channel: bool = True, reduce_range: bool = False,
                   method: str = "minmax", progress: bool = True) -> dict:
    """Export ``model`` at ``size`` (batch 1), quantize it with ``limit`` calibration images from
    ``calib`` and write the int8 ONNX file to ``out`` (atomically). Returns a summary with the
    largest logit difference from fp32 ONNX Runtime and the pixel agreement of the argmax on the
    first calibration image."""
    from ..utils import atomic_path
    from .export import optimized_onnx_bytes, ort_session, run_ort, with_record

    fp32 = optimized_onnx_bytes(model, size)  # folded BatchNorms (also those ORT cannot fold) quantize with their conv
    record = getattr(model, "record", None)
    batches = list(calibration_images(calib, size, limit, record.normalization if record else None))
    int8 = quantize_onnx(fp32, batches, per_channel, reduce_range, method, progress)
    if record is not None:
        quantized = {"method": method, "per_channel": per_channel, "reduce_range": reduce_range,
                     "calibration": calib, "calibration_images": len(batches), "size": list(size)}
        int8 = with_record(int8, record.replace(provenance={**record.provenance, "int8": quantized}))
    reference = run_ort(ort_session(fp32), batches[0])
    got = run_ort(ort_session(int8), batches[0])
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            f.write(int8)
    return {"path": os.fspath(out), "calibration_images": len(batches), "bytes": len(int8),
            "max_abs_diff": float(np.abs(got - reference).max()),
            "argmax_agreement": float((got.argmax(1) == reference.argmax(1)).mean())}
