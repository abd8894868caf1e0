"""Checkpoints and weights.

* Training checkpoints (``DIR/checkpoints/iter_NNNNNNN.pt``) hold the full state: model, optimizer,
  AMP scaler, EMA, iteration and every random-number generator, written atomically (temp file +
  rename) so a kill at any moment leaves the previous checkpoint intact. They load with
  ``weights_only=True``.
* Final weights are safetensors (``DIR/model.safetensors``).
* :func:`load_weights` starts a model from weights trained with another number of classes (e.g.
  Cityscapes -> CamVid, RegSeg Sec 4.2): tensors whose shape differs are left at their
  initialization and reported.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..utils import atomic_path

CHECKPOINT_RE = re.compile(r"iter_(\d+)\.pt")


# --------------------------------------------------------------------------- random states
def rng_state() -> dict:
    """Every generator training draws from, as tensors and ints (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- training checkpoints
def save_checkpoint(path, state: dict) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def list_checkpoints(folder) -> list[Path]:
    """Checkpoints in ``folder`` sorted by iteration (oldest first)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_RE.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def remove_partial_files(folder) -> list[Path]:
    """Delete temp files that a killed process left behind mid-write (atomic_path's ``.tmp-*``)."""
    folder = Path(folder)
    stale = sorted(folder.glob(".tmp-*")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def latest_checkpoint(folder) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def prune_checkpoints(folder, keep: int) -> None:
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def load_checkpoint(path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report which file is bad
        raise ValueError(f"checkpoint {path}: cannot be read ({exc})") from None


# --------------------------------------------------------------------------- weights
def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    """A safetensors file whose bytes depend only on the tensors and metadata: the library writes
    the header's metadata in hash order, so the header is rewritten with sorted keys (the format
    allows any order; offsets are relative to the data section)."""
    from safetensors.torch import save

    raw = save(state, metadata={k: str(v) for k, v in (metadata or {}).items()})
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + size:]


def save_weights(path, model: nn.Module, metadata: dict | None = None) -> Path:
    """``model``'s state dict as safetensors, written atomically and byte-reproducibly."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = safetensors_bytes(state, metadata)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def read_weights(path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from a .pt/.pth (a bare state dict, or one under
    ``model``/``state_dict``/``model_state``), loaded with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights {str(path)!r} do not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ValueError(f"weights {path}: expected a state dict, got {type(state).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def load_weights(model: nn.Module, path, allow_class_change: bool = True) -> list[str]:
    """Load ``path`` into ``model``. Keys must match; tensors whose shape differs (the classifier
    when the number of classes changes) keep their initialization if ``allow_class_change``, and
    their names are returned. Anything else raises an error naming the file and the keys."""
    state = read_weights(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"weights {path}: do not fit {type(model).__name__}: "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    skipped = sorted(k for k in own if own[k].shape != state[k].shape)
    if skipped and not allow_class_change:
        raise ValueError(f"weights {path}: shape mismatch at {skipped}")
    for key in skipped:
        state[key] = own[key]
    model.load_state_dict(state)
    return skipped
