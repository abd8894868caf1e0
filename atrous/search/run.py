"""``atrous search``: train ``regseg_search`` with the trainer of ``atrous train``, log every rate
each epoch, round by RegSeg's rule (Sec 3.4) and write the integer recipe to retrain.

A search recipe is a training recipe (same data, loss, schedule, checkpoints, resume) plus a
``search`` section (:data:`SEARCH_DEFAULTS`), which only ``atrous search`` reads.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Iterable

import yaml
from torch import nn

from ..errors import MissingFile, UserError
from ..engine import build_optimizer
from ..engine.config import (DEFAULTS, RECIPES, apply_overrides, check_config, dump_config, merge,
                             read_recipe, recipe_path)
from ..engine.hooks import Hook
from ..engine.trainer import train
from ..models import create_model
from ..utils import atomic_path
from .log import RateLog
from .rounding import describe, round_dilations, warn_bound

SEARCH_RECIPES = RECIPES / "search"
SEARCH_DEFAULTS = {
    "lr": None,  # base lr of the rates (same poly schedule and warmup); null: train.lr
    "weight_decay": 0.0,  # on the rates; 0 keeps decay from pulling every rate towards 0
    "retrain_model": "regseg",  # the integer model that found.yaml trains
}


def search_recipe_path(recipe) -> Path:
    """A bundled search recipe (``atrous/recipes/search/NAME.yaml``, kept apart from the training
    recipes, which ``atrous train`` must load without a ``search`` section) or any recipe path."""
    bundled = SEARCH_RECIPES / f"{recipe}.yaml"
    if not Path(recipe).exists() and bundled.is_file():
        return bundled
    try:
        return recipe_path(recipe)
    except FileNotFoundError as exc:
        names = ", ".join(sorted(p.stem for p in SEARCH_RECIPES.glob("*.yaml")))
        raise MissingFile(f"{exc.args[0]}; bundled search recipes: {names}") from None


def load_search_config(recipe, overrides: Iterable[str] = ()) -> tuple[dict, dict]:
    """``(training config, search section)`` of a search recipe: the training part is resolved
    exactly as ``atrous train`` resolves a recipe; ``--set search.KEY=...`` reaches the section."""
    path = search_recipe_path(recipe)
    loaded = read_recipe(path)
    search = {"search": merge(SEARCH_DEFAULTS, loaded.pop("search", None) or {}, "search", f"recipe {path}")}
    train_overrides = []
    for text in overrides or ():
        if text.strip().startswith("search."):
            search = apply_overrides(search, [text])
        else:
            train_overrides.append(text)
    config = apply_overrides(merge(DEFAULTS, loaded, source=f"recipe {path}"), train_overrides)
    check_config(config)
    return config, search["search"]


class SearchHooks(Hook):
    """Rates in their own optimizer group (own lr via ``lr_scale``, own weight decay) and one
    :class:`RateLog` entry per epoch (main process)."""

    main_only = True

    def __init__(self, out: Path, train_cfg: dict, search_cfg: dict):
        self.out, self.search_cfg = out, search_cfg
        base_lr = float(train_cfg["lr"])
        rate_lr = base_lr if search_cfg["lr"] is None else float(search_cfg["lr"])
        self.lr_scale = rate_lr / base_lr
        self.log: RateLog | None = None
        self.rates: list[tuple[float, ...]] | None = None

    def build_optimizer(self, model: nn.Module, train):
        """The trainer's optimizer (atrous.engine.optim), with the rates moved to a group of their own."""
        rates = rate_parameters(model)
        taken = {id(p) for p in rates}
        optimizer = build_optimizer(model, train)
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in taken]
        optimizer.add_param_group({"params": rates, "weight_decay": float(self.search_cfg["weight_decay"]),
                                   "lr_scale": self.lr_scale})
        return optimizer

    def on_start(self, run) -> None:
        model = run.state.model
        names = [name for name, _ in model.searched_convs()]
        self.log = RateLog(self.out, names, run.state.iteration if run.resumed else None)
        if not run.resumed:
            self.log.record(0, 0, model.rates(), fov_of(model))

    def on_epoch_end(self, run, epoch: int) -> None:
        self.rates = run.state.model.rates()
        self.log.record(epoch + 1, run.state.iteration, self.rates, fov_of(run.state.model))


def rate_parameters(model: nn.Module) -> list[nn.Parameter]:
    if not hasattr(model, "rate_parameters"):
        raise UserError(f"model.name: {type(model).__name__} has no trainable dilation rates; "
                        "use a searchable model such as regseg_search")
    return model.rate_parameters()


def fov_of(model: nn.Module) -> float:
    from ..analysis import field_of_view

    return float(field_of_view(model))


def found_recipe(config: dict, search_cfg: dict, found: list[tuple[int, ...]]) -> dict:
    """The search's training config with the integer model and the found dilations."""
    out = copy.deepcopy(config)
    out["model"]["name"] = search_cfg["retrain_model"]
    out["model"]["options"] = dict(out["model"].get("options") or {}, dilations=[list(d) for d in found])
    return out


def run_search(recipe, out_dir, overrides: Iterable[str] = (), resume: bool = False, progress: bool = True,
               datasets=None) -> dict:
    """Search, round, write DIR/found.yaml; returns the rates, the found dilations and the field of
    view of the start, the searched (fractional) and the rounded model."""
    config, search_cfg = load_search_config(recipe, overrides)
    out = Path(out_dir)
    saved = out / "search.yaml"
    text = yaml.safe_dump({"search": search_cfg}, sort_keys=False)
    if resume and saved.is_file() and saved.read_text() != text:
        raise UserError(f"--resume: the search section differs from {saved}; resume with the same values")
    create_model(search_cfg["retrain_model"])  # fail now, not after the search, on a bad name
    start_model = create_model(config["model"]["name"], **(config["model"]["options"] or {}))
    rate_parameters(start_model)
    warn_bound(start_model, "starting dilations")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(saved) as tmp:
        Path(tmp).write_text(text)

    hooks = SearchHooks(out, config["train"], search_cfg)
    summary = train(config, out, resume=resume, progress=progress, datasets=datasets, hooks=hooks)
    if hooks.log is None:  # not the main process of a distributed run: it writes nothing
        return {}
    rates = hooks.rates if hooks.rates is not None else hooks.log.entries[-1]["rates"]
    found = round_dilations(rates)

    options = {k: v for k, v in (config["model"]["options"] or {}).items() if k != "dilations"}
    searched = create_model(config["model"]["name"], dilations=rates, **options)
    rounded = create_model(search_cfg["retrain_model"], dilations=found, **options)
    warn_bound(searched, "searched (fractional) dilations")
    warn_bound(rounded, "found (rounded) dilations")
    result = {"start": describe(start_model.rates()), "searched": describe(rates), "found": describe(found),
              "fov_start": fov_of(start_model), "fov_searched": fov_of(searched), "fov_found": fov_of(rounded),
              "found_dilations": [list(d) for d in found], "search_miou": summary.get("miou")}

    recipe_text = (f"# Found by atrous search (RegSeg Sec 3.4) from {recipe}: rates {result['searched']}\n"
                   f"# rounded by floor(min(r1, r2)), ceil(max(r1, r2)) to {result['found']}.\n"
                   f"# Retrain: atrous train {out / 'found.yaml'} --out RUN\n")
    recipe_text += dump_config(found_recipe(config, search_cfg, found))
    with atomic_path(out / "found.yaml") as tmp:
        Path(tmp).write_text(recipe_text)
    with atomic_path(out / "found.json") as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1))
    result["found_yaml"] = str(out / "found.yaml")
    return result
