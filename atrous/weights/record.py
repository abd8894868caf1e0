"""The weights record: what a weights file says about itself (docs/weights.md).

Every weights file atrous writes (training, search, ``atrous convert``, pretraining) carries one
:class:`WeightsRecord` as JSON in its safetensors metadata (key ``atrous``), and exported ONNX
files carry the same JSON in their ``metadata_props``. The record is enough to rebuild the
network exactly as trained (model name and every constructor override), to read its output (class
names, palette), to feed it (input normalisation, training crop, evaluation resize) and to know
where it came from (recipe, iteration, EMA or plain, metrics, versions, time, content hash), as a
torchvision weights record or a timm pretrained config does.

This module is plain data: it imports neither torch nor the models, so the data layer and the
command line can use its constants.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from ..errors import UserError

RECORD_KEY = "atrous"  # safetensors metadata / ONNX metadata_props key of the record JSON
FORMAT = "atrous-weights/1"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Normalization:
    """How an image becomes the network's input: channels in ``channel_order``, values divided by
    ``value_scale`` (255 for 8-bit images), then ``(x - mean) / std`` per channel. Every model of
    the four papers is trained on ImageNet statistics, the default."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
    value_scale: float = 255.0

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise UserError(f"normalization: expected 3 means and 3 positive stds, got {self.mean}, {self.std}")
        if self.channel_order not in ("RGB", "BGR"):
            raise UserError(f"normalization.channel_order: expected RGB or BGR, got {self.channel_order!r}")

    def apply(self, rgb):
        """H x W x 3 RGB pixel values (numpy) -> the 3 x H x W float32 network input."""
        import numpy as np

        pixels = rgb[..., ::-1] if self.channel_order == "BGR" else rgb
        x = pixels.astype(np.float32).transpose(2, 0, 1) / np.float32(self.value_scale)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(3, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(3, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


@dataclass(frozen=True)
class WeightsRecord:
    """Metadata of one weights file; see the module docstring and docs/weights.md (the table of
    every field)."""

    model: str
    num_classes: int
    options: Mapping[str, Any] = field(default_factory=dict)  # constructor overrides of the config
    task: str = "segmentation"  # or "classification": an encoder pretrained with a classification head
    classes: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    normalization: Normalization = field(default_factory=Normalization)
    train_crop: tuple[int, int] | None = None  # training crop H, W
    eval_resize: int | None = None  # evaluation: shorter side resized to this (None: native size)
    data: Mapping[str, Any] | None = None  # the dataset mapping it was trained on (recipe ``data:``)
    eval_split: str | None = None  # the split ``atrous eval FILE`` evaluates by default
    provenance: Mapping[str, Any] = field(default_factory=dict)  # recipe, iteration, weights, metrics, ...
    sha256: str | None = None  # hash of the tensors (names, dtypes, shapes, bytes), set when saved
    format: str = FORMAT

    def __post_init__(self):
        object.__setattr__(self, "num_classes", int(self.num_classes))
        for name in ("options", "provenance"):  # as JSON keeps them (tuples become lists)
            object.__setattr__(self, name, json.loads(json.dumps(dict(getattr(self, name) or {}))))
        if self.data is not None:
            object.__setattr__(self, "data", json.loads(json.dumps(dict(self.data))))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "palette", tuple(tuple(int(v) for v in c) for c in self.palette))
        if isinstance(self.normalization, Mapping):
            object.__setattr__(self, "normalization", Normalization(**self.normalization))
        if self.train_crop is not None:
            object.__setattr__(self, "train_crop", tuple(int(v) for v in self.train_crop))
        for name, values in (("classes", self.classes), ("palette", self.palette)):
            if values and len(values) != self.num_classes:
                raise UserError(f"record {name}: {len(values)} entries for {self.num_classes} classes")

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "WeightsRecord":
        raw = json.loads(text)
        if not isinstance(raw, dict) or not str(raw.get("format", "")).startswith("atrous-weights/"):
            raise UserError(f"not an atrous weights record (format {raw.get('format') if isinstance(raw, dict) else raw!r})")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def replace(self, **changes) -> "WeightsRecord":
        return type(self)(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})

    # ------------------------------------------------------------------ derived
    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names, or ``0 .. C-1`` where the file names none."""
        return self.classes or tuple(str(k) for k in range(self.num_classes))

    def describe(self) -> str:
        """One line: model, classes, data, provenance."""
        prov = self.provenance
        parts = [f"{self.model} ({self.num_classes} classes)"]
        if self.data:
            parts.append(f"trained on {self.data.get('dataset')}")
        if prov.get("iteration") is not None:
            parts.append(f"{prov.get('weights', 'final')} weights after {prov['iteration']} iterations")
        elif prov.get("source"):
            parts.append(f"from {prov['source']}")
        return ", ".join(parts)


def legacy_record(metadata: Mapping[str, str], model: str | None) -> WeightsRecord | None:
    """The record of a safetensors file written before records existed (atrous 0.1: flat keys
    ``model``, ``num_classes``, ``options``, ``iterations``, ``weights``, ``source``), or None when
    it names no model and none is given."""
    name = metadata.get("model") or model
    if not name or not metadata.get("num_classes"):
        return None
    try:
        options = json.loads(metadata.get("options") or "{}")
        num_classes = int(metadata["num_classes"])
    except ValueError as exc:
        raise UserError(f"metadata of an atrous 0.1 file is malformed: {exc}") from None
    provenance = {"format": "atrous 0.1 (no record)"}
    if metadata.get("iterations"):
        provenance.update(iteration=int(metadata["iterations"]), weights=metadata.get("weights", "final"))
    if metadata.get("source"):
        provenance["source"] = metadata["source"]
    return WeightsRecord(model=name, num_classes=num_classes, options=options, provenance=provenance)
