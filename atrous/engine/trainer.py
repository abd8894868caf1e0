"""Iteration-based training (RegSeg Sec 4.2-4.3; the same loop serves every recipe).

Reproducibility, RegSeg Sec 4.3: the seed is set before the model is initialized; at the start of
every epoch the generators are reseeded with ``seed + epoch`` and the epoch's order is drawn from
``seed + epoch`` alone; each sample's augmentation draws from its own seed (seed, epoch,
position). A checkpoint stores every generator, so a run killed at any point and resumed with
``resume=True`` ends with bitwise the weights of the uninterrupted run (on CPU).
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from ..models import create_model
from . import checkpoint as ckpt
from .config import dump_config
from .distributed import (all_finite, barrier, cleanup, init_distributed, mean_over_processes,
                          pick_device, unwrap, wrap_model)
from .ema import EMA
from .evaluate import evaluate, format_table, write_json
from .losses import loss_from_config
from .optim import build_optimizer
from .schedule import lr_factor, set_lr


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; training stopped without writing a checkpoint."""


def build_datasets(config: dict, need_val: bool = True):
    from ..data import build_dataset

    train_set = build_dataset(config["data"], config["train"]["split"], train=True)
    val_set = build_dataset(config["data"], config["eval"]["split"], train=False) if need_val else None
    return train_set, val_set


def build_model(config: dict, num_classes: int) -> torch.nn.Module:
    """Seed, then build the model (RegSeg Sec 4.3: seed before initialization) and load
    ``model.init`` weights if given (the classifier may have another number of classes)."""
    ckpt.seed_everything(int(config["seed"]))
    model = create_model(config["model"]["name"], num_classes=num_classes, **(config["model"]["options"] or {}))
    if config["model"]["init"]:
        skipped = ckpt.load_weights(model, config["model"]["init"])
        if skipped:
            print(f"model.init: {config['model']['init']}: kept the new initialization of {', '.join(skipped)} "
                  "(shape differs: another number of classes)")
    return model


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A distinct seed for the ``position``-th sample of ``epoch`` (independent of processes, workers
    and resuming)."""
    return (int(seed) * 1_000_003 + epoch * 2**24 + position) % 2**63


class EpochPlan:
    """The samples of each epoch: a permutation (or the class-uniform sampler's draw) seeded by
    ``seed + epoch``, cut to whole global batches and dealt to the processes."""

    def __init__(self, dataset, batch_size: int, world_size: int, rank: int, seed: int,
                 class_uniform: float | None = None, tile_size: int = 1024):
        self.dataset, self.batch_size, self.world, self.rank, self.seed = dataset, batch_size, world_size, rank, seed
        self.sampler = None
        if class_uniform:  # RegSeg Sec 4.2: class-uniform sampling (data.class_uniform percent)
            from ..data import ClassUniformSampler

            self.sampler = ClassUniformSampler(dataset, float(class_uniform), len(dataset), seed,
                                               tile_size=int(tile_size), progress=rank == 0)
        self.global_batch = batch_size * world_size
        self.iters_per_epoch = max(1, len(dataset) // self.global_batch)

    def items(self, epoch: int) -> list:
        """This process's samples of ``epoch``, as (item, seed) in order."""
        if self.sampler is not None:  # SampleRequests with their own seeds; cut and dealt below
            order = self.sampler.epoch_requests(epoch)
            while len(order) < self.global_batch:
                order += order
        else:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(len(self.dataset), generator=g).tolist()
            while len(order) < self.global_batch:  # a dataset smaller than one global batch
                order += torch.randperm(len(self.dataset), generator=g).tolist()
        order = order[: self.iters_per_epoch * self.global_batch]
        return [(order[p], sample_seed(self.seed, epoch, p)) for p in range(self.rank, len(order), self.world)]


class SeededSamples(torch.utils.data.Dataset):
    """``dataset[SampleRequest(index, seed)]`` for each planned sample; the global generators are
    seeded per sample too and restored afterwards, so augmentations that use them stay
    reproducible without disturbing the training loop's generators."""

    def __init__(self, dataset, items):
        self.dataset, self.items = dataset, items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from ..data import SampleRequest

        item, seed = self.items[i]
        request = item._replace(seed=seed) if isinstance(item, SampleRequest) and item.seed is None else item
        if not isinstance(request, SampleRequest):
            request = SampleRequest(int(item), seed)
        saved = ckpt.rng_state()
        ckpt.seed_everything(seed)
        try:
            return self.dataset[request]
        finally:
            ckpt.set_rng_state(saved)


def resolve_precision(device: torch.device, precision: str) -> str:
    """``train.precision: auto``: fp16 on CUDA; bf16 on a CPU with bf16 matrix units (AMX-BF16 or
    AVX512-BF16, :mod:`atrous.deploy.machine`), where bf16 autocast trains faster; fp32 on any
    other CPU (without the units oneDNN emulates bf16). Other values are returned as given."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    from ..deploy.machine import cpu_info

    return "bf16" if device.type == "cpu" and cpu_info().bf16_hardware else "fp32"


def autocast_for(device: torch.device, precision: str):
    """(autocast context, whether a GradScaler is needed) for ``train.precision``."""
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return nullcontext(), False
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision: fp16 needs CUDA; use bf16 or fp32 on CPU")
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype), precision == "fp16"


def use_channels_last(device: torch.device, setting, precision: str) -> bool:
    """``train.channels_last``: true / false, or auto: on when training in bf16 or fp16 (oneDNN's
    AMX/AVX512-BF16 and cuDNN's tensor-core kernels work in channels_last), off in fp32, so that an
    fp32 run trains exactly as before."""
    if setting == "auto":
        return resolve_precision(device, precision) in ("bf16", "fp16")
    return bool(setting)


class MetricsLog:
    """``DIR/metrics.jsonl``: one JSON object a line; on resume, lines after the resumed iteration
    are dropped so the log reads as one run."""

    def __init__(self, path: Path, enabled: bool, resume_iter: int | None):
        self.path, self.enabled = path, enabled
        if enabled:
            kept = []
            if resume_iter is not None and path.is_file():
                kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("iter", 0) <= resume_iter]
            path.write_text("".join(ln + "\n" for ln in kept))

    def write(self, **record) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


class TrainHooks:
    """Extension points of :func:`train` (used by ``atrous search``); the defaults do nothing
    beyond the plain trainer. ``on_start`` and ``on_epoch_end`` run on the main process only."""

    def build_optimizer(self, model: torch.nn.Module, train_cfg: dict) -> torch.optim.Optimizer:
        return build_optimizer(model, train_cfg)

    def on_start(self, model: torch.nn.Module, iteration: int, resumed: bool) -> None:
        """After the model is built (and resumed, if so), before the first step."""

    def on_epoch_end(self, model: torch.nn.Module, epoch: int, iteration: int) -> None:
        """After the last step of each epoch, and after the last step of training."""


def train(config: dict, out_dir, resume: bool = False, progress: bool = True, datasets=None,
          hooks: TrainHooks | None = None) -> dict:
    """Train as ``config`` says, writing DIR/config.yaml, metrics.jsonl, checkpoints/,
    model.safetensors, eval_SPLIT.json, curves.png and prediction.png. Returns a summary dict."""
    out = Path(out_dir)
    tcfg, ecfg = config["train"], config["eval"]
    device = pick_device(config["device"])
    info = init_distributed(device)
    try:
        return _train(config, out, resume, progress and info.is_main, datasets, tcfg, ecfg, device, info,
                      hooks or TrainHooks())
    finally:
        cleanup(info)


def _train(config, out, resume, progress, datasets, tcfg, ecfg, device, info, hooks) -> dict:
    ckpt_dir = out / "checkpoints"
    latest = ckpt.latest_checkpoint(ckpt_dir)
    if info.is_main:
        if latest is not None and not resume:
            raise FileExistsError(f"--out {out}: holds checkpoints already; add --resume to continue or pick another folder")
        saved_cfg = out / "config.yaml"
        if resume and latest is not None and saved_cfg.is_file() and saved_cfg.read_text() != dump_config(config):
            raise ValueError(f"--resume: the configuration differs from {saved_cfg}; resume with the same recipe and --set values")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_config(config))
        ckpt.remove_partial_files(ckpt_dir)
    barrier(info)

    seed = int(config["seed"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the papers; bitwise resume is promised on CPU only
    train_set, val_set = datasets if datasets is not None else build_datasets(config)
    model = build_model(config, train_set.num_classes).to(device)
    channels_last = use_channels_last(device, tcfg["channels_last"], tcfg["precision"])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    plan = EpochPlan(train_set, int(tcfg["batch_size"]), info.world_size, info.rank, seed,
                     config["data"].get("class_uniform"), config["data"].get("tile_size", 1024))
    max_iters = int(tcfg["max_iters"] or tcfg["epochs"] * plan.iters_per_epoch)
    criterion = loss_from_config(config["loss"], int(getattr(train_set, "ignore_index", 255)))
    optimizer = hooks.build_optimizer(model, tcfg)
    ema = EMA(model, tcfg["ema"]["alpha"], tcfg["ema"]["every"]) if tcfg["ema"]["enabled"] else None
    autocast, use_scaler = autocast_for(device, tcfg["precision"])
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    net = wrap_model(model, info, device, bool(config["model"]["sync_bn"]))
    model = unwrap(net)

    start, best = 0, {"miou": None, "iter": None, "evaluations": 0}
    if resume and latest is not None:
        state = ckpt.load_checkpoint(latest)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if use_scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start, best = int(state["iteration"]), state["best"]
        ckpt.set_rng_state(state["rng"])
        if progress:
            print(f"resumed from {latest} at iteration {start}/{max_iters}")
    log = MetricsLog(out / "metrics.jsonl", info.is_main, start if resume else None)
    if info.is_main:
        hooks.on_start(model, start, resume and latest is not None)

    def save_state(iteration: int) -> Path:
        state = {"iteration": iteration, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scaler": scaler.state_dict() if use_scaler else {}, "ema": ema.state_dict() if ema else {},
                 "best": best, "rng": ckpt.rng_state()}
        path = ckpt.save_checkpoint(ckpt_dir / f"iter_{iteration:07d}.pt", state)
        ckpt.prune_checkpoints(ckpt_dir, int(tcfg["keep_checkpoints"]))
        return path

    def eval_model():
        return ema.module if ema is not None else model

    it = start
    bar = tqdm(total=max_iters, initial=start, desc="train", disable=not progress, dynamic_ncols=True)
    net.train()
    window, t0 = [], time.perf_counter()
    while it < max_iters:
        epoch, position = divmod(it, plan.iters_per_epoch)
        if position == 0:
            ckpt.seed_everything(seed + epoch)  # RegSeg Sec 4.3: reseed at the start of each epoch
        items = plan.items(epoch)[position * plan.batch_size:]
        loader = torch.utils.data.DataLoader(SeededSamples(train_set, items), batch_size=plan.batch_size,
                                             shuffle=False, num_workers=int(tcfg["num_workers"]),
                                             pin_memory=device.type == "cuda",
                                             generator=torch.Generator().manual_seed(seed + epoch))
        for images, target in loader:
            images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            lr = set_lr(optimizer, float(tcfg["lr"]), lr_factor(it, max_iters, tcfg["poly_power"],
                                                                 int(tcfg["warmup_iters"]), tcfg["warmup_factor"]))
            with autocast:
                loss = criterion(net(images), target)
            if not all_finite(loss, info):
                last = ckpt.latest_checkpoint(ckpt_dir)
                raise TrainingDiverged(f"loss is {loss.item()} at iteration {it + 1} (epoch {epoch}); training stopped. "
                                       f"Last good checkpoint: {last or 'none yet'}. Lower train.lr, enable "
                                       "train.grad_clip or use train.precision=fp32, then --resume.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tcfg["grad_clip"]:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(tcfg["grad_clip"]))
            scaler.step(optimizer)
            scaler.update()
            it += 1
            if info.is_main and (it % plan.iters_per_epoch == 0 or it == max_iters):
                hooks.on_epoch_end(model, epoch, it)
            if ema is not None:
                ema.update(model, it)
            window.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{window[-1]:.4f}", lr=f"{lr:.2e}", epoch=epoch)
            if it % int(tcfg["log_every"]) == 0 or it == max_iters:
                mean_loss = mean_over_processes(sum(window) / len(window), info, device)
                log.write(iter=it, epoch=epoch, loss=mean_loss, lr=lr,
                          sec_per_iter=(time.perf_counter() - t0) / len(window))
                window, t0 = [], time.perf_counter()
            if tcfg["eval_every"] and it % int(tcfg["eval_every"]) == 0 and it < max_iters:
                _periodic_eval(eval_model(), val_set, ecfg, device, info, it, best, log, out)
                net.train()
            if it % int(tcfg["checkpoint_every"]) == 0 or it == max_iters:
                if info.is_main:
                    save_state(it)
                barrier(info)
            if it >= max_iters:
                break
    bar.close()
    return _finish(config, out, eval_model(), val_set, ecfg, device, info, it, best, log, progress)


def _periodic_eval(model, val_set, ecfg, device, info, it, best, log, out) -> None:
    if info.is_main and val_set is not None:
        result = evaluate(model, val_set, int(ecfg["batch_size"]), ecfg["shorter_side"], device, desc=f"eval@{it}")
        log.write(iter=it, split=ecfg["split"], val_miou=result["miou"], val_pixel_accuracy=result["pixel_accuracy"])
        best["evaluations"] += 1
        if ecfg["select"] == "best" and (best["miou"] is None or result["miou"] > best["miou"]):
            best.update(miou=result["miou"], iter=it)
            ckpt.save_weights(out / "model_best.safetensors", model, {"selected": f"best of periodic evaluations on {ecfg['split']}", "iteration": it})
    barrier(info)


def _finish(config, out, model, val_set, ecfg, device, info, it, best, log, progress) -> dict:
    """Final weights, their evaluation, the curves and a prediction picture (main process)."""
    summary = {"iterations": it, "weights": str(out / "model.safetensors")}
    if info.is_main:
        weights = "ema" if config["train"]["ema"]["enabled"] else "final"
        ckpt.save_weights(out / "model.safetensors", model, {
            "model": config["model"]["name"], "num_classes": model.num_classes, "iterations": it,
            "weights": weights, "options": json.dumps(config["model"]["options"] or {})})
        if val_set is not None:
            result = evaluate(model, val_set, int(ecfg["batch_size"]), ecfg["shorter_side"], device,
                              progress=progress, desc="final eval")
            result.update(weights=f"{weights} weights after {it} iterations", split=ecfg["split"])
            write_json(out / f"eval_{ecfg['split']}.json", result)
            log.write(iter=it, split=ecfg["split"], val_miou=result["miou"],
                      val_pixel_accuracy=result["pixel_accuracy"], final=True)
            summary.update(miou=result["miou"], pixel_accuracy=result["pixel_accuracy"])
            if progress:
                print(format_table(result, f"{ecfg['split']}: {weights} weights after {it} iterations"))
            if ecfg["select"] == "best" and best["miou"] is not None:
                summary["best"] = {"miou": best["miou"], "iter": best["iter"], "label":
                                   f"best of {best['evaluations']} evaluations on {ecfg['split']} (selected on the evaluation set)"}
                write_json(out / "best.json", summary["best"])
        try:
            from .plots import plot_curves, plot_prediction

            plot_curves(out / "metrics.jsonl", out / "curves.png")
            if val_set is not None:
                plot_prediction(model, val_set, out / "prediction.png", device, ecfg["shorter_side"])
        except ImportError as exc:  # matplotlib is the optional extra atrous[plots]
            print(f"no curves.png/prediction.png: {exc}; install matplotlib (pip install 'atrous[plots]')")
    barrier(info)
    return summary
