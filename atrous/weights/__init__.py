"""Weights files: the record every file carries, reading and writing them, and loading them
into models (docs/weights.md). Every command and the trainer go through this package.

    model = atrous.load("runs/toy/model.safetensors")   # built as trained, eval mode
    model.record.classes, model.record.normalization    # what the file says about itself
    report = load_state(model, state, part="encoder", strict=False)
"""
from .files import (WEIGHTS_SUFFIXES, WeightsFile, is_weights_path, read_state_mapping, read_weights_file,
                    safetensors_bytes, save_weights, tensor_hash, torch_load)
from .loading import (LoadReport, default_record, from_official, load, load_state, open_weights,
                      to_model_layout)
from .record import IMAGENET_MEAN, IMAGENET_STD, RECORD_KEY, Normalization, WeightsRecord


def convert_official(name: str, checkpoint) -> dict:
    """The authors' state dict of ``name`` (path or mapping) in atrous' key layout."""
    from ..errors import UserError
    from ..models import get_entry

    keymap = get_entry(name).official
    if keymap is None:
        raise UserError(f"{name}: no official code or checkpoints exist for this model")
    return keymap.convert(open_weights(checkpoint, name).state)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LoadReport", "Normalization", "RECORD_KEY", "WEIGHTS_SUFFIXES",
           "WeightsFile", "WeightsRecord", "convert_official", "default_record", "from_official",
           "is_weights_path", "load", "load_state", "open_weights", "read_state_mapping", "read_weights_file",
           "safetensors_bytes", "save_weights", "tensor_hash", "to_model_layout", "torch_load"]
