"""Training recipes: YAML files with deep defaults, ``--set key=value`` overrides and strict keys.

A recipe is a bundled name (``atrous/recipes/NAME.yaml``) or a path to a YAML file. It is merged
over :data:`DEFAULTS`; every key must exist in the defaults, except inside the open mappings
``data`` (handed to :func:`atrous.data.build_dataset`, which checks its own keys) and
``model.options`` (fields of the model's config dataclass, checked by ``create_model``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..errors import MissingFile, UnknownName, UserError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# Paths whose contents are free-form mappings (checked by their consumer, not here).
OPEN_KEYS = ("data", "model.options")
# Keys that moved: old path -> new path (an error that names the new key).
MOVED_KEYS = {"model.sync_bn": "train.sync_bn"}

DEFAULTS: dict[str, Any] = {
    "recipe": None,  # set by load_config: the bundled name or the path the run was made from
    "seed": 0,  # RegSeg Sec 4.3: seed before initialization; reseeded with seed + epoch per epoch
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "model": {
        "name": "regseg",
        "options": {},  # overrides of the model's config dataclass
        "init": None,  # weights to start from (.safetensors/.pt); classifier may have other classes
    },
    "data": {"dataset": "toy"},
    "train": {
        "split": "train",
        "batch_size": 8,  # per process: the global batch is batch_size x processes
        "sync_bn": False,  # many processes: BatchNorm statistics over the global batch (any backend)
        "epochs": None,  # give epochs or max_iters (max_iters wins when both are set)
        "max_iters": None,
        "num_workers": 0,
        "lr": 0.05,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1e-4,
        "decay_bn": False,  # RegSeg Sec 4.2: no weight decay on BatchNorm parameters
        "decay_bias": True,  # set False to exclude every bias from weight decay as well
        "poly_power": 0.9,
        "warmup_iters": 0,
        "warmup_factor": 0.1,  # linear warmup from warmup_factor * lr to lr
        "grad_clip": None,  # max global gradient norm, or null
        "precision": "auto",  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
        "ema": {"enabled": False, "alpha": 0.0031, "every": 32},  # RegSeg Sec 4.2
        "log_every": 10,
        "checkpoint_every": 500,
        "keep_checkpoints": 2,
        "eval_every": None,  # iterations between evaluations on eval.split, or null
    },
    "loss": {
        "name": "ce",  # ce | ohem_regseg | ohem_dsnet | bootstrap
        "threshold": None,  # pixel-loss threshold (ohem_regseg, bootstrap: 0.3) or probability (ohem_dsnet: 0.9)
        "keep_fraction": None,  # ohem_regseg: at least this fraction of the batch's pixels (1/16)
        "min_kept": None,  # ohem_dsnet: 131072 per process; bootstrap: 4096 per image
        "main_weight": 1.0,  # weight of the main output's loss (DSNet official: 0.6)
        "aux_weights": [],  # one weight per auxiliary head, in the model's output order
        "aux_loss": "same",  # loss of the auxiliary heads: same as the main one, or a loss name (ce, ...)
    },
    "eval": {
        "split": "val",
        "batch_size": 1,
        "shorter_side": None,  # RegSeg: resize the image so its shorter side is this, then upsample
        "select": "final",  # final | best (best of periodic evaluations: reported as such)
    },
}


def _is_open(path: str) -> bool:
    return any(path == k or path.startswith(k + ".") for k in OPEN_KEYS)


def merge(base: dict, update: dict, where: str = "", source: str = "recipe") -> dict:
    """Deep-merge ``update`` into a copy of ``base``; a key absent from ``base`` is an error that
    names it, except under the open mappings."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        path = f"{where}.{key}" if where else str(key)
        if path in MOVED_KEYS:
            raise UserError(f"{source}: {path} is now {MOVED_KEYS[path]}; rename the key")
        if key not in out and not _is_open(path):
            valid = ", ".join(sorted(f"{where}.{k}" if where else k for k in out))
            raise UnknownName(f"{source}: unknown key {path!r}; valid keys here: {valid}")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, path, source)
        else:
            out[key] = copy.deepcopy(value)
    return out


def recipe_path(recipe: str | Path) -> Path:
    """A bundled recipe name or a YAML path -> an existing file."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise MissingFile(f"recipe {str(path)!r} does not exist")
        return path
    bundled = RECIPES / f"{recipe}.yaml"
    if not bundled.is_file():
        raise MissingFile(f"unknown recipe {recipe!r}: not a file and not one of the bundled "
                                f"recipes ({', '.join(list_recipes())})")
    return bundled


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01): the value is read as YAML."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected key=value, e.g. train.max_iters=40")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set {text!r}: empty key")
    return key.split("."), read_value(raw)


def read_value(raw: str):
    """A YAML scalar/list/mapping; numbers like ``1e-3`` (strings in YAML 1.1) become floats."""
    if not raw.strip():
        return None
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    return value


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    for text in overrides or ():
        parts, value = parse_override(text)
        update: dict = value
        for part in reversed(parts):
            update = {part: update}
        config = merge(config, update, source=f"--set {text}")
    return config


def read_recipe(path: Path) -> dict:
    """The mapping in a recipe file, or a ValueError naming the file."""
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"recipe {str(path)!r}: invalid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"recipe {str(path)!r}: expected a mapping at the top level")
    return loaded


def load_config(recipe: str | Path, overrides: Iterable[str] = ()) -> dict:
    """The resolved configuration: DEFAULTS <- recipe file <- overrides, then checked."""
    path = recipe_path(recipe)
    loaded = read_recipe(path)
    config = merge(DEFAULTS, loaded, source=f"recipe {path}")
    config = apply_overrides(config, overrides)
    config["recipe"] = str(recipe)
    check_config(config)
    return config


# Types of the keys whose default is null (the others take the type of their default).
NULLABLE_TYPES = {
    "train.epochs": int, "train.max_iters": int, "train.grad_clip": float, "train.eval_every": int,
    "eval.shorter_side": int, "loss.threshold": float, "loss.keep_fraction": float, "loss.min_kept": int,
    "model.init": (str, dict), "recipe": str,
}


def check_types(config: dict, defaults: dict = DEFAULTS, where: str = "") -> None:
    """Every key of ``defaults`` holds a value of its type (an int is a float too; null is
    allowed where the default is null), or a UserError names the key, the value and the type."""
    for key, default in defaults.items():
        path = f"{where}.{key}" if where else key
        if _is_open(path) or key not in config:
            continue
        value = config[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise UserError(f"{path}: expected a mapping, got {value!r}")
            check_types(value, default, path)
            continue
        expected = NULLABLE_TYPES.get(path) if default is None else type(default)
        if value is None or expected is None:
            continue
        if not _has_type(value, expected):
            names = "/".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise UserError(f"{path}: expected {names.replace('float', 'a number').replace('int', 'an integer')}, "
                            f"got {value!r}")


def _has_type(value, expected) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, (int, float)):
        return True
    return isinstance(value, types)


def check_config(config: dict) -> None:
    """Type and value checks that would otherwise fail late, each naming its key."""
    check_types(config)
    train = config["train"]
    if train["max_iters"] is None and train["epochs"] is None:
        raise UserError("train.max_iters / train.epochs: give one of them")
    for key in ("max_iters", "epochs", "batch_size"):
        value = train[key]
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UserError(f"train.{key}: expected a positive integer, got {value!r}")
    if train["precision"] not in ("auto", "fp32", "fp16", "bf16"):
        raise UserError(f"train.precision: expected auto, fp32, fp16 or bf16, got {train['precision']!r}")
    if config["eval"]["select"] not in ("final", "best"):
        raise UserError(f"eval.select: expected final or best, got {config['eval']['select']!r}")
    if not isinstance(config["data"], dict) or "dataset" not in config["data"]:
        raise UserError("data.dataset: missing (toy, cityscapes, camvid, ade20k, bdd100k or folder)")
    if not isinstance(config["loss"]["aux_weights"], list):
        raise UserError("loss.aux_weights: expected a list of numbers")


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


# Keys a resumed run may change: none of them alters what a checkpoint restores (docs/training.md).
RESUMABLE_KEYS = ("train.lr", "train.max_iters", "train.epochs", "train.eval_every", "train.checkpoint_every",
                  "train.log_every", "train.keep_checkpoints", "train.num_workers", "recipe")


def flatten(config: dict, where: str = "") -> dict[str, Any]:
    """``{"train.lr": 0.05, ...}``: every leaf of a nested mapping by its dotted key."""
    out = {}
    for key, value in config.items():
        path = f"{where}.{key}" if where else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def resume_changes(saved_text: str, config: dict, saved_name: str = "config.yaml") -> list[tuple[str, Any, Any]]:
    """The ``(key, saved, now)`` changes of a resumed run's configuration. Changes to
    :data:`RESUMABLE_KEYS` are returned; any other raises a UserError naming each key with both
    values."""
    saved = flatten(yaml.safe_load(saved_text) or {})
    now = flatten(config)
    changed = [(k, saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    refused = [c for c in changed if c[0] not in RESUMABLE_KEYS]
    if refused:
        listed = "; ".join(f"{k}: {old!r} in {saved_name}, {new!r} now" for k, old, new in refused)
        raise UserError(f"--resume: {listed}. Resume with the saved values; only "
                        f"{', '.join(k for k in RESUMABLE_KEYS if k != 'recipe')} may change")
    return changed
