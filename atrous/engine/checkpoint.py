"""Training checkpoints and random-number states.

Training checkpoints (``DIR/checkpoints/iter_NNNNNNN.pt``) hold the full state: model, optimizer,
AMP scaler, EMA, iteration, every random-number generator and the weights record, written
atomically (temp file + rename) so a kill at any moment leaves the previous checkpoint intact.
They are read by :mod:`atrous.weights` (``weights_only``; no code runs). Final weights
(``DIR/model.safetensors``) are written by :func:`atrous.weights.save_weights`.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch
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
    """The full training state of a checkpoint, read by the one weights reader (no code runs)."""
    from ..weights import torch_load

    return torch_load(path)
