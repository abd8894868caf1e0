"""Named variants: each is a builder plus its config and model card (timm-style variants as data)."""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Callable

from torch import nn

from ..errors import UnknownName, UserError
from .base import ModelCard


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]  # builder(config, num_classes) -> model
    config: Any  # a dataclass instance
    card: ModelCard
    default_classes: int = 19
    official: Any = None  # the family's atrous.official.KeyMap, None where no official code exists


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}  # alias -> registered name


def register_model(name: str, builder, config, card: ModelCard, default_classes: int = 19,
                   official=None) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is registered twice")
    _REGISTRY[name] = ModelEntry(name, builder, config, card, default_classes, official)


def register_alias(alias: str, name: str) -> None:
    """A second name for a registered model (e.g. ``dsnet_head128`` for ``dsnet``)."""
    if alias in _REGISTRY or alias in _ALIASES or name not in _REGISTRY:
        raise ValueError(f"alias {alias!r}: taken, or {name!r} is not registered")
    _ALIASES[alias] = name


def list_models(pattern: str | None = None, aliases: bool = True) -> list[str]:
    """Sorted names of the registered models (with aliases unless ``aliases=False``),
    optionally filtered by a shell-style pattern."""
    names = sorted([*_REGISTRY, *(_ALIASES if aliases else ())])
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[_ALIASES.get(name, name)]
    except KeyError:
        close = difflib.get_close_matches(name, [*_REGISTRY, *_ALIASES], n=3, cutoff=0.5)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise UnknownName(f"unknown model {name!r}.{hint} Valid names: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int | None = None, **overrides) -> nn.Module:
    """Build a registered model. ``overrides`` replace fields of its config dataclass, e.g.
    ``create_model("regseg", dilations=[[1], [1, 2], ...])``; an unknown field raises a UserError
    that lists the valid ones."""
    entry = get_entry(name)
    config = entry.config
    if overrides:
        valid = [f.name for f in fields(config)] if is_dataclass(config) else []
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise UserError(f"{name}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        config = replace(config, **overrides)
    classes = entry.default_classes if num_classes is None else int(num_classes)
    if classes < 1:
        raise UserError(f"num_classes: must be >= 1, got {classes}")
    model = entry.builder(config, classes)
    model.variant = name
    return model
