#!/usr/bin/env python
"""Training throughput: a recipe's training step as atrous' trainer runs it, against the plain
reference step, timed interleaved in one process on the same batches (issue 14).

    PYTHONPATH=. python benchmarks/train_speed.py camvid_cpu --threads 2
    PYTHONPATH=. python benchmarks/train_speed.py camvid_cpu --variant "fp32 cl: precision=fp32 channels_last=true" \\
        --variant "bf16 fused-sgd: precision=bf16 sgd=fused" --variant "bf16 no-ohem: precision=bf16 ohem=ce"

* **reference**: what the official code does: eager, NCHW, fp32; the recipe's model (built and
  seeded as the trainer builds it), loss and SGD (momentum, weight decay groups).
* **trainer**: the step of :func:`atrous.engine.trainer.train` for the recipe (``--set`` applies
  overrides): its precision (``train.precision``, ``auto`` resolved for this machine) and memory
  format (``train.channels_last``), autocast, GradScaler, gradient clipping, ``loss.item()``.
* **variants** (``--variant "LABEL: key=value ..."``): the trainer's step with levers changed:
  ``precision`` (fp32, bf16, auto), ``channels_last`` (true, false, auto), ``compile`` (true:
  ``torch.compile`` of the model, forward and backward), ``sgd`` (default: PyTorch's choice, on
  CPU the per-parameter loop; ``foreach``; ``fused``), ``ohem`` (recipe: the recipe's loss; ce:
  plain cross-entropy instead, so the difference is all that the hard-pixel mining costs).

Batch size and crop are the recipe's; the batches are the first ones of the trainer's epoch 0
(its sampler, per-sample seeds and augmentation) when the dataset is present, else random images
and labels of the crop size (said in the output). Each round runs ``--steps`` steps of every step
function, in turn (forwards, then backwards in the next round); per-step wall times are kept and
the minimum and median are printed with the ratio reference / step (the issue quotes the minimum
of 3). ``--data`` also times the trainer's data loading of a batch (``train.num_workers``), the
part a background loader could overlap with compute.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from contextlib import nullcontext

import torch


@dataclasses.dataclass
class Levers:
    precision: str = "recipe"  # recipe | auto | fp32 | bf16 | fp16
    channels_last: object = "recipe"  # recipe | auto | True | False
    compile: bool = False
    sgd: str = "default"  # default | foreach | fused
    ohem: str = "recipe"  # recipe | ce


LEVER_VALUES = {"precision": ("recipe", "auto", "fp32", "bf16", "fp16"),
                "channels_last": ("recipe", "auto", "true", "false"), "compile": ("true", "false"),
                "sgd": ("default", "foreach", "fused"), "ohem": ("recipe", "ce")}


def parse_variant(text: str) -> tuple[str, Levers]:
    """``"LABEL: precision=bf16 sgd=fused"`` -> (label, Levers)."""
    label, sep, rest = text.partition(":")
    if not sep:
        label, rest = text, text
    levers = Levers()
    for item in rest.split():
        key, _, value = item.partition("=")
        if key not in LEVER_VALUES or value not in LEVER_VALUES[key]:
            raise SystemExit(f"--variant {text!r}: {item!r}; expected key=value with "
                             + "; ".join(f"{k}: {'|'.join(v)}" for k, v in LEVER_VALUES.items()))
        typed = {"true": True, "false": False}.get(value, value) if key in ("channels_last", "compile") else value
        setattr(levers, key, typed)
    return label.strip(), levers


class TrainStep:
    """One training step (forward under autocast, loss, zero_grad, scaled backward, optional
    gradient clipping, optimizer step, ``loss.item()``), as the trainer's loop does it."""

    def __init__(self, name, model, criterion, optimizer, autocast, scaler, channels_last, grad_clip, describe):
        self.name, self.model, self.criterion, self.optimizer = name, model, criterion, optimizer
        self.autocast, self.scaler, self.channels_last, self.grad_clip = autocast, scaler, channels_last, grad_clip
        self.describe = describe
        self.net = model

    def __call__(self, images: torch.Tensor, target: torch.Tensor) -> float:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.autocast:
            loss = self.criterion(self.net(images), target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.name}: loss is {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()


def _optimizer(model, train, sgd: str) -> torch.optim.Optimizer:
    from atrous.engine.optim import build_optimizer

    optimizer = build_optimizer(model, train)  # the trainer's optimizer
    if sgd == "default":
        return optimizer
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in optimizer.param_groups]
    return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov, **{sgd: True})


def _model(settings, num_classes: int):
    """The trainer's model: seeded before it is built (RegSeg Sec 4.3), as atrous train does."""
    from types import SimpleNamespace

    from atrous.engine.checkpoint import seed_everything
    from atrous.engine.tasks import build_task

    seed_everything(settings.seed)
    return build_task(settings).model(settings, SimpleNamespace(num_classes=num_classes))


def build_trainer_step(config: dict, num_classes: int, device: torch.device, levers: Levers | None = None,
                       ignore_index: int = 255, name: str = "trainer") -> TrainStep:
    """The step of :func:`atrous.engine.trainer.train` for ``config``, with ``levers`` changed."""
    import dataclasses

    from atrous.engine.config import check_config
    from atrous.engine.losses import loss_from_config
    from atrous.engine.trainer import autocast_for, resolve_precision, use_channels_last

    levers = levers or Levers()
    settings = check_config(config)
    tcfg = settings.train
    precision = tcfg.precision if levers.precision == "recipe" else levers.precision
    layout = tcfg.channels_last if levers.channels_last == "recipe" else levers.channels_last
    model = _model(settings, num_classes).to(device)
    channels_last = use_channels_last(device, layout, precision)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_cfg = settings.loss if levers.ohem == "recipe" else dataclasses.replace(settings.loss, name="ce", aux_loss="same")
    criterion = loss_from_config(loss_cfg, ignore_index)
    optimizer = _optimizer(model, tcfg, levers.sgd)
    autocast, use_scaler = autocast_for(device, precision)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    model.train()
    describe = (f"{resolve_precision(device, precision)}, {'channels_last' if channels_last else 'NCHW'}, "
                f"sgd {levers.sgd}, loss {loss_cfg.name}{', compiled' if levers.compile else ''}")
    step = TrainStep(name, model, criterion, optimizer, autocast, scaler, channels_last, tcfg.grad_clip, describe)
    if levers.compile:
        step.net = torch.compile(model)
    return step


def build_reference_step(config: dict, num_classes: int, device: torch.device, ignore_index: int = 255) -> TrainStep:
    """The plain step: the same model (same seed), loss and SGD; eager, NCHW, fp32."""
    from atrous.engine.config import check_config
    from atrous.engine.losses import loss_from_config

    settings = check_config(config)
    model = _model(settings, num_classes).to(device).train()
    criterion = loss_from_config(settings.loss, ignore_index)
    optimizer = _optimizer(model, settings.train, "default")
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    return TrainStep("reference", model, criterion, optimizer, nullcontext(), scaler, False, None,
                     f"fp32, NCHW, sgd default, loss {config['loss']['name']}")


def recipe_batches(config: dict, count: int, progress: bool = False):
    """``(batches, num_classes, ignore_index, source)``: the first ``count`` batches of the trainer's
    epoch 0, or random ones of the recipe's crop size when the dataset cannot be built."""
    from atrous.data import build_dataset
    from atrous.engine.plan import EpochPlan, SeededSamples

    tcfg = config["train"]
    batch = int(tcfg["batch_size"])
    try:
        train_set = build_dataset(config["data"], config["train"]["split"], train=True)
    except (OSError, ValueError) as exc:  # no data here: random batches of the crop size
        crop = ((config["data"].get("transforms") or {}).get("train") or {}).get("crop") or [256, 256]
        h, w = (crop, crop) if isinstance(crop, int) else crop
        classes = int(config["data"].get("num_classes", 19))
        g = torch.Generator().manual_seed(0)
        batches = [(torch.randn(batch, 3, h, w, generator=g), torch.randint(0, classes, (batch, h, w), generator=g))
                   for _ in range(count)]
        return batches, classes, 255, f"random {batch}x3x{h}x{w} batches (dataset unavailable: {exc})"
    plan = EpochPlan(train_set, batch, 1, 0, int(config["seed"]))
    items = plan.items(0)[: batch * count]
    loader = torch.utils.data.DataLoader(SeededSamples(train_set, items), batch_size=batch, shuffle=False)
    batches = [(x, y) for x, y in loader]
    h, w = batches[0][0].shape[-2:]
    return (batches, train_set.num_classes, int(getattr(train_set, "ignore_index", 255)),
            f"the trainer's first {len(batches)} batches of epoch 0 ({batch}x3x{h}x{w})")


def time_steps(steps: dict, batches, per_round: int, rounds: int, warmup: int = 1) -> tuple[dict, dict]:
    """``(wall, cpu)``: wall and process-CPU seconds of each step call, ``per_round`` calls of each
    step function per round, the functions in turn (reversed every other round); ``warmup``
    untimed calls each first."""
    for step in steps.values():
        for i in range(warmup):
            step(*batches[i % len(batches)])
    wall, cpu = {name: [] for name in steps}, {name: [] for name in steps}
    order = list(steps.items())
    for r in range(rounds):
        for name, step in (order if r % 2 == 0 else order[::-1]):
            for i in range(per_round):
                images, target = batches[(r * per_round + i) % len(batches)]
                start, start_cpu = time.perf_counter(), time.process_time()
                step(images, target)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def data_seconds(config: dict, count: int) -> float:
    """Seconds per batch of the trainer's data loading (its DataLoader and ``train.num_workers``),
    in the steady state: the batches are loaded once untimed first, so the files are in the page
    cache as they are after the first epoch (a cold first read was 5x slower here)."""
    from atrous.data import build_dataset
    from atrous.engine.plan import EpochPlan, SeededSamples

    train_set = build_dataset(config["data"], config["train"]["split"], train=True)
    batch = int(config["train"]["batch_size"])
    plan = EpochPlan(train_set, batch, 1, 0, int(config["seed"]))
    loader = torch.utils.data.DataLoader(SeededSamples(train_set, plan.items(0)[: batch * (count + 1)]),
                                         batch_size=batch, num_workers=int(config["train"]["num_workers"]))
    for _ in loader:  # warm the page cache
        pass
    it = iter(loader)
    next(it)  # workers started, first batch
    start = time.perf_counter()
    n = sum(1 for _ in it)
    return (time.perf_counter() - start) / max(1, n)


def report(steps: dict, wall: dict, cpu: dict, source: str, threads: int) -> str:
    """The table: per step function the minimum and median wall time, the ratio reference / step
    on both, and the minimum process CPU time (all threads; a check on a busy machine, where wall
    times swing but the work done barely moves)."""
    from atrous.deploy.machine import machine_summary

    ref, ref_cpu = wall["reference"], cpu["reference"]
    lines = [f"machine: {machine_summary(threads)}", f"batches: {source}",
             f"{'step':<24} {'min s':>7} {'median s':>9} {'ref/step (min)':>15} {'(median)':>9} {'CPU s':>7} "
             f"{'(ratio)':>8}  what runs"]
    for name, t in wall.items():
        lines.append(f"{name:<24} {min(t):>7.3f} {statistics.median(t):>9.3f} {min(ref) / min(t):>14.2f}x "
                     f"{statistics.median(ref) / statistics.median(t):>8.2f}x {min(cpu[name]):>7.3f} "
                     f"{min(ref_cpu) / min(cpu[name]):>7.2f}x  {steps[name].describe}")
    return "\n".join(lines)


def main(argv=None) -> None:
    from atrous.engine import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default="camvid_cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    parser.add_argument("--variant", action="append", default=[], help='"LABEL: key=value ..." (see above)')
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1, help="timed steps of each step function per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each first (compile: more)")
    parser.add_argument("--data", action="store_true", help="also time the trainer's data loading per batch")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = load_config(args.recipe, args.set)
    device = torch.device("cpu")
    batches, classes, ignore, source = recipe_batches(config, max(2, args.steps))
    steps = {"reference": build_reference_step(config, classes, device, ignore),
             "trainer": build_trainer_step(config, classes, device, None, ignore)}
    for text in args.variant:
        label, levers = parse_variant(text)
        steps[label] = build_trainer_step(config, classes, device, levers, ignore, label)
    wall, cpu = time_steps(steps, batches, args.steps, args.rounds, args.warmup)
    print(report(steps, wall, cpu, source, args.threads))
    if args.data:
        seconds = data_seconds(config, max(2, args.steps))
        print(f"data loading: {seconds:.3f} s per batch (train.num_workers={config['train']['num_workers']}), "
              f"{100 * seconds / statistics.median(wall['trainer']):.0f}% of the trainer step's median")


if __name__ == "__main__":
    main()
