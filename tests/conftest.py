"""Shared test helpers: ../shared (papers, reference fixtures, CamVid) is found from the
repository root; tests that need it skip only where it is absent."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"

torch.set_num_threads(min(2, torch.get_num_threads()))


def reference(name: str) -> Path:
    path = REFERENCE / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def load_fixture(name: str, file: str = "fixture.pt"):
    return torch.load(reference(name) / file, weights_only=True)


def load_meta(name: str) -> dict:
    return json.loads((reference(name) / "meta.json").read_text())


def read_keys_tsv(name: str) -> dict[str, torch.Size]:
    """The official state-dict layout: key -> shape."""
    shapes = {}
    for line in (reference(name) / "keys.tsv").read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        shapes[key] = torch.Size([]) if shape == "scalar" else torch.Size(int(s) for s in shape.split("x"))
    return shapes


def zeros_from_keys(name: str) -> dict[str, torch.Tensor]:
    """A state dict of zeros in the official layout of keys.tsv."""
    out = {}
    for key, shape in read_keys_tsv(name).items():
        out[key] = torch.zeros(shape, dtype=torch.int64 if key.endswith("num_batches_tracked") else torch.float32)
    return out
