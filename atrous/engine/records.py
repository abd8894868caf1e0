"""The weights record of a training run (docs/weights.md): what the trainer, the search and the
pretraining write into every weights file and checkpoint."""
from __future__ import annotations

import copy
import datetime
import os

from ..weights import Normalization, WeightsRecord


def data_for_record(data: dict) -> dict:
    """The recipe's ``data:`` mapping with a relative ``root`` made absolute, so that
    ``atrous eval FILE`` finds the data from any folder."""
    data = copy.deepcopy(data)
    if data.get("root") and not os.path.isabs(str(data["root"])):
        data["root"] = os.path.abspath(str(data["root"]))
    return data


def training_record(config: dict, model, dataset, iteration: int, weights: str,
                    metrics: dict | None = None) -> WeightsRecord:
    """The record of ``model`` trained by ``config`` on ``dataset`` (its class names and
    palette) after ``iteration`` steps; ``weights`` is ``final``, ``ema`` or ``best``;
    ``metrics`` maps a split to its scores."""
    import torch

    from .. import __version__

    transforms = (config["data"].get("transforms") or {})
    train_tf, val_tf = transforms.get("train") or {}, transforms.get("val") or {}
    norm = train_tf.get("normalize") or {}
    provenance = {
        "recipe": config.get("recipe"), "iteration": int(iteration), "weights": weights,
        "metrics": metrics or {}, "atrous": __version__, "torch": torch.__version__,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": config.get("seed"), "config": copy.deepcopy(config),
    }
    crop = train_tf.get("crop")
    return WeightsRecord(
        model=config["model"]["name"], num_classes=model.num_classes,
        options=config["model"].get("options") or {},
        classes=getattr(dataset, "classes", ()), palette=getattr(dataset, "palette", ()),
        normalization=Normalization(**{k: norm[k] for k in ("mean", "std") if k in norm}),
        train_crop=[crop, crop] if isinstance(crop, int) else crop,
        eval_resize=config["eval"].get("shorter_side") or _shorter(val_tf.get("resize")),
        data=data_for_record(config["data"]), eval_split=config["eval"].get("split"),
        provenance=provenance)


def _shorter(resize):
    return resize if isinstance(resize, int) else None


def without_time(record: WeightsRecord) -> WeightsRecord:
    """``record`` with its wall-clock time removed (what bitwise-resume comparisons compare)."""
    return record.replace(provenance={k: v for k, v in record.provenance.items() if k != "time"}, sha256=None)
