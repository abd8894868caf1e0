"""Inference speed by the papers' protocol.

RegSeg Sec 4.6: 10 warm-up iterations, then the mean over the next 100; CUDA is synchronized
around the timed loop and ``cudnn.benchmark`` is on. DSNet: BatchNorm folded, batch 1 (our
``fused`` and ``compile`` backends fold it; ``eager`` is the network as written).

Backends:

* ``eager``: the model as users run it: eval mode, ``torch.no_grad``, NCHW input.
* ``fused``: :func:`~atrous.deploy.prepare_inference`: BatchNorm folded, channels_last,
  ``torch.inference_mode``.
* ``compile``: ``fused`` plus ``torch.compile`` (Inductor, with weight freezing on CPU).
* ``onnxruntime``: the unfused model exported to ONNX and run by ONNX Runtime with its default
  session options (only ``intra_op_num_threads`` set to the thread count).
* ``onnxruntime-opt``: our graph for ONNX Runtime: BatchNorm folded by
  :func:`~atrous.deploy.fuse` (also those ONNX Runtime cannot fold, after RegSeg's split/concat
  dilated conv) and :func:`~atrous.deploy.export.simplify_static`; same session options.
* ``int8``: the ONNX Runtime static int8 model of :mod:`atrous.deploy.quantize`, calibrated on
  random inputs (speed does not depend on the calibration data).

Several backends given together are timed interleaved: after every backend's warm-up, the timed
iterations run in ``rounds`` chunks, cycling through the backends (forwards, then backwards), so
that a change in machine load, or the position right after another backend, affects all of them
alike; each timed chunk starts after a short idle pause, so no backend pays for the previous
one's spinning worker threads.
"""
from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import UserError

BACKENDS = ("eager", "fused", "compile", "onnxruntime", "onnxruntime-opt", "int8")
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
    matmul_gflops_per_s: float  # the machine's matmul rate (fp32, or the autocast dtype), measured alongside
    round_ms: tuple  # ms per image of each interleaved round (spread under load)

    @property
    def matmul_share(self) -> float:
        return self.gflops_per_s / self.matmul_gflops_per_s if self.matmul_gflops_per_s else float("nan")


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def set_threads(threads: int | None) -> int:
    """Set PyTorch's intra-op threads (when given); returns the count in use."""
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def amp_dtype(device: str) -> torch.dtype:
    """Autocast precision: float16 on CUDA, bfloat16 on CPU."""
    return torch.float16 if device == "cuda" else torch.bfloat16


def precision_name(backend: str, device: str, amp: bool) -> str:
    if backend == "int8":
        return "int8 (static, ONNX Runtime QDQ)"
    if amp and not backend.startswith("onnxruntime"):
        return f"{str(amp_dtype(device)).replace('torch.', '')} autocast"
    return "fp32"


def build_runner(model: nn.Module, backend: str, x: torch.Tensor, amp: bool = False,
                 threads: int | None = None) -> Callable[[], object]:
    """A no-argument callable running ``model`` on ``x`` with ``backend`` (compiled / exported
    and warmed once already)."""
    device = x.device.type
    if backend not in BACKENDS:
        raise UserError(f"backend: {backend!r} is unknown; expected one of {', '.join(BACKENDS)}")
    if backend in ("onnxruntime", "onnxruntime-opt", "int8"):
        from .export import onnx_bytes, optimized_onnx_bytes, ort_session

        size, batch = tuple(x.shape[-2:]), x.shape[0]
        if backend == "int8":
            if device != "cpu":
                raise UserError("backend int8: CPU only (ONNX Runtime static quantization)")
            from .quantize import quantize_onnx, random_calibration

            data = quantize_onnx(optimized_onnx_bytes(model, size, batch), random_calibration(size, batch))
        elif backend == "onnxruntime-opt":
            data = optimized_onnx_bytes(model, size, batch)
        else:
            data = onnx_bytes(model, size, batch)
        session = ort_session(data, threads=threads, device=device)
        feed = {session.get_inputs()[0].name: x.detach().cpu().numpy()}
        return lambda: session.run(None, feed)

    from .fuse import prepare_inference

    autocast = (torch.autocast(device, dtype=amp_dtype(device)) if amp else contextlib.nullcontext())
    if backend == "eager":
        model = model.eval()

        def run():
            with torch.no_grad(), autocast:
                return model(x)
    else:
        compiled = prepare_inference(model, compile=backend == "compile")

        def run():
            with autocast:
                return compiled(x)
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
              progress: bool = True, rate: float | None = None) -> list[BenchResult]:
    """Time registered model ``name`` with each backend (interleaved) at ``batch x 3 x H x W``.
    ``rate`` is the machine's matmul GFLOP/s; when not given, a 2048^3 (CUDA: 8192^3) matmul in the
    timed precision runs as one more interleaved "backend", so the rate is measured under the
    same load as the model."""
    from ..analysis import complexity
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
    runners = {}
    for backend in backends:
        if progress:
            print(f"  preparing {name} {backend} at {h}x{w}...", flush=True)
        runners[backend] = build_runner(model, backend, x, amp, threads)
    rounds = rounds or (4 if len(runners) > 1 else 1)
    n = 0
    if rate is None:  # the reference: a square matmul timed in the same interleaved rounds, same load
        n = 8192 if device == "cuda" else 2048
        dtype = amp_dtype(device) if amp else torch.float32
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        runners["matmul"] = lambda: a @ b
    times = time_interleaved(runners, device, warmup, iters, rounds, progress, desc=f"{name} {h}x{w}")
    if n:
        per_round = times.pop("matmul")
        rate = 2 * n ** 3 / (sum(per_round) / len(per_round)) / 1e9
    results = []
    for backend, per_round in times.items():
        chunks = [iters // rounds + (1 if r < iters % rounds else 0) for r in range(len(per_round))]
        mean_s = sum(t * c for t, c in zip(per_round, chunks)) / sum(chunks)
        ms = 1000 * mean_s / batch
        results.append(BenchResult(
            model=name, backend=backend, device=device, device_name=device_name(device),
            threads=threads, precision=precision_name(backend, device, amp), height=h, width=w,
            batch=batch, warmup=warmup, iters=iters, ms_per_image=ms, fps=1000 / ms, gmacs=gmacs,
            gflops_per_s=2 * gmacs * 1000 / ms, matmul_gflops_per_s=rate,
            round_ms=tuple(1000 * t / batch for t in per_round)))
    return results


def format_results(results: Sequence[BenchResult]) -> str:
    """A plain-text table, ratios relative to ``eager`` (or the first backend)."""
    if not results:
        return ""
    first = results[0]
    base = next((r for r in results if r.backend == "eager"), first)
    lines = [
        f"{first.model}: {first.device} ({first.device_name}), {first.threads} threads, batch {first.batch}, "
        f"{first.height}x{first.width}, {first.warmup} warm-up + {first.iters} timed iterations",
        f"{'backend':<16} {'precision':<14} {'ms/image':>9} {'FPS':>7} {'GMACs':>7} {'GFLOP/s':>8} "
        f"{'% matmul':>8} {'speed-up':>9}  ms per round",
    ]
    for r in results:
        rounds = " ".join(f"{t:.1f}" for t in r.round_ms)
        lines.append(f"{r.backend:<16} {r.precision.split(' (')[0]:<14} {r.ms_per_image:>9.1f} {r.fps:>7.2f} "
                     f"{r.gmacs:>7.2f} {r.gflops_per_s:>8.1f} {100 * r.matmul_share:>7.0f}% "
                     f"{base.ms_per_image / r.ms_per_image:>8.2f}x  {rounds}")
    kind = "autocast-dtype" if "autocast" in first.precision else "fp32"
    lines.append(f"machine {kind} matmul rate: {first.matmul_gflops_per_s:.1f} GFLOP/s "
                 f"({first.threads} threads, timed interleaved with the backends)")
    return "\n".join(lines)


def machine_summary(threads: int) -> str:
    load = ""
    with contextlib.suppress(OSError, AttributeError):
        load = f", load average {os.getloadavg()[0]:.2f}"
    return (f"{device_name('cpu')}, {os.cpu_count()} logical CPUs, {threads} threads, torch {torch.__version__}"
            f"{_ort_version()}{load}")


def _ort_version() -> str:
    try:
        import onnxruntime
    except ImportError:
        return ""
    return f", onnxruntime {onnxruntime.__version__}"
