"""Extension points of the trainer, and the trainer's own periodic work as hooks: logging and
progress, evaluation, checkpoints. ``atrous search`` adds one (its rates' optimizer group and
log)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .distributed import barrier


class Hook:
    """Every method does nothing by default. ``main_only`` hooks run on the main process only;
    the others run on every process (and synchronise where they need to)."""

    main_only = False

    def build_optimizer(self, model: torch.nn.Module, train) -> torch.optim.Optimizer | None:
        """An optimizer to use instead of the recipe's SGD (None: the recipe's)."""
        return None

    def on_start(self, run) -> None:
        """After the model is built (and resumed, if so), before the first step."""

    def after_step(self, run) -> None:
        """After every optimizer step (``run.state.iteration`` counts it)."""

    def on_epoch_end(self, run, epoch: int) -> None:
        """After the last step of each epoch, and after the last step of training."""


class MetricsLog:
    """``DIR/metrics.jsonl``: one JSON object a line; on resume, lines after the resumed iteration
    are dropped so the log reads as one run."""

    def __init__(self, path: Path, enabled: bool, resume_iter: int | None):
        self.path, self.enabled = path, enabled
        if enabled:
            kept = []
            if resume_iter is not None and path.is_file():
                kept = [ln for ln in path.read_text().splitlines()
                        if ln.strip() and json.loads(ln).get("iter", 0) <= resume_iter]
            path.write_text("".join(ln + "\n" for ln in kept))

    def write(self, **record) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


class LogHook(Hook):
    """The progress bar (or log lines) and, every ``train.log_every`` steps, the mean global loss,
    lr and seconds per iteration in metrics.jsonl."""

    def __init__(self):
        self.window, self.start = [], time.perf_counter()

    def after_step(self, run) -> None:
        it, every = run.state.iteration, run.settings.train.log_every
        self.window.append(run.loss)
        run.bar.update(1)
        run.bar.set_postfix(loss=f"{run.loss:.4f}", lr=f"{run.lr:.2e}", epoch=run.epoch)
        if it % every == 0 or it == run.max_iters:
            run.log.write(iter=it, epoch=run.epoch, loss=sum(self.window) / len(self.window), lr=run.lr,
                          sec_per_iter=(time.perf_counter() - self.start) / len(self.window))
            self.window, self.start = [], time.perf_counter()


class EvalHook(Hook):
    """Every ``train.eval_every`` steps (before the last): evaluate on ``eval.split`` and, with
    ``eval.select: best``, keep the best weights as model_best.safetensors (labelled as selected
    on the evaluation set)."""

    def after_step(self, run) -> None:
        every, it = run.settings.train.eval_every, run.state.iteration
        if every and it % every == 0 and it < run.max_iters:
            run.evaluate_periodically()
            run.net.train()


class CheckpointHook(Hook):
    """Every ``train.checkpoint_every`` steps and after the last: the full train state, written
    atomically by the main process, the oldest beyond ``train.keep_checkpoints`` removed."""

    def after_step(self, run) -> None:
        it = run.state.iteration
        if it % run.settings.train.checkpoint_every == 0 or it == run.max_iters:
            if run.info.is_main:
                run.save_checkpoint()
            barrier(run.info)
