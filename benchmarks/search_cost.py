"""Cost of the dilation search (RegSeg Sec 3.4): one CPU training step (forward, loss, backward,
SGD step) of ``regseg_search`` against ``regseg`` at the same starting dilations, input and batch.

    PYTHONPATH=. python benchmarks/search_cost.py --size 256x256 --batch 4 --threads 1

The searchable model starts from fractional rates (integer + 0.5) so all four convolutions of
every FractionalDilatedConv run, as they do during a search; the integer model uses the rounded
rates. Reports, per model, the median over ``--rounds`` x ``--steps`` timed steps (after
``--warmup`` steps per round) of the process CPU time of a step (the ratio uses it: with one
thread it is what the step costs, and it barely moves when other processes load the machine)
and of its wall time (which does move).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch.nn import functional as F

import atrous
from atrous.cli import parse_size
from atrous.models.regseg_search import SEARCH_START


def step_times(model, x, target, steps: int, warmup: int) -> list[tuple[float, float]]:
    """``(cpu seconds, wall seconds)`` of each timed training step."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()
    times = []
    for i in range(warmup + steps):
        cpu, wall = time.process_time(), time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append((time.process_time() - cpu, time.perf_counter() - wall))
    return times


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=(256, 256))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--classes", type=int, default=19)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    fractional = [tuple(r + 0.5 for r in d) for d in SEARCH_START]
    integer = [tuple(int(r) for r in d) for d in SEARCH_START]
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, *args.size)
    target = torch.randint(0, args.classes, (args.batch, *args.size))
    models = {
        "regseg (integer)": atrous.create_model("regseg", args.classes, dilations=integer),
        "regseg_search (fractional)": atrous.create_model("regseg_search", args.classes, dilations=fractional),
    }
    # Alternate the two models so that load from other processes hits both alike.
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            times[name] += step_times(model, x, target, args.steps, args.warmup)
    print(f"machine: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, "
          f"{args.threads} thread(s); input {args.batch}x3x{args.size[0]}x{args.size[1]}")
    cpu, wall = {}, {}
    for name, t in times.items():
        cpu[name] = statistics.median(c for c, _ in t)
        wall[name] = statistics.median(w for _, w in t)
        print(f"{name:<28} CPU {cpu[name] * 1e3:8.1f} ms/step (min {min(c for c, _ in t) * 1e3:.1f}), "
              f"wall {wall[name] * 1e3:8.1f} ms/step, median of {len(t)} steps")
    (base, search), (wall_base, wall_search) = cpu.values(), wall.values()
    print(f"ratio search/integer: CPU time {search / base:.2f}x (target <= 1.5x), wall time "
          f"{wall_search / wall_base:.2f}x")


if __name__ == "__main__":
    main()
