"""Batch prediction on images, folders and videos: class-index PNGs, colour overlays, optional
side-by-side views, and Cityscapes test-server submissions.

Images of any size run at their own size (the model contract pads inside where a network needs
it; an image smaller than the network's minimum is padded and the prediction cropped back);
consecutive images of equal size are batched. Videos (read with OpenCV, the ``video`` extra) give
an overlay video and one class-index PNG per frame. A PyTorch model runs on the fast path of
:func:`~atrous.deploy.prepare_inference` (exact: BatchNorm folded, channels_last); an
:class:`~atrous.deploy.export.OnnxModel` runs in ONNX Runtime. Inputs are normalised as the
weights record says. Where the outputs go is checked first (:mod:`atrous.deploy.outputs`): no
input or other file of the user's is ever overwritten. A bad input is reported by path and the
others are still written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import PALETTES, palette_for
from ..data.base import DataError, read_image
from ..data.classes import CITYSCAPES_LABEL_TO_TRAIN
from ..errors import UserError
from ..weights import Normalization
from .outputs import Item, check_output_folder, index_image, plan_outputs, render, save_png, write_manifest
from .video import predict_video


def train_to_label_ids() -> np.ndarray:
    """Lookup table Cityscapes trainId (0..18) -> labelId; anything else -> 0 (unlabeled)."""
    table = np.zeros(256, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN.items():
        table[train_id] = label_id
    return table


def load_palette(spec: str | None, num_classes: int, dataset: str | None = None) -> np.ndarray:
    """K x 3 uint8 colours. ``spec``: a dataset name (cityscapes, camvid, ade20k, bdd100k), or a
    file listing one class per line, either ``name`` (colours from :func:`palette_for`) or
    ``name,r,g,b``. Default: the dataset's palette when its size fits, else generated."""
    if spec is None:
        spec = dataset if dataset in PALETTES and len(PALETTES[dataset]) == num_classes else None
    if spec is None:
        colours = palette_for([str(k) for k in range(num_classes)])
    elif spec in PALETTES:
        colours = PALETTES[spec]
    elif os.path.isfile(spec):
        colours = _palette_file(spec)
    else:
        raise UserError(f"--palette {spec!r}: expected one of {', '.join(sorted(PALETTES))} or a class-list file")
    if len(colours) < num_classes:
        raise UserError(f"palette {spec}: {len(colours)} colours for a model with {num_classes} classes")
    return np.asarray(colours, dtype=np.uint8)


def _palette_file(spec: str):
    names, given = [], []
    with open(spec) as f:
        for number, line in enumerate(f, 1):
            parts = [p.strip() for p in line.strip().split(",")]
            if not parts[0]:
                continue
            names.append(parts[0])
            if len(parts) == 4:
                try:
                    given.append(tuple(int(v) for v in parts[1:]))
                except ValueError:
                    raise UserError(f"{spec}:{number}: expected 'name,r,g,b' with integers, got {line.strip()!r}") from None
            elif len(parts) != 1:
                raise UserError(f"{spec}:{number}: expected 'name' or 'name,r,g,b', got {line.strip()!r}")
    if given and len(given) != len(names):
        raise UserError(f"{spec}: give colours for every class or for none")
    return given or palette_for(names)


def palette_of(model, spec: str | None = None) -> np.ndarray:
    """``--palette`` if given, else the weights record's palette, else a generated one."""
    record = getattr(model, "record", None)
    if spec is None and record is not None and record.palette:
        return np.asarray(record.palette, dtype=np.uint8)
    return load_palette(spec, model.num_classes)


@dataclass
class Predictor:
    """Runs a model on uint8 RGB frames (H x W x 3); returns H x W class indices. Frames are
    normalised by ``normalization`` (the weights record's, default ImageNet); a frame smaller than
    the network's ``min_size`` is padded (zeros after normalisation: the mean colour) and the
    prediction cropped back."""

    model: torch.nn.Module
    device: str = "cpu"
    normalization: Normalization = field(default_factory=Normalization)
    backend: str | None = None  # another backend (atrous.deploy.auto.on_backend); None: the fused model
    threads: int | None = None
    runner: torch.nn.Module = field(init=False)

    def __post_init__(self):
        from .auto import on_backend
        from .export import OnnxModel
        from .fuse import prepare_inference

        if isinstance(self.model, OnnxModel):
            self.runner, self.min_size = self.model, 1
        elif self.backend is not None:
            self.runner = on_backend(self.model, self.backend, self.threads)
            self.min_size = getattr(self.model, "min_size", 1)
        else:
            self.runner = prepare_inference(self.model.to(self.device), channels_last=self.device == "cpu")
            self.min_size = getattr(self.model, "min_size", 1)

    def __call__(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = torch.from_numpy(np.stack([self.normalization.apply(f) for f in frames])).to(self.device)
        h, w = x.shape[-2:]
        pad_h, pad_w = max(0, self.min_size - h), max(0, self.min_size - w)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.runner(x)[..., :h, :w]
        return list(logits.argmax(1).to(torch.int32).cpu().numpy())


def _image_batches(items: list[Item], batch: int, failed: list) -> Iterator[list[tuple[Item, np.ndarray]]]:
    """Consecutive readable images of equal size, at most ``batch`` at a time; an unreadable one
    goes to ``failed`` as ``(path, reason)``."""
    group: list[tuple[Item, np.ndarray]] = []
    for item in items:
        try:
            frame = np.asarray(read_image(item.path))
        except DataError as exc:
            failed.append((item.path, str(exc)))
            continue
        if group and (len(group) == batch or group[0][1].shape != frame.shape):
            yield group
            group = []
        group.append((item, frame))
    if group:
        yield group


def predict(model: torch.nn.Module, inputs: Sequence[str], out: str, palette: np.ndarray | None = None,
            side_by_side: bool = False, batch: int = 1, cityscapes_submission: bool = False,
            device: str = "cpu", progress: bool = True, backend: str | None = None,
            threads: int | None = None) -> dict:
    """Predict every image and video in ``inputs`` into folder ``out``.

    Images: ``<name>.png`` (class indices) and ``<name>_overlay.png`` (or ``<name>_side.png``).
    Videos: ``<name>_overlay.mp4`` (or ``_side.mp4``) and ``<name>/<frame>.png`` class indices.
    ``cityscapes_submission``: only labelId PNGs named ``<city>_<seq>_<frame>_labelIds.png``,
    flat in ``out``. ``backend`` runs the model on another backend (a name, or ``auto``: the fastest
    that passes the accuracy gate on this machine, atrous.deploy.auto). ``OUT/predict.json`` lists
    what was written. Returns the counts written and
    ``failed``: ``(path, reason)`` of every input that could not be predicted."""
    from ..progress import progress as progress_bar

    if batch < 1:
        raise UserError(f"--batch: must be >= 1, got {batch}")
    if cityscapes_submission and model.num_classes != 19:
        raise UserError(f"--cityscapes-submission: needs a 19-class Cityscapes model, this one has "
                        f"{model.num_classes} classes")
    items = plan_outputs(inputs, side_by_side, cityscapes_submission)
    previous = check_output_folder(out, inputs, items)
    images = [i for i in items if i.kind == "image"]
    videos = [i for i in items if i.kind == "video"]
    palette = palette_of(model) if palette is None else palette
    record = getattr(model, "record", None)
    predictor = Predictor(model, device, record.normalization if record else Normalization(), backend, threads)
    os.makedirs(out, exist_ok=True)
    summary = {"model": record.describe() if record else type(model).__name__, "images": 0, "videos": 0,
               "frames": 0, "failed": []}
    write_manifest(out, items, previous, summary)  # before the first prediction: see outputs.py
    failed = summary["failed"]
    label_ids = train_to_label_ids() if cityscapes_submission else None
    bar = progress_bar(total=len(images), desc="predict", unit="img", disable=not progress or not images)
    for group in _image_batches(images, batch, failed):
        try:
            results = predictor([frame for _, frame in group])
        except UserError as exc:  # e.g. a static-size ONNX graph and an image of another size
            failed += [(item.path, str(exc)) for item, _ in group]
            continue
        for (item, frame), labels in zip(group, results):
            _write_image_outputs(out, item, frame, labels, palette, side_by_side, label_ids)
        summary["images"] += len(group)
        bar.update(len(group))
    bar.close()
    for item in videos:
        try:
            summary["frames"] += predict_video(predictor, item.path, os.path.join(out, item.outputs[0]),
                                               os.path.join(out, item.outputs[1]), palette, side_by_side,
                                               batch, progress)
            summary["videos"] += 1
        except (UserError, OSError) as exc:
            failed.append((item.path, str(exc)))
    if hasattr(predictor.runner, "describe"):
        summary["backend"] = predictor.runner.describe()
    write_manifest(out, items, previous, summary)
    return {**summary, "out": out}


def _write_image_outputs(out, item: Item, frame, labels, palette, side_by_side, label_ids) -> None:
    if label_ids is not None:
        save_png(label_ids[labels], os.path.join(out, item.outputs[0]))
        return
    save_png(index_image(labels), os.path.join(out, item.outputs[0]))
    save_png(render(frame, labels, palette, side_by_side), os.path.join(out, item.outputs[1]))
