"""Iteration-based training (RegSeg Sec 4.2-4.3; the same loop serves every recipe and the
encoder pretraining).

A :class:`Run` holds what one training run needs: the typed settings, the task (segmentation or
classification, :mod:`atrous.engine.tasks`), the :class:`~atrous.engine.state.TrainState` (model,
optimizer, scaler, EMA, iteration: one state dict), the epoch plan and the hooks
(:mod:`atrous.engine.hooks`: log, evaluation, checkpoints, and any a caller adds). :func:`train`
sets it up, runs :func:`step` until ``max_iters`` and finishes.

Reproducibility, RegSeg Sec 4.3: the seed is set before the model is initialized; at the start of
every epoch the generators are reseeded with ``seed + epoch`` and the epoch's order is drawn from
``seed + epoch`` alone; each sample's augmentation draws from its own seed (seed, epoch,
position). A checkpoint stores every generator, so a run killed at any point and resumed with
``resume=True`` ends with bitwise the weights of the uninterrupted run (on CPU).
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError, WeightsError
from ..progress import progress as progress_bar
from ..utils import atomic_path
from . import checkpoint as ckpt
from .config import check_config, dump_config, resume_changes
from .distributed import (DistInfo, barrier, cleanup, init_distributed, mean_over_processes, pick_device,
                          unwrap, wrap_model)
from .ema import EMA
from .evaluate import write_json
from .hooks import CheckpointHook, EvalHook, Hook, LogHook, MetricsLog
from .optim import build_optimizer
from .plan import EpochPlan, SeededSamples
from .precise_bn import recompute_batchnorm
from .schedule import lr_factor, set_lr
from .settings import RunSettings
from .state import TrainState
from .tasks import build_task


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; training stopped without writing a checkpoint."""


def init_weights(model: torch.nn.Module, spec):
    """Load ``model.init`` into ``model`` and return the :class:`atrous.weights.LoadReport`.

    ``spec`` is a path: every tensor of the file, a classifier of another class count left at its
    initialisation (Cityscapes -> CamVid, RegSeg Table 7); or ``{path: FILE, part: encoder}``:
    the encoder's tensors that fit by name and shape (the authors' ImageNet files, an ``atrous``
    pretraining run, another family member's weights), the rest left as initialised."""
    from ..weights import load_state, open_weights, to_model_layout

    path, part = spec, None
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"path", "part"})
        if unknown or "path" not in spec:
            raise UserError(f"model.init: expected a path or {{path: FILE, part: encoder}}, got {spec!r}")
        path, part = spec["path"], spec.get("part")
    state = to_model_layout(model, open_weights(str(path)).state)
    report = load_state(model, state, str(path), part=part, strict=False)
    if part is None:
        classifier = model.classifier_key.rsplit(".", 1)[0] + "."
        other = [k for k in report.missing + [m[0] for m in report.misshaped] if not k.startswith(classifier)]
        if other or report.unexpected:
            raise WeightsError(f"model.init: {report.mismatch()}; to load only the encoder, give "
                               f"{{path: {path}, part: encoder}}", report)
    return report


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


def use_channels_last(device: torch.device, setting, precision: str) -> bool:
    """``train.channels_last``: true / false, or auto: on when training in bf16 or fp16 (oneDNN's
    AMX/AVX512-BF16 and cuDNN's tensor-core kernels work in channels_last), off in fp32, so that an
    fp32 run trains exactly as before."""
    if setting == "auto":
        return resolve_precision(device, precision) in ("bf16", "fp16")
    return bool(setting)


def autocast_for(device: torch.device, precision: str):
    """(autocast context, whether a GradScaler is needed) for ``train.precision``."""
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return nullcontext(), False
    if precision == "fp16" and device.type != "cuda":
        raise UserError("train.precision: fp16 needs CUDA; use bf16 or fp32 on CPU")
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype), precision == "fp16"


@dataclass
class Run:
    """One training run's parts (see the module docstring); hooks read and use them."""

    config: dict
    settings: RunSettings
    task: object
    out: Path
    info: DistInfo
    device: torch.device
    train_set: object
    val_set: object
    state: TrainState
    net: torch.nn.Module
    plan: EpochPlan
    max_iters: int
    criterion: object
    hooks: list
    progress: bool
    resumed: bool = False
    log: MetricsLog | None = None
    bar: object = None
    loss: float = float("nan")
    lr: float = 0.0
    epoch: int = 0
    autocast: object = field(default_factory=nullcontext)
    channels_last: bool = False

    def record(self, weights: str, metrics: dict | None = None, model=None):
        return self.task.record(self.config, model or self.state.eval_model, self.train_set,
                                self.state.iteration, weights, metrics)

    def save_checkpoint(self) -> Path:
        state = self.state.state_dict()
        state["record"] = self.record("final", model=self.state.model).to_json()
        path = ckpt.save_checkpoint(self.out / "checkpoints" / f"iter_{self.state.iteration:07d}.pt", state)
        ckpt.prune_checkpoints(self.out / "checkpoints", self.settings.train.keep_checkpoints)
        return path

    def precise_batchnorm(self) -> None:
        """``train.precise_bn``: BatchNorm statistics of the evaluated weights recomputed over
        training batches (every process takes part: synchronised BatchNorm needs all)."""
        batches = self.settings.train.precise_bn.batches
        if batches:
            items = self.plan.items(self.epoch)[: batches * self.plan.batch_size]
            loader = torch.utils.data.DataLoader(SeededSamples(self.train_set, items), batch_size=self.plan.batch_size,
                                                 num_workers=self.settings.train.num_workers)
            recompute_batchnorm(self.state.eval_model, loader, batches, self.device)

    def evaluate(self, desc: str, progress: bool = False) -> dict:
        return self.task.evaluate(self.state.eval_model, self.val_set, self.settings, self.device, progress, desc)

    def evaluate_periodically(self) -> None:
        self.precise_batchnorm()
        it, best, split = self.state.iteration, self.state.best, self.settings.eval.split
        if self.info.is_main and self.val_set is not None:
            scores = self.task.scores(self.evaluate(f"eval@{it}"))
            self.log.write(iter=it, split=split, **{f"val_{k}": v for k, v in scores.items()})
            best["evaluations"] += 1
            if self.settings.eval.select == "best" and (best["score"] is None or scores[self.task.metric] > best["score"]):
                best.update(score=scores[self.task.metric], iter=it)
                label = f"best of periodic evaluations on {split}"
                self.save_weights("model_best.safetensors", "best", {split: {**scores, "label": label}})
        barrier(self.info)

    def save_weights(self, name: str, weights: str, metrics: dict) -> Path:
        from ..weights import save_weights

        return save_weights(self.out / name, self.state.eval_model, self.record(weights, metrics))


def train(config: dict, out_dir, resume: bool = False, progress: bool = True, datasets=None,
          hooks: Hook | list | None = None) -> dict:
    """Train as ``config`` says, writing DIR/config.yaml, metrics.jsonl, checkpoints/,
    model.safetensors, eval_SPLIT.json, curves.png and (segmentation) prediction.png. Returns a
    summary dict. ``hooks`` are added to the trainer's own (log, evaluation, checkpoints)."""
    out = Path(out_dir)
    settings = check_config(config)
    device = pick_device(settings.device)
    info = init_distributed(device)
    existed = out.exists()
    extra = [] if hooks is None else list(hooks) if isinstance(hooks, (list, tuple)) else [hooks]
    try:
        run = start_run(config, settings, out, resume, progress and info.is_main, datasets, device, info, extra)
        train_loop(run)
        return finish(run)
    except BaseException:
        if info.is_main:
            discard_unstarted_run(out, existed)
        raise
    finally:
        cleanup(info)


def discard_unstarted_run(out: Path, existed: bool) -> None:
    """After a failure before the first checkpoint, remove what the run wrote (config.yaml,
    metrics.jsonl, the empty checkpoints folder, the run folder if it created it): a failed run
    leaves nothing that looks like a run to resume."""
    if ckpt.latest_checkpoint(out / "checkpoints") is not None:
        return  # a run to --resume: keep everything
    for name in ("config.yaml", "metrics.jsonl"):
        (out / name).unlink(missing_ok=True)
    for folder in (out / "checkpoints", out):
        if folder.is_dir() and not any(folder.iterdir()) and (folder != out or not existed):
            folder.rmdir()


def start_run(config, settings: RunSettings, out: Path, resume: bool, progress: bool, datasets, device,
              info: DistInfo, extra_hooks: list) -> Run:
    """Everything built, loaded and resumed; config.yaml written only then, so that a run that
    cannot start leaves nothing behind."""
    latest = ckpt.latest_checkpoint(out / "checkpoints")
    if latest is not None and not resume:
        raise UserError(f"--out {out}: holds checkpoints already; add --resume to continue or pick another folder")
    resumed = resume and latest is not None
    changes = []
    if resumed and (out / "config.yaml").is_file():
        changes = resume_changes((out / "config.yaml").read_text(), config, str(out / "config.yaml"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the papers; bitwise resume is promised on CPU only
    task, tcfg = build_task(settings), settings.train
    train_set, val_set = datasets if datasets is not None else task.datasets(config)
    ckpt.seed_everything(settings.seed)  # RegSeg Sec 4.3: seed before the model is built
    model = task.model(settings, train_set)
    if settings.model.init:
        report = init_weights(model, settings.model.init)
        if progress:
            print(f"model.init: {report.summary()}")
    channels_last = use_channels_last(device, tcfg.channels_last, tcfg.precision)
    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    plan = EpochPlan(train_set, tcfg.batch_size, info.world_size, info.rank, settings.seed, config["data"])
    optimizer = next((o for h in extra_hooks if (o := h.build_optimizer(model, tcfg)) is not None), None)
    optimizer = optimizer or build_optimizer(model, tcfg)
    ema = EMA(model, tcfg.ema.alpha, tcfg.ema.every) if tcfg.ema.enabled else None
    autocast, use_scaler = autocast_for(device, tcfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    net = wrap_model(model, info, device, tcfg.sync_bn)
    state = TrainState(unwrap(net), optimizer, scaler, ema)
    max_iters = tcfg.max_iters or tcfg.epochs * plan.iters_per_epoch
    run = Run(config, settings, task, out, info, device, train_set, val_set, state, net, plan, max_iters,
              task.criterion(settings, train_set), [LogHook(), EvalHook(), CheckpointHook(), *extra_hooks],
              progress, resumed, autocast=autocast, channels_last=channels_last)
    if resumed:
        state.load_state_dict(ckpt.load_checkpoint(latest))
        if progress:
            print(f"resumed from {latest} at iteration {state.iteration}/{max_iters}")
            for key, old, new in changes:
                print(f"resume: {key} {old!r} -> {new!r}")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "config.yaml") as tmp:
            Path(tmp).write_text(dump_config(config))
        ckpt.remove_partial_files(out / "checkpoints")
    barrier(info)
    run.log = MetricsLog(out / "metrics.jsonl", info.is_main, state.iteration if resume else None)
    for hook in hooks_for(run):
        hook.on_start(run)
    return run


def hooks_for(run: Run) -> list:
    return [h for h in run.hooks if run.info.is_main or not h.main_only]


def step(run: Run, images: torch.Tensor, target: torch.Tensor) -> float:
    """One optimizer step on a batch: lr schedule (poly with warmup), forward under autocast, the
    loss over the global batch (NaN anywhere stops every process), backward, optional gradient
    clipping, optimizer and EMA update. Returns the global loss."""
    state, tcfg = run.state, run.settings.train
    if run.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    run.lr = set_lr(state.optimizer, tcfg.lr, lr_factor(state.iteration, run.max_iters, tcfg.poly_power,
                                                        tcfg.warmup_iters, tcfg.warmup_factor))
    with run.autocast:
        loss = run.criterion(run.net(images), target)
    global_loss = mean_over_processes(loss, run.info)  # NaN if any process's is
    if not math.isfinite(global_loss):
        last = ckpt.latest_checkpoint(run.out / "checkpoints")
        raise TrainingDiverged(f"loss is {global_loss} at iteration {state.iteration + 1} (epoch {run.epoch}); "
                               f"training stopped. Last good checkpoint: {last or 'none yet'}. Lower train.lr, "
                               "enable train.grad_clip or use train.precision=fp32, then --resume.")
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if tcfg.grad_clip:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), tcfg.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.iteration += 1
    return global_loss


def train_loop(run: Run) -> None:
    state, plan, tcfg = run.state, run.plan, run.settings.train
    run.bar = progress_bar(total=run.max_iters, initial=state.iteration, desc="train", disable=not run.progress)
    run.net.train()
    while state.iteration < run.max_iters:
        run.epoch, position = divmod(state.iteration, plan.iters_per_epoch)
        if position == 0:
            ckpt.seed_everything(run.settings.seed + run.epoch)  # RegSeg Sec 4.3: reseed at each epoch start
        items = plan.items(run.epoch)[position * plan.batch_size:]
        loader = torch.utils.data.DataLoader(SeededSamples(run.train_set, items), batch_size=plan.batch_size,
                                             shuffle=False, num_workers=tcfg.num_workers,
                                             pin_memory=run.device.type == "cuda",
                                             generator=torch.Generator().manual_seed(run.settings.seed + run.epoch))
        for images, target in loader:
            run.loss = step(run, images.to(run.device, non_blocking=True), target.to(run.device, non_blocking=True))
            it = state.iteration
            if it % plan.iters_per_epoch == 0 or it == run.max_iters:
                for hook in hooks_for(run):
                    hook.on_epoch_end(run, run.epoch)
            if state.ema is not None:
                state.ema.update(state.model, it)
            for hook in hooks_for(run):
                hook.after_step(run)
            if it >= run.max_iters:
                break
    run.bar.close()


def finish(run: Run) -> dict:
    """Final weights with their record and evaluation, the curves and (segmentation) a
    prediction picture (main process)."""
    state, ecfg, task = run.state, run.settings.eval, run.task
    summary = {"iterations": state.iteration, "weights": str(run.out / "model.safetensors")}
    run.precise_batchnorm()
    if run.info.is_main:
        weights = "ema" if run.settings.train.ema.enabled else "final"
        metrics = {}
        if run.val_set is not None:
            label = f"{weights} weights after {state.iteration} iterations"
            result = run.evaluate("final eval", run.progress)
            result.update(weights=label, split=ecfg.split)
            write_json(run.out / f"eval_{ecfg.split}.json", result)
            scores = task.scores(result)
            run.log.write(iter=state.iteration, split=ecfg.split, final=True, **{f"val_{k}": v for k, v in scores.items()})
            summary.update(scores)
            metrics[ecfg.split] = {**scores, "label": label}
            if run.progress:
                print(task.table(result, f"{ecfg.split}: {label}"))
            if ecfg.select == "best" and state.best["score"] is not None:
                summary["best"] = {task.metric: state.best["score"], "iter": state.best["iter"], "label":
                                   f"best of {state.best['evaluations']} evaluations on {ecfg.split} "
                                   "(selected on the evaluation set)"}
                write_json(run.out / "best.json", summary["best"])
        run.save_weights("model.safetensors", weights, metrics)
        try:
            task.pictures(run.out, state.eval_model, run.val_set, run.device, run.settings)
        except ImportError as exc:  # matplotlib is the optional extra atrous[plots]
            print(f"no curves.png/prediction.png: {exc}; install matplotlib (pip install 'atrous[plots]')")
    barrier(run.info)
    return summary
