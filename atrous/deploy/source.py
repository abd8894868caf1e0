"""What the deploy commands run: a registered model name or a weights file, turned into a model.

``atrous predict``, ``export``, ``quantize``, ``bench`` and ``eval`` take either a model name (with
an optional ``--weights`` file) or the weights file alone (or the run folder holding it): an atrous ``.safetensors`` file or
checkpoint (its record rebuilds the model as trained), the authors' ``.pth`` (with the model
name), or an exported ``.onnx`` file (run by ONNX Runtime, its record read from the metadata).
"""
from __future__ import annotations

import os
import warnings

from torch import nn

from ..errors import UserError
from ..weights import is_weights_path


RUN_WEIGHTS = "model.safetensors"  # what a run folder of atrous train holds


def is_model_file(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a file rather than a registered model: a weights or ONNX suffix, any
    existing file, or a run folder of ``atrous train`` (its model.safetensors)."""
    text = os.fspath(spec)
    return (is_weights_path(text) or text.lower().endswith(".onnx") or os.path.isfile(text)
            or os.path.isfile(os.path.join(text, RUN_WEIGHTS)))


def model_file(spec: str | os.PathLike) -> str:
    """``spec`` as a file path: a run folder of ``atrous train`` stands for its model.safetensors."""
    text = os.fspath(spec)
    return os.path.join(text, RUN_WEIGHTS) if os.path.isdir(text) else text


def open_model(spec: str, weights: str | None = None, num_classes: int | None = None,
               allow_onnx: bool = True, warn_untrained: bool = True) -> nn.Module:
    """The model named by ``spec`` (a registered name or a file, see the module docstring) in
    eval mode, with its weights record as ``model.record``.

    ``weights`` may accompany a model name; the file's record must then agree with the name.
    ``num_classes`` only shapes an untrained model. A name alone gives initial (untrained)
    weights, with a warning unless ``warn_untrained`` is False."""
    from ..models import create_model, get_entry
    from ..weights import default_record, load

    if is_model_file(spec):
        spec = model_file(spec)
        if weights is not None:
            raise UserError(f"--weights {weights}: {spec} is a weights file already; give one of them")
        spec, weights, name = None, spec, None
    else:
        name = spec
        get_entry(name)  # an unknown name fails here, listing the valid ones
    if weights is None:
        if warn_untrained:
            warnings.warn(f"{name}: no weights given; using initial (untrained) weights", stacklevel=2)
        model = create_model(name, num_classes=num_classes).eval()
        model.record = default_record(model)
        return model
    if str(weights).lower().endswith(".onnx"):
        if not allow_onnx:
            raise UserError(f"{weights}: an ONNX file; this command needs PyTorch weights (.safetensors or .pt)")
        return _onnx_model(weights, name)
    model = load(weights, name)
    if model.record.task != "segmentation":
        raise UserError(f"{weights}: a pretrained encoder with a classification head ({model.record.task}); "
                        f"start a segmentation run from it: --set 'model.init={{path: {weights}, part: encoder}}'")
    if num_classes is not None and num_classes != model.num_classes:
        raise UserError(f"--num-classes {num_classes}: {weights} holds a {model.num_classes}-class model")
    return model


def _onnx_model(path: str, name: str | None):
    from ..models import get_entry
    from .export import OnnxModel

    model = OnnxModel(path)
    saved = model.record.model if model.record else None
    if name is not None and saved not in (None, "onnx") and get_entry(saved) is not get_entry(name):
        raise UserError(f"{path}: holds {saved!r}, not {name!r}")
    return model
