"""Batch prediction on images, folders and videos: class-index PNGs, colour overlays, optional
side-by-side views, and Cityscapes test-server submissions.

Images of any size run at their own size (the model contract pads inside where a network needs
it); consecutive images of equal size are batched. Videos (read with OpenCV, the ``video`` extra)
give an overlay video and one class-index PNG per frame. The model runs on the fast path of
:func:`~atrous.deploy.prepare_inference` (exact: BatchNorm folded, channels_last).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ..data import CLASS_NAMES, PALETTES, colorize, palette_for
from ..data.classes import CITYSCAPES_LABEL_TO_TRAIN
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..utils import atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# <city>_<sequence>_<frame>: what the Cityscapes evaluation matches a prediction on
# (cityscapesScripts' getPrediction looks for "<city>_<seq>_<frame>*.png").
CITYSCAPES_NAME = re.compile(r"^(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})")


def train_to_label_ids() -> np.ndarray:
    """Lookup table Cityscapes trainId (0..18) -> labelId; anything else -> 0 (unlabeled)."""
    table = np.zeros(256, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN.items():
        table[train_id] = label_id
    return table


def submission_name(path: str) -> str:
    """``berlin_000000_000019_leftImg8bit.png`` -> ``berlin_000000_000019_labelIds.png``; a name
    the Cityscapes server can match raises a ValueError otherwise."""
    stem = os.path.basename(path)
    match = CITYSCAPES_NAME.match(stem)
    if match is None:
        raise ValueError(f"{path}: not a Cityscapes image name (<city>_<6 digits>_<6 digits>_leftImg8bit.png); "
                         f"the test server matches predictions by that prefix")
    return f"{match['city']}_{match['seq']}_{match['frame']}_labelIds.png"


def load_palette(spec: str | None, num_classes: int, dataset: str | None = None) -> np.ndarray:
    """K x 3 uint8 colours. ``spec``: a dataset name (cityscapes, camvid, ade20k, bdd100k), or a
    file listing one class per line, either ``name`` (colours from :func:`palette_for`) or
    ``name,r,g,b``. Default: the model card's dataset palette when its size fits, else generated."""
    if spec is None:
        spec = dataset if dataset in PALETTES and len(PALETTES[dataset]) == num_classes else None
    if spec is None:
        colours = palette_for([str(k) for k in range(num_classes)])
    elif spec in PALETTES:
        colours = PALETTES[spec]
    elif os.path.isfile(spec):
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
                        raise ValueError(f"{spec}:{number}: expected 'name,r,g,b' with integers, got {line.strip()!r}")
                elif len(parts) != 1:
                    raise ValueError(f"{spec}:{number}: expected 'name' or 'name,r,g,b', got {line.strip()!r}")
        if given and len(given) != len(names):
            raise ValueError(f"{spec}: give colours for every class or for none")
        colours = given or palette_for(names)
    else:
        raise ValueError(f"--palette {spec!r}: expected one of {', '.join(sorted(PALETTES))} or a class-list file")
    if len(colours) < num_classes:
        raise ValueError(f"palette {spec}: {len(colours)} colours for a model with {num_classes} classes")
    return np.asarray(colours, dtype=np.uint8)


def collect_inputs(inputs: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(kind, path, relative name)`` for every image and video in ``inputs`` (files or folders,
    searched recursively); the relative name keeps folder structure in the output."""
    found = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, names in sorted(os.walk(item)):
                for name in sorted(names):
                    path = os.path.join(root, name)
                    kind = _kind(path)
                    if kind:
                        found.append((kind, path, os.path.relpath(path, item)))
        elif os.path.isfile(item):
            kind = _kind(item)
            if kind is None:
                raise ValueError(f"{item}: not an image ({', '.join(IMAGE_EXTENSIONS)}) "
                                 f"or a video ({', '.join(VIDEO_EXTENSIONS)})")
            found.append((kind, item, os.path.basename(item)))
        else:
            raise FileNotFoundError(f"input: no such file or folder {item}")
    if not found:
        raise ValueError(f"inputs {' '.join(inputs)}: no images or videos found")
    return found


def _kind(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    return "image" if ext in IMAGE_EXTENSIONS else "video" if ext in VIDEO_EXTENSIONS else None


@dataclass
class Predictor:
    """Runs a model on uint8 RGB frames (H x W x 3); returns H x W class indices."""

    model: torch.nn.Module
    device: str = "cpu"
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    runner: torch.nn.Module = field(init=False)

    def __post_init__(self):
        from .fuse import prepare_inference

        self.runner = prepare_inference(self.model.to(self.device), channels_last=self.device == "cpu")
        self._mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1) * 255

    def __call__(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
        logits = self.runner((x - self._mean) / self._std)
        labels = logits.argmax(1).to(torch.int32).cpu().numpy()
        return list(labels)


def _save_png(array: np.ndarray, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def index_image(labels: np.ndarray) -> np.ndarray:
    return labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)


def render(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, side_by_side: bool,
           alpha: float = 0.5) -> np.ndarray:
    """The colour overlay (``alpha`` of the class colour over the image), or with
    ``side_by_side`` the image and the colour mask next to each other."""
    colours = colorize(labels, palette)
    if side_by_side:
        return np.concatenate([frame, colours], axis=1)
    return (frame * (1 - alpha) + colours * alpha).round().astype(np.uint8)


def _batches(items: list[tuple[str, str]], batch: int) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Consecutive images of equal size, at most ``batch`` at a time."""
    group: list[tuple[str, np.ndarray]] = []
    for path, rel in items:
        with Image.open(path) as img:
            frame = np.asarray(img.convert("RGB"))
        if group and (len(group) == batch or group[0][1].shape != frame.shape):
            yield group
            group = []
        group.append((rel, frame))
    if group:
        yield group


def predict(model: torch.nn.Module, inputs: Sequence[str], out: str, palette: np.ndarray | None = None,
            side_by_side: bool = False, batch: int = 1, cityscapes_submission: bool = False,
            device: str = "cpu", progress: bool = True) -> dict:
    """Predict every image and video in ``inputs`` into folder ``out``.

    Images: ``<name>.png`` (class indices) and ``<name>_overlay.png`` (or ``<name>_side.png``).
    Videos: ``<name>_overlay.mp4`` (or ``_side.mp4``) and ``<name>/<frame>.png`` class indices.
    ``cityscapes_submission``: only labelId PNGs named ``<city>_<seq>_<frame>_labelIds.png``,
    flat in ``out`` (nothing else, so the server finds exactly one prediction per image).
    Returns counts of images, videos and frames written."""
    from tqdm import tqdm

    if batch < 1:
        raise ValueError(f"--batch: must be >= 1, got {batch}")
    found = collect_inputs(inputs)
    images = [(p, rel) for kind, p, rel in found if kind == "image"]
    videos = [(p, rel) for kind, p, rel in found if kind == "video"]
    label_ids = None
    if cityscapes_submission:
        if videos:
            raise ValueError(f"--cityscapes-submission: takes images only, got video {videos[0][0]}")
        if model.num_classes != 19:
            raise ValueError(f"--cityscapes-submission: needs a 19-class Cityscapes model, this one has "
                             f"{model.num_classes} classes")
        names = [submission_name(p) for p, _ in images]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"--cityscapes-submission: several inputs map to {duplicates[0]}")
        images = [(p, n) for (p, _), n in zip(images, names)]
        label_ids = train_to_label_ids()
    if palette is None:
        palette = load_palette(None, model.num_classes)
    predictor = Predictor(model, device)
    frames_total = sum(_frame_count(p) for p, _ in videos)
    bar = tqdm(total=len(images) + frames_total, desc="predict", unit="img", disable=not progress)
    os.makedirs(out, exist_ok=True)
    for group in _batches(images, batch):
        for (rel, frame), labels in zip(group, predictor([f for _, f in group])):
            if label_ids is not None:
                _save_png(label_ids[labels], os.path.join(out, rel))
            else:
                stem = os.path.splitext(rel)[0]
                _save_png(index_image(labels), os.path.join(out, stem + ".png"))
                suffix = "_side.png" if side_by_side else "_overlay.png"
                _save_png(render(frame, labels, palette, side_by_side), os.path.join(out, stem + suffix))
        bar.update(len(group))
    frames = 0
    for path, rel in videos:
        frames += _predict_video(predictor, path, os.path.join(out, os.path.splitext(rel)[0]), palette,
                                 side_by_side, batch, bar)
    bar.close()
    return {"images": len(images), "videos": len(videos), "frames": frames, "out": out}


def _open_video(path: str):
    try:
        import cv2
    except ImportError:
        raise ImportError("videos need OpenCV: pip install 'atrous[video]' (opencv-python-headless)") from None
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open this video")
    return cv2, capture


def _frame_count(path: str) -> int:
    cv2, capture = _open_video(path)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return max(count, 0)


def _predict_video(predictor: Predictor, path: str, stem: str, palette, side_by_side: bool,
                   batch: int, bar) -> int:
    cv2, capture = _open_video(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    video_out = stem + ("_side.mp4" if side_by_side else "_overlay.mp4")
    os.makedirs(stem, exist_ok=True)
    written = 0
    writer = None
    try:
        with atomic_path(video_out) as tmp:
            while True:
                frames = []
                while len(frames) < batch:
                    ok, bgr = capture.read()
                    if not ok:
                        break
                    frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
                if not frames:
                    break
                for frame, labels in zip(frames, predictor(frames)):
                    picture = render(frame, labels, palette, side_by_side)
                    if writer is None:
                        h, w = picture.shape[:2]
                        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                        if not writer.isOpened():
                            raise ValueError(f"{video_out}: OpenCV cannot write an mp4v video here")
                    writer.write(np.ascontiguousarray(picture[:, :, ::-1]))
                    _save_png(index_image(labels), os.path.join(stem, f"{written:06d}.png"))
                    written += 1
                bar.update(len(frames))
            if writer is not None:
                writer.release()
                writer = None
            if written == 0:
                raise ValueError(f"{path}: no frames could be read")
    finally:
        if writer is not None:
            writer.release()
        capture.release()
    return written
