"""Inference speed by the papers' protocol.

RegSeg Sec 4.6: 10 warm-up iterations, then the mean over the next 100; CUDA is synchronized
around the timed loop and ``cudnn.benchmark`` is on. DSNet: BatchNorm folded, batch 1 (our
``fused`` and ``compile`` backends fold it; ``eager`` is the network as written).

The backends (PyTorch, ONNX Runtime and OpenVINO in fp32, bf16 and int8) are those of
:mod:`atrous.deploy.backends`. The int8 ones are calibrated on random inputs here (speed does not
depend on the calibration data). ONNX Runtime sessions keep ONNX Runtime's default settings
(spinning worker threads), as in the earlier tables; ``+nospin`` backends time the setting that
predict and eval use.

Several backends given together are timed interleaved: after every backend's warm-up, the timed
iterations run in ``rounds`` chunks, cycling through the backends (forwards, then backwards), so
that a change in machine load, or the position right after another backend, affects all of them
alike; each timed chunk starts after a short idle pause, so no backend pays for the previous
one's spinning worker threads. A square matmul in each precision the backends run in is timed
as one more interleaved "backend", so every row's achieved GFLOP/s is compared with the rate of
its own precision measured under the same load (:mod:`atrous.deploy.machine`).

``competing_load=N`` times everything while N busy processes run on this machine
(:mod:`atrous.deploy.contention`): latency on a shared CPU.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import UserError
from .backends import SPECS, build_predictor
from .machine import cpu_info, device_name, machine_summary, matmul_kernel, matmul_runner

__all__ = ["BACKENDS", "FP32_BACKENDS", "BenchResult", "benchmark", "build_runner", "format_results",
           "machine_summary", "set_threads", "time_interleaved"]

BACKENDS = tuple(SPECS)
FP32_BACKENDS = ("eager", "fused", "compile", "onnxruntime", "onnxruntime-opt")
# Idle time before each timed chunk. ONNX Runtime's worker threads keep spinning for some 20-50 ms
# after a run; on 2 cores a session run right after another one's ran 1.7x slower (fassdnet_l2,
# 512x1024: 76.7 vs 44.0 ms), which would charge whichever backend comes next.
SETTLE_S = 0.2


@dataclass
class BenchResult:
    model: str
    backend: str
    device: str
    device_name: str
    threads: int
    precision: str
    height: int
    width: int
    batch: int
    warmup: int
    iters: int
    ms_per_image: float
    fps: float
    gmacs: float  # per image
    gflops_per_s: float  # achieved: 2 x MACs / time
    matmul_gflops_per_s: float  # the machine's matmul rate in this row's precision, measured alongside
    round_ms: tuple  # ms per image of each interleaved round (spread under load)
    matmul_precision: str = "fp32"  # the precision of that matmul rate
    matmul_kernel: str = ""  # the GEMM it timed
    note: str = ""  # e.g. a fallback: "no bf16 units (none): ran fp32 ..."
    competing_load: int = 0  # busy processes that ran during the timing

    @property
    def matmul_share(self) -> float:
        return self.gflops_per_s / self.matmul_gflops_per_s if self.matmul_gflops_per_s else float("nan")


def set_threads(threads: int | None) -> int:
    """Set PyTorch's intra-op threads (when given); returns the count in use."""
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build_runner(model: nn.Module, backend: str, x: torch.Tensor, amp: bool = False,
                 threads: int | None = None) -> Callable[[], object]:
    """A no-argument callable running ``model`` on ``x`` with ``backend`` (prepared and run once
    already)."""
    predictor = build_predictor(model, backend, tuple(x.shape[-2:]), x.shape[0], x.device.type, threads, amp)
    run = predictor.bind(x)
    run()
    return run


def time_interleaved(runners: dict[str, Callable], device: str, warmup: int = 10, iters: int = 100,
                     rounds: int = 1, progress: bool = True, desc: str = "bench",
                     settle: float = SETTLE_S) -> dict[str, list[float]]:
    """Seconds per iteration of every runner, per round: ``warmup`` untimed calls each, then
    ``iters`` timed calls each split into ``rounds`` chunks that cycle through the runners, in
    the given order in even rounds and reversed in odd ones (so that a runner's position, e.g.
    right after one that leaves caches cold or threads asleep, is not always the same). Before
    each timed chunk the machine is left idle for ``settle`` seconds (see ``SETTLE_S``)."""
    from ..progress import progress as progress_bar

    rounds = max(1, min(rounds, iters))
    chunks = [iters // rounds + (1 if r < iters % rounds else 0) for r in range(rounds)]
    total = len(runners) * (warmup + iters)
    bar = progress_bar(total=total, desc=desc, disable=not progress, leave=False, unit="it")
    for name, run in runners.items():
        bar.set_postfix_str(f"{name} warm-up")
        for _ in range(warmup):
            run()
            bar.update()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners.items())
    for r, chunk in enumerate(chunks):  # every other round backwards: no runner always follows another
        for name, run in (order if r % 2 == 0 else order[::-1]):
            bar.set_postfix_str(name)
            synchronize(device)
            time.sleep(settle)  # let the previous runner's worker threads stop spinning
            start = time.perf_counter()
            for _ in range(chunk):
                run()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / chunk)
            bar.update(chunk)
    bar.close()
    return times


def benchmark(name: str, backends: Sequence[str] = ("eager",), size=(1024, 2048), batch: int = 1,
              device: str = "cpu", amp: bool = False, threads: int | None = None, warmup: int = 10,
              iters: int = 100, rounds: int | None = None, weights=None, num_classes: int | None = None,
              progress: bool = True, rate: float | dict | None = None, competing_load: int = 0) -> list[BenchResult]:
    """Time registered model ``name`` with each backend (interleaved) at ``batch x 3 x H x W``.
    ``rate``: the machine's matmul GFLOP/s (a number: fp32; or ``{precision: rate}``); for each
    precision not given, a 2048^3 (CUDA: 8192^3) matmul in that precision runs as one more
    interleaved "backend", so the rate is measured under the same load as the model.
    ``competing_load``: busy processes started for the timing and stopped after it."""
    from ..analysis import complexity
    from .contention import competing_load as load_context
    from .source import is_model_file, open_model

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda: no CUDA device is available to PyTorch")
    threads = set_threads(threads)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    model = open_model(name, weights, num_classes, allow_onnx=False, warn_untrained=False).to(device)
    name = model.record.model if is_model_file(name) else name
    h, w = size
    gmacs = complexity(model, (h, w))["macs"] / 1e9
    x = torch.randn(batch, 3, h, w, device=device)
    runners, predictors = {}, {}
    for backend in backends:
        if progress:
            print(f"  preparing {name} {backend} at {h}x{w}...", flush=True)
        predictors[backend] = build_predictor(model, backend, (h, w), batch, device, threads, amp)
        runners[backend] = predictors[backend].bind(x)
        runners[backend]()
    rates = dict(rate) if isinstance(rate, dict) else ({"fp32": float(rate)} if rate else {})
    flop = {}
    for precision in sorted({p.precision for p in predictors.values()} - set(rates)):
        runners[f"matmul {precision}"], flop[precision] = matmul_runner(precision, device)
    rounds = rounds or (4 if len(runners) > 1 else 1)
    with load_context(competing_load) as load:
        times = time_interleaved(runners, device, warmup, iters, rounds, progress, desc=f"{name} {h}x{w}")
    for precision, n_flop in flop.items():
        per_round = times.pop(f"matmul {precision}")
        rates[precision] = n_flop / (sum(per_round) / len(per_round)) / 1e9
    results = []
    for backend, per_round in times.items():
        chunks = [iters // rounds + (1 if r < iters % rounds else 0) for r in range(len(per_round))]
        ms = 1000 * sum(t * c for t, c in zip(per_round, chunks)) / sum(chunks) / batch
        p = predictors[backend]
        results.append(BenchResult(
            model=name, backend=backend, device=device, device_name=device_name(device),
            threads=threads, precision=p.label, height=h, width=w,
            batch=batch, warmup=warmup, iters=iters, ms_per_image=ms, fps=1000 / ms, gmacs=gmacs,
            gflops_per_s=2 * gmacs * 1000 / ms, matmul_gflops_per_s=rates[p.precision],
            round_ms=tuple(1000 * t / batch for t in per_round), matmul_precision=p.precision,
            matmul_kernel=matmul_kernel(p.precision, device) if p.precision in flop else "given",
            note=p.note, competing_load=load.n))
    return results


def format_results(results: Sequence[BenchResult]) -> str:
    """A plain-text table, ratios relative to ``eager`` (or the first backend); below it the
    matmul rate of each precision, the CPU's matrix units, fallbacks and the competing load."""
    if not results:
        return ""
    first = results[0]
    base = next((r for r in results if r.backend == "eager"), first)
    width = max(16, *(len(r.backend) for r in results))
    lines = [
        f"{first.model}: {first.device} ({first.device_name}), {first.threads} threads, batch {first.batch}, "
        f"{first.height}x{first.width}, {first.warmup} warm-up + {first.iters} timed iterations",
        f"{'backend':<{width}} {'precision':<14} {'ms/image':>9} {'FPS':>7} {'GMACs':>7} {'GFLOP/s':>8} "
        f"{'% matmul':>8} {'speed-up':>9}  ms per round",
    ]
    for r in results:
        rounds = " ".join(f"{t:.1f}" for t in r.round_ms)
        lines.append(f"{r.backend:<{width}} {r.precision.split(' (')[0]:<14} {r.ms_per_image:>9.1f} {r.fps:>7.2f} "
                     f"{r.gmacs:>7.2f} {r.gflops_per_s:>8.1f} {100 * r.matmul_share:>7.0f}% "
                     f"{base.ms_per_image / r.ms_per_image:>8.2f}x  {rounds}")
    rates = {r.matmul_precision: r for r in results}
    lines.append("% matmul: against the matmul rate of the row's precision: " + "; ".join(
        f"{p} {r.matmul_gflops_per_s:.1f} GFLOP/s ({r.matmul_kernel})" for p, r in rates.items())
        + f", {first.threads} threads, timed interleaved with the backends")
    if first.device == "cpu":
        lines.append(f"CPU matrix units: {cpu_info().capabilities}")
    lines += [f"note: {r.backend}: {r.note}" for r in results if r.note]
    if first.competing_load:
        lines.append(f"shared CPU: {first.competing_load} competing busy process(es) ran during the timing")
    return "\n".join(lines)
