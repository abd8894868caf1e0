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
from .settings import RunSettings, defaults, settings_from_config

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# Paths whose contents are free-form mappings (checked by their consumer, not here).
OPEN_KEYS = ("data", "model.options")
# Keys that moved: old path -> new path (an error that names the new key).
MOVED_KEYS = {"model.sync_bn": "train.sync_bn"}

# The defaults and types live in atrous.engine.settings (one dataclass per section).
DEFAULTS: dict[str, Any] = defaults()


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


def check_config(config: dict) -> RunSettings:
    """The typed settings of ``config`` (types checked by :func:`settings_from_config`) after the
    value checks that would otherwise fail late, each naming its key."""
    settings = settings_from_config(config)
    train = settings.train
    if train.max_iters is None and train.epochs is None:
        raise UserError("train.max_iters / train.epochs: give one of them")
    for key in ("max_iters", "epochs", "batch_size"):
        value = getattr(train, key)
        if value is not None and value < 1:
            raise UserError(f"train.{key}: expected a positive integer, got {value!r}")
    if train.precision not in ("auto", "fp32", "fp16", "bf16"):
        raise UserError(f"train.precision: expected auto, fp32, fp16 or bf16, got {train.precision!r}")
    if train.channels_last not in ("auto", True, False):
        raise UserError(f"train.channels_last: expected auto, true or false, got {train.channels_last!r}")
    if settings.eval.select not in ("final", "best"):
        raise UserError(f"eval.select: expected final or best, got {settings.eval.select!r}")
    if settings.task not in ("segmentation", "classification"):
        raise UserError(f"task: expected segmentation or classification, got {settings.task!r}")
    if not isinstance(settings.data, dict) or "dataset" not in settings.data:
        raise UserError("data.dataset: missing (toy, cityscapes, camvid, ade20k, bdd100k, mapillary, folder "
                        "or imagefolder)")
    return settings


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
