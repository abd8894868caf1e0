"""Compare every model's outputs with its stored golden file (tests/golden/), and rewrite the
files on purpose with ``--write``. Run from the repository root:

    PYTHONPATH=. python scripts/regenerate_golden.py            # report only; exit 1 if any differ
    PYTHONPATH=. python scripts/regenerate_golden.py --write    # rewrite the new and changed files

Per model and probe it prints the max absolute change and the change relative to the stored
output's RMS (the measure the tests bound by ``TOLERANCE``). ``--write`` rewrites only the files
that are missing or beyond the tolerance, each atomically, so a regeneration's diff shows exactly
which models changed. The seeded state and the probes are described in tests/golden_outputs.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from golden_outputs import (INPUT_FILE, TOLERANCE, golden_input, golden_models, golden_path,  # noqa: E402
                            load_golden, load_stored_input, metadata, reference_outputs, relative_error)

from atrous.utils import atomic_path  # noqa: E402

ROW = "{:<16} {:<8} {:<10} {:>14} {:>12}"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=meta)


def compare_input(write: bool) -> bool:
    """Whether the seeded input equals the stored one (writing it when asked)."""
    x = golden_input()
    same = INPUT_FILE.is_file() and torch.equal(load_stored_input(), x)
    print(ROW.format("input", "", "unchanged" if same else ("CHANGED" if INPUT_FILE.is_file() else "new"), "", ""))
    if write and not same:
        save_tensors(INPUT_FILE, {"input": x}, metadata())
    return same


def compare_model(name: str, write: bool) -> bool:
    """Whether every probe output of ``name`` is within ``TOLERANCE`` of its stored file (writing
    the file when asked and it is not)."""
    outputs = reference_outputs(name)
    stored = load_golden(name) if golden_path(name).is_file() else {}
    same = set(stored) == set(outputs)
    for key, y in outputs.items():
        if key not in stored:
            print(ROW.format(name, key, "new", "-", "-"))
        elif stored[key].shape != y.shape:
            print(ROW.format(name, key, "CHANGED", f"shape {tuple(stored[key].shape)}", f"-> {tuple(y.shape)}"))
            same = False
        else:
            rel = relative_error(y, stored[key])
            change = float((y - stored[key]).abs().max())
            same = same and rel <= TOLERANCE
            print(ROW.format(name, key, "unchanged" if rel <= TOLERANCE else "CHANGED", f"{change:.3e}", f"{rel:.3e}"))
    if write and not same:
        save_tensors(golden_path(name), outputs, metadata(name))
    return same


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the missing and changed files")
    parser.add_argument("--models", nargs="*", help="only these models (default: every registered one)")
    args = parser.parse_args(argv)
    models = args.models or golden_models()
    unknown = sorted(set(models) - set(golden_models()))
    if unknown:
        parser.error(f"--models: {', '.join(unknown)} not registered (aliases excluded); "
                     f"valid: {', '.join(golden_models())}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(ROW.format("model", "probe", "status", "max |change|", "/ RMS") + f"   (tolerance {TOLERANCE:g})")
    same = compare_input(args.write)
    for name in models:
        same = compare_model(name, args.write) and same
    if not same:
        print("written." if args.write else "differences found; --write rewrites those files.")
    return 0 if same or args.write else 1


if __name__ == "__main__":
    sys.exit(main())
