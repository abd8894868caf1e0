"""Reading and writing weights files: the one place atrous touches them on disk.

Readable: atrous' safetensors files (with or without a record), atrous' training checkpoints, and
PyTorch ``.pt``/``.pth`` files in every layout the authors' repositories write: a bare state dict,
``{'model': ...}`` (RegSeg), ``{'state_dict': ...}`` with ``module.``/``model.`` prefixes (DSNet),
``{'model_state': ...}`` (FASSD-Net), beside numpy scalars such as DSNet's ``best_mIoU`` or
FASSD-Net's ``best_iou``. PyTorch files load with ``weights_only=True`` and an allow-list of those
numpy scalar types only: a file holding any other pickled object is refused, and no code from it
ever runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import MissingFile, WeightsError
from ..utils import atomic_path
from .record import RECORD_KEY, WeightsRecord, legacy_record

TORCH_SUFFIXES = (".pt", ".pth", ".tar", ".bin", ".ckpt")
WEIGHTS_SUFFIXES = (".safetensors",) + TORCH_SUFFIXES
WRAPPERS = ("model", "state_dict", "model_state")  # RegSeg, DSNet, FASSD-Net training files


@dataclass
class WeightsFile:
    """What a weights file holds: the tensors (unwrapped, ``module.`` removed), the record when
    atrous wrote it, its ``kind`` and, for a training checkpoint, the rest of the training state."""

    path: str
    state: dict[str, torch.Tensor]
    record: WeightsRecord | None
    kind: str  # "atrous" | "atrous 0.1" | "checkpoint" | "pytorch" (a state dict: ours or the authors')
    metadata: dict[str, str] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None  # the full training state of an atrous checkpoint


def is_weights_path(text: str | os.PathLike) -> bool:
    """Whether ``text`` names a weights file by its suffix (safetensors or a PyTorch file)."""
    return str(text).lower().endswith(WEIGHTS_SUFFIXES)


# --------------------------------------------------------------------------- safe torch.load
def _numpy_scalar_globals() -> list:
    """The numpy objects a pickled numpy scalar refers to (numpy 1.x and 2.x names)."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    found = [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    names = ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType",
             "Int8DType", "UInt8DType", "BoolDType")
    found += [getattr(np.dtypes, n) for n in names if hasattr(np, "dtypes") and hasattr(np.dtypes, n)]
    return found


def torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` with numpy scalars allowed; anything else pickled is
    refused with atrous' own message (never PyTorch's hint about loading it unsafely)."""
    path = os.fspath(path)
    _require_file(path)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        objects = [found.group(1)] if found else foreign_globals(path)
        if objects:
            raise WeightsError(f"{path}: holds pickled Python objects ({', '.join(objects[:3])}) besides "
                               f"tensors; atrous never runs code from a weights file and does not read this "
                               f"one. Load a plain state dict or a .safetensors file instead") from None
        raise WeightsError(f"{path}: not a readable PyTorch weights file (its pickle data is not plain "
                           f"tensors and numbers)") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({reason})") from None


def foreign_globals(path: str) -> list[str]:
    """The Python objects (``module.name``) a pickled file refers to, other than torch's tensor
    and storage rebuilders, ``collections.OrderedDict`` and numpy scalars: read from the pickle
    opcodes (``pickletools``, which executes nothing)."""
    import io
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name) if name else b""
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, zipfile.BadZipFile):
        return []
    found, strings, stream = [], [], io.BytesIO(data)
    try:
        while stream.tell() < len(data):  # the legacy format holds several pickles in a row
            for op, arg, _ in pickletools.genops(stream):
                if op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except (ValueError, pickle.UnpicklingError, EOFError):
        pass
    safe = ("torch.", "collections.OrderedDict", "numpy.")
    return [g for g in dict.fromkeys(found) if not g.startswith(safe)]


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise MissingFile(f"weights {path}: no such file")


# --------------------------------------------------------------------------- reading
def read_weights_file(path: str | os.PathLike, model: str | None = None) -> WeightsFile:
    """Read any weights file atrous knows (see the module docstring). ``model`` names the model
    for files that do not (atrous 0.1 files written by ``model_best``, the authors' files)."""
    path = os.fspath(path)
    if path.lower().endswith(".safetensors"):
        return _read_safetensors(path, model)
    return read_state_mapping(torch_load(path), path)


def _read_safetensors(path: str, model: str | None) -> WeightsFile:
    from safetensors import SafetensorError, safe_open

    _require_file(path)
    try:
        with safe_open(path, framework="pt") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if RECORD_KEY in metadata:
        try:
            record = WeightsRecord.from_json(metadata[RECORD_KEY])
        except (ValueError, TypeError) as exc:
            raise WeightsError(f"{path}: its weights record cannot be read ({exc})") from None
        if record.sha256 and record.sha256 != tensor_hash(state):
            raise WeightsError(f"{path}: the tensors do not match the content hash in its record; "
                               f"the file was changed after atrous wrote it")
        return WeightsFile(path, state, record, "atrous", metadata)
    try:
        record = legacy_record(metadata, model)
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    return WeightsFile(path, state, record, "atrous 0.1", metadata)


def read_state_mapping(loaded: Any, source: str = "state dict") -> WeightsFile:
    """A :class:`WeightsFile` from what ``torch.load`` returned (or a mapping given in memory):
    unwraps the authors' layouts and atrous checkpoints, removes ``module.`` prefixes."""
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{source}: expected a state dict (a mapping of names to tensors), "
                           f"got {type(loaded).__name__}")
    record, kind, checkpoint = None, "pytorch", None
    if {"iteration", "model", "optimizer", "rng"} <= set(loaded):  # atrous' training checkpoint
        kind, checkpoint = "checkpoint", dict(loaded)
        if loaded.get("record"):
            record = WeightsRecord.from_json(loaded["record"])
    state = loaded
    for wrapper in WRAPPERS:
        if isinstance(loaded.get(wrapper), Mapping):
            state = loaded[wrapper]
            break
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        tensors[key[len("module."):] if key.startswith("module.") else key] = value
    return WeightsFile(source, tensors, record, kind, checkpoint=checkpoint)


# --------------------------------------------------------------------------- writing
def tensor_hash(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def safetensors_bytes(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """A safetensors file whose bytes depend only on the tensors and metadata: the library writes
    the header's metadata in hash order, so the header is rewritten with sorted keys (the format
    allows any order; offsets are relative to the data section)."""
    from safetensors.torch import save

    raw = save(dict(state), metadata={k: str(v) for k, v in (metadata or {}).items()})
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8: 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + size:]


def save_weights(path: str | os.PathLike, model: torch.nn.Module, record: WeightsRecord) -> Path:
    """``model``'s state dict as safetensors with ``record`` (its content hash filled in), written
    atomically and byte-reproducibly. The record is also attached as ``model.record``."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    record = record.replace(sha256=tensor_hash(state))
    data = safetensors_bytes(state, {RECORD_KEY: record.to_json()})
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    model.record = record
    return Path(path)
