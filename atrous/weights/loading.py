"""Weights into models: the one strict check, partial loading, and building a model from a file.

* :func:`load_state` puts a state dict into a model: strictly (every key of the model, or of the
  named ``part``, present with its shape, nothing left over) or, with ``strict=False``, whatever
  fits by name and shape. Either way it returns one :class:`LoadReport`; a strict mismatch raises
  :class:`~atrous.errors.WeightsError` carrying it.
* :func:`load` builds the model a file was trained as (its record: name, every constructor
  override, class count) and loads it strictly, in eval mode, with ``model.record`` attached.
* The authors' checkpoints are recognised by their keys and converted by the family's
  :class:`~atrous.official.KeyMap`.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from ..errors import UserError, WeightsError
from .files import WeightsFile, read_state_mapping, read_weights_file
from .record import WeightsRecord


@dataclass
class LoadReport:
    """What a load did: keys loaded, and the model keys that stayed as they were (missing from the
    file, or mis-shaped there), and the file keys that were not used."""

    source: str
    model: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    misshaped: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, file shape, model shape
    part: str | None = None

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.misshaped)

    @property
    def expected(self) -> int:
        return len(self.loaded) + len(self.missing) + len(self.misshaped)

    def summary(self) -> str:
        """One line: loaded N of M tensors (of the part), and what stayed as initialised or was
        unused, by module."""
        scope = f"{self.part} " if self.part else ""
        text = f"{self.source}: loaded {len(self.loaded)} of {self.expected} {scope}tensors of {self.model}"
        kept = self.missing + [k for k, _, _ in self.misshaped]
        if kept:
            text += f"; kept the initialisation of {len(kept)}: {describe_keys(kept)}"
        if self.unexpected:
            text += f"; {len(self.unexpected)} tensors of the file unused: {describe_keys(self.unexpected)}"
        return text

    def mismatch(self) -> str:
        """One line for a strict failure: the missing, unexpected and mis-shaped keys."""
        parts = []
        if self.missing:
            parts.append(f"missing ({len(self.missing)}): {describe_keys(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected ({len(self.unexpected)}): {describe_keys(self.unexpected)}")
        if self.misshaped:
            shown = ", ".join(f"{k} (file {g} vs model {w})" for k, g, w in self.misshaped[:3])
            more = f" and {len(self.misshaped) - 3} more" if len(self.misshaped) > 3 else ""
            parts.append(f"mis-shaped ({len(self.misshaped)}): {shown}{more}")
        scope = f" ({self.part})" if self.part else ""
        return f"{self.source} does not fit {self.model}{scope}: " + "; ".join(parts)


def describe_keys(keys, listed: int = 4, depth: int = 2, shown: int = 4) -> str:
    """The keys themselves when there are few; else the first and the count by module (their
    first ``depth`` name parts): ``a.b.c.weight, ... (by module: backbone.stage16 x120, decoder x3)``."""
    if len(keys) <= listed:
        return ", ".join(keys)
    counts = Counter(".".join(k.split(".")[:depth]) for k in keys)
    items = [f"{name} x{n}" for name, n in counts.most_common(shown)]
    if len(counts) > shown:
        items.append(f"{len(counts) - shown} more modules")
    return f"{keys[0]}, ... (by module: {', '.join(items)})"


def model_name(model: nn.Module) -> str:
    return getattr(model, "variant", None) or type(model).__name__


def part_prefixes(model: nn.Module, part: str | None) -> tuple[str, ...] | None:
    if part is None:
        return None
    parts = getattr(model, "parts", {}) or {}
    if part not in parts:
        raise UserError(f"part {part!r}: {model_name(model)} has parts {', '.join(sorted(parts)) or 'none'}")
    return tuple(parts[part])


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict",
               part: str | None = None, strict: bool = True) -> LoadReport:
    """Load ``state`` (atrous layout) into ``model``; see the module docstring. With ``part``,
    only the model keys under that part's prefixes are expected and only file keys under them are
    used (the rest of the file is ignored, not unexpected)."""
    prefixes = part_prefixes(model, part)
    own = model.state_dict()
    inside = (lambda k: True) if prefixes is None else (lambda k: k.startswith(prefixes))
    report = LoadReport(source, model_name(model), part=part)
    for key, tensor in own.items():
        if not inside(key):
            continue
        if key not in state:
            report.missing.append(key)
        elif tuple(state[key].shape) != tuple(tensor.shape):
            report.misshaped.append((key, tuple(state[key].shape), tuple(tensor.shape)))
        else:
            report.loaded.append(key)
    report.unexpected = [k for k in state if inside(k) and k not in own]
    if strict and not report.complete:
        raise WeightsError(report.mismatch(), report)
    if not report.loaded and not strict:
        raise WeightsError(f"no tensor fits: {report.mismatch()}", report)
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    return report


def to_model_layout(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` in atrous' layout: as it is when its keys are ours, else converted by the
    family's official key map (the reading that covers most of the model's keys: the authors'
    segmentation checkpoint, or their ImageNet encoder file)."""
    from ..models import get_entry

    keymap = get_entry(model.variant).official if getattr(model, "variant", None) else None
    if keymap is None:
        return dict(state)
    own = model.state_dict()
    readings = [dict(state), *keymap.layouts(state)]
    return max(readings, key=lambda reading: sum(k in own for k in reading))  # ties: as it is


# --------------------------------------------------------------------------- whole models
def _source(weights) -> str:
    return os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else "state dict"


def open_weights(weights, model: str | None = None) -> WeightsFile:
    """A path, or a state dict / checkpoint mapping in memory, as a :class:`WeightsFile`."""
    if isinstance(weights, (str, os.PathLike)):
        return read_weights_file(weights, model)
    return read_state_mapping(weights)


def load(weights, model: str | None = None, **overrides) -> nn.Module:
    """The model ``weights`` were trained as, loaded strictly, in eval mode, with
    ``model.record`` (a :class:`WeightsRecord`) attached.

    ``weights``: an atrous file (its record names the model and every option), a training
    checkpoint, or the authors' checkpoint (give ``model``; the class count is read from the
    classifier). ``model``, when given, must agree with the record. ``overrides`` are constructor
    options for files without a record."""
    from ..models import get_entry

    source = _source(weights)
    file = open_weights(weights, model)
    record = file.record
    if record is not None:
        if model is not None and get_entry(model) is not get_entry(record.model):
            raise WeightsError(f"{source}: holds weights of {record.model!r}, not {model!r}")
        net = build_from_record(record)
        state = file.state
    else:
        if model is None:
            raise UserError(f"{source}: the file names no model (no atrous record); give the model "
                            f"name, e.g. atrous.load(path, 'regseg')")
        net, state = _build_for_state(model, file.state, source, overrides)
    load_state(net, state, source)
    net.record = record or default_record(net, file)
    return net.eval()


def build_from_record(record: WeightsRecord) -> nn.Module:
    """The network a record describes: the segmentation model, or for a pretraining file
    (``task: classification``) its encoder with the classification head."""
    from ..models import create_model

    if record.task == "classification":
        from ..models.classifier import EncoderClassifier

        return EncoderClassifier(record.model, record.num_classes, **record.options)
    return create_model(record.model, num_classes=record.num_classes, **record.options)


def _build_for_state(name: str, state, source: str, overrides: dict):
    """Model ``name`` shaped for a record-less state dict: class count from its classifier,
    options the official key map reads from it, ``state`` in atrous' layout."""
    from ..models import create_model, get_entry

    probe = create_model(name, **overrides)
    state = to_model_layout(probe, state)
    if probe.classifier_key not in state:
        raise WeightsError(f"{source}: no classifier weight {probe.classifier_key!r} (after the "
                           f"official key map); is this a {name} checkpoint?")
    keymap = get_entry(name).official
    options = {**(keymap.options_for(state) if keymap else {}), **overrides}
    return create_model(name, num_classes=state[probe.classifier_key].shape[0], **options), state


def default_record(model: nn.Module, file: WeightsFile | None = None) -> WeightsRecord:
    """A record for weights that carry none: class names and palette of the model card's dataset
    when the class count fits, ImageNet normalisation (the papers' preprocessing)."""
    from ..data import CLASS_NAMES, PALETTES
    from ..models import get_entry

    name = model_name(model)
    dataset = get_entry(name).card.dataset if hasattr(model, "variant") else ""
    fits = dataset in CLASS_NAMES and len(CLASS_NAMES[dataset]) == model.num_classes
    provenance = {"source": file.path, "format": file.kind} if file else {}
    return WeightsRecord(model=name, num_classes=model.num_classes,
                         classes=CLASS_NAMES[dataset] if fits else (),
                         palette=PALETTES[dataset] if fits else (), provenance=provenance)


def from_official(name: str, checkpoint, **overrides) -> nn.Module:
    """Model ``name`` with the authors' weights (a path or a state dict in memory); the class
    count is read from the checkpoint's classifier, keys that do not fit raise a
    :class:`~atrous.errors.WeightsError` listing them."""
    from ..models import get_entry

    if get_entry(name).official is None:
        raise UserError(f"{name}: no official code or checkpoints exist for this model")
    return load(checkpoint, name, **overrides)
