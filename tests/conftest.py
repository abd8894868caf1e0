"""Shared test helpers: ../shared (papers, reference fixtures, CamVid) is found from the
repository root. Tests that need it skip where it is absent, except in CI (the environment variable
``CI`` set, as by .ci/run), where a missing ../shared fails them: CI must not pass by skipping."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"

torch.set_num_threads(min(2, torch.get_num_threads()))


def in_ci() -> bool:
    """Whether the tests run in CI: ``CI`` set to anything but empty, 0, false or no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared(*parts: str) -> Path:
    """``../shared/PARTS``; where it is absent the test skips, or fails in CI."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if in_ci():
            pytest.fail(f"{path} is absent: CI (CI={os.environ['CI']!r}) needs ../shared beside the repository "
                        f"(papers, reference fixtures, CamVid); unset CI to skip these tests instead", pytrace=False)
        pytest.skip(f"{path} is absent")
    return path


def import_script(relative: str):
    """A script of the repository (e.g. ``benchmarks/gpu_check.py``) imported as a module."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def reference(name: str) -> Path:
    return shared("reference", name)


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
