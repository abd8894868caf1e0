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

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# Paths whose contents are free-form mappings (checked by their consumer, not here).
OPEN_KEYS = ("data", "model.options")

DEFAULTS: dict[str, Any] = {
    "seed": 0,  # RegSeg Sec 4.3: seed before initialization; reseeded with seed + epoch per epoch
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "model": {
        "name": "regseg",
        "options": {},  # overrides of the model's config dataclass
        "init": None,  # weights to start from (.safetensors/.pt); classifier may have other classes
        "sync_bn": False,  # convert BatchNorm to SyncBatchNorm under DDP
    },
    "data": {"dataset": "toy"},
    "train": {
        "split": "train",
        "batch_size": 8,  # per process
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
        "precision": "auto",  # auto (fp16 on CUDA, bf16 on a CPU with bf16 units, else fp32) | fp32 | fp16 | bf16
        "channels_last": "auto",  # auto (on with bf16/fp16, off in fp32) | true | false
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
        if key not in out and not _is_open(path):
            valid = ", ".join(sorted(f"{where}.{k}" if where else k for k in out))
            raise KeyError(f"{source}: unknown key {path!r}; valid keys here: {valid}")
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
            raise FileNotFoundError(f"recipe {str(path)!r} does not exist")
        return path
    bundled = RECIPES / f"{recipe}.yaml"
    if not bundled.is_file():
        raise FileNotFoundError(f"unknown recipe {recipe!r}: not a file and not one of the bundled "
                                f"recipes ({', '.join(list_recipes())})")
    return bundled


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01): the value is read as YAML."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected key=value, e.g. train.max_iters=40")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"--set {text!r}: empty key")
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
        raise ValueError(f"recipe {str(path)!r}: invalid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"recipe {str(path)!r}: expected a mapping at the top level")
    return loaded


def load_config(recipe: str | Path, overrides: Iterable[str] = ()) -> dict:
    """The resolved configuration: DEFAULTS <- recipe file <- overrides, then checked."""
    path = recipe_path(recipe)
    loaded = read_recipe(path)
    config = merge(DEFAULTS, loaded, source=f"recipe {path}")
    config = apply_overrides(config, overrides)
    check_config(config)
    return config


def check_config(config: dict) -> None:
    """Value checks that would otherwise fail late, each naming its key."""
    train = config["train"]
    if train["max_iters"] is None and train["epochs"] is None:
        raise ValueError("train.max_iters / train.epochs: give one of them")
    for key in ("max_iters", "epochs", "batch_size"):
        value = train[key]
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"train.{key}: expected a positive integer, got {value!r}")
    if train["precision"] not in ("auto", "fp32", "fp16", "bf16"):
        raise ValueError(f"train.precision: expected auto, fp32, fp16 or bf16, got {train['precision']!r}")
    if train["channels_last"] not in ("auto", True, False):
        raise ValueError(f"train.channels_last: expected auto, true or false, got {train['channels_last']!r}")
    if config["eval"]["select"] not in ("final", "best"):
        raise ValueError(f"eval.select: expected final or best, got {config['eval']['select']!r}")
    if not isinstance(config["data"], dict) or "dataset" not in config["data"]:
        raise ValueError("data.dataset: missing (toy, cityscapes, camvid, ade20k, bdd100k or folder)")
    if not isinstance(config["loss"]["aux_weights"], list):
        raise ValueError("loss.aux_weights: expected a list of numbers")


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
