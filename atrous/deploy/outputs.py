"""Where ``atrous predict`` writes, decided and checked before anything is written.

A user's files are never overwritten: the output folder may not be, or lie inside, an input
folder; no planned output may be an input; and a folder that already holds files is written into
only where those files were written by an earlier ``atrous predict`` (listed in its manifest,
``predict.json``). The manifest is written before the first prediction, so an interrupted run's
files stay recognisable as predictions.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..data import colorize
from ..data.base import IMAGE_EXTENSIONS
from ..errors import MissingFile, UserError
from ..utils import atomic_path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MANIFEST = "predict.json"
# <city>_<sequence>_<frame>: what the Cityscapes evaluation matches a prediction on
# (cityscapesScripts' getPrediction looks for "<city>_<seq>_<frame>*.png").
CITYSCAPES_NAME = re.compile(r"^(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})")


@dataclass
class Item:
    """One input and the files predicted from it (paths relative to the output folder)."""

    kind: str  # "image" | "video"
    path: str
    outputs: list[str] = field(default_factory=list)


def media_kind(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    return "image" if ext in IMAGE_EXTENSIONS else "video" if ext in VIDEO_EXTENSIONS else None


def collect_inputs(inputs: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(kind, path, relative name)`` for every image and video in ``inputs`` (files or folders,
    searched recursively); the relative name keeps folder structure in the output."""
    found = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, names in sorted(os.walk(item)):
                for name in sorted(names):
                    path = os.path.join(root, name)
                    if media_kind(path):
                        found.append((media_kind(path), path, os.path.relpath(path, item)))
        elif os.path.isfile(item):
            if media_kind(item) is None:
                raise UserError(f"{item}: not an image ({', '.join(IMAGE_EXTENSIONS)}) "
                                f"or a video ({', '.join(VIDEO_EXTENSIONS)})")
            found.append((media_kind(item), item, os.path.basename(item)))
        else:
            raise MissingFile(f"input: no such file or folder {item}")
    if not found:
        raise UserError(f"inputs {' '.join(inputs)}: no images or videos found")
    return found


def submission_name(path: str) -> str:
    """``berlin_000000_000019_leftImg8bit.png`` -> ``berlin_000000_000019_labelIds.png``; a name
    the Cityscapes server cannot match raises a UserError."""
    match = CITYSCAPES_NAME.match(os.path.basename(path))
    if match is None:
        raise UserError(f"{path}: not a Cityscapes image name (<city>_<6 digits>_<6 digits>_leftImg8bit.png); "
                        f"the test server matches predictions by that prefix")
    return f"{match['city']}_{match['seq']}_{match['frame']}_labelIds.png"


def plan_outputs(inputs: Sequence[str], side_by_side: bool, submission: bool) -> list[Item]:
    """Every input with the output files it will get (see :func:`atrous.deploy.predict.predict`)."""
    items = []
    suffix = "_side" if side_by_side else "_overlay"
    for kind, path, rel in collect_inputs(inputs):
        stem = os.path.splitext(rel)[0]
        if submission:
            if kind == "video":
                raise UserError(f"--cityscapes-submission: takes images only, got video {path}")
            outputs = [submission_name(path)]
        elif kind == "image":
            outputs = [stem + ".png", stem + suffix + ".png"]
        else:
            outputs = [stem + suffix + ".mp4", stem + os.sep]  # the overlay video, a folder of frames
        items.append(Item(kind, path, outputs))
    planned = [o for item in items for o in item.outputs]
    repeated = sorted({o for o in planned if planned.count(o) > 1})
    if repeated:
        raise UserError(f"inputs: several inputs would write {repeated[0]}; predict them into separate folders")
    return items


def check_output_folder(out: str, inputs: Sequence[str], items: list[Item]) -> set[str]:
    """Refuse (UserError) an output folder that would overwrite anything of the user's; returns
    the outputs an earlier ``atrous predict`` listed in ``out``'s manifest."""
    out_real = os.path.realpath(out)
    for given in inputs:
        if os.path.isdir(given):
            folder = os.path.realpath(given)
            if out_real == folder or out_real.startswith(folder + os.sep):
                raise UserError(f"--out {out}: is, or is inside, the input folder {given}; predictions "
                                f"would mix with (and could overwrite) the inputs. Choose a folder outside it")
    input_files = {os.path.realpath(item.path) for item in items}
    for item in items:
        for rel in item.outputs:
            if os.path.realpath(os.path.join(out, rel)) in input_files:
                raise UserError(f"--out {out}: {rel} would overwrite the input {item.path}")
    previous = read_manifest(out)
    if os.path.isdir(out):
        for item in items:
            for rel in item.outputs:
                target = os.path.join(out, rel)
                if os.path.lexists(target.rstrip(os.sep)) and rel not in previous:
                    raise UserError(f"--out {out}: {rel} exists and was not written by atrous predict; "
                                    f"choose a new or empty folder")
    elif os.path.exists(out):
        raise UserError(f"--out {out}: exists and is not a folder")
    return previous


def read_manifest(out: str) -> set[str]:
    path = Path(out) / MANIFEST
    if not path.is_file():
        return set()
    try:
        return set(json.loads(path.read_text()).get("outputs", []))
    except (ValueError, AttributeError):
        raise UserError(f"{path}: not an atrous predict manifest; choose another --out") from None


def write_manifest(out: str, items: list[Item], previous: set[str], summary: dict) -> None:
    """``OUT/predict.json``: every output this and earlier runs wrote there, and the summary."""
    outputs = sorted(previous | {o for item in items for o in item.outputs})
    with atomic_path(Path(out) / MANIFEST) as tmp:
        Path(tmp).write_text(json.dumps({"outputs": outputs, **summary}, indent=1))


def save_png(array: np.ndarray, path: str) -> None:
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
