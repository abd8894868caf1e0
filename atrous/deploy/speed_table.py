"""``atrous bench --all``: a Table-8-like speed table of every registered model, written into
docs/benchmarks.md between markers (the rest of the file is kept).

For each model and resolution the backends are timed interleaved (see
:func:`~atrous.deploy.benchmark.time_interleaved`); the table gives params, GMACs, ms per image
of each backend, the best fp32 path's speed-up over plain eager, and whether it meets the speed
target: best fp32 >= 1.3x eager and not slower than ONNX Runtime with default settings.
"""
from __future__ import annotations

import datetime
import shlex
import sys
from typing import Sequence

from .benchmark import FP32_BACKENDS, BenchResult, benchmark, set_threads
from .machine import machine_summary

BEGIN = "<!-- atrous bench --all: begin (generated; edit the script, not this table) -->"
END = "<!-- atrous bench --all: end -->"
# The table under a competing load (atrous bench --all --shared-load N) has its own markers.
SHARED_BEGIN = "<!-- atrous bench --all --shared-load: begin (generated; edit the script, not this table) -->"
SHARED_END = "<!-- atrous bench --all --shared-load: end -->"
TARGET_SPEEDUP = 1.3
# Issue 14: reduced precision against the best fp32 path, on a CPU with AMX.
PRECISION_TARGETS = {"bf16": 2.0, "int8": 3.0}
# Trained, then rounded into plain ``regseg`` (atrous search): its inference speed is regseg's.
SEARCH_ONLY = ("regseg_search",)
OUR_FP32 = ("fused", "compile", "onnxruntime-opt", "openvino")


def best_fp32(results: Sequence[BenchResult]) -> BenchResult | None:
    ours = [r for r in results if r.backend.split("+")[0] in OUR_FP32 and r.matmul_precision == "fp32"]
    return min(ours, key=lambda r: r.ms_per_image) if ours else None


def precision_speedups(results: Sequence[BenchResult]) -> str:
    """``"bf16 2.10x (openvino-bf16, yes), int8 3.05x (openvino-int8, yes)"``: the fastest path of
    each reduced precision against the best fp32 path, and whether it meets
    :data:`PRECISION_TARGETS`; fallbacks (rows that ran fp32) do not count."""
    best = best_fp32(results)
    if best is None:
        return "-"
    parts = []
    for precision, target in PRECISION_TARGETS.items():
        rows = [r for r in results if r.matmul_precision == precision]
        if rows:
            fastest = min(rows, key=lambda r: r.ms_per_image)
            ratio = best.ms_per_image / fastest.ms_per_image
            parts.append(f"{precision} {ratio:.2f}x ({fastest.backend}, {'yes' if ratio >= target else 'no'})")
    return ", ".join(parts) or "-"


def verdict(results: Sequence[BenchResult]) -> tuple[str, str]:
    """``(speed-up text, target text)`` for one model at one size. The target is ``yes`` (>= 1.3x
    eager and not slower than default ONNX Runtime), ``tie`` (>= 1.3x eager, slower than ONNX
    Runtime on the mean but within the round-to-round spread: the slowest round of ONNX Runtime
    was slower than the fastest round of the best path) or ``no``."""
    by = {r.backend: r for r in results}
    best = best_fp32(results)
    if best is None:
        return "-", "-"
    if "eager" not in by:  # not timed: the fastest fp32 path alone
        return best.backend, "-"
    speedup = by["eager"].ms_per_image / best.ms_per_image
    text = f"{speedup:.2f}x ({best.backend})"
    target = "yes" if speedup >= TARGET_SPEEDUP else "no"
    ort = by.get("onnxruntime")
    if ort is not None:
        text += f", {ort.ms_per_image / best.ms_per_image:.2f}x ORT"
        if target == "yes" and best.ms_per_image > ort.ms_per_image:
            target = "tie" if min(best.round_ms) <= max(ort.round_ms) else "no"
    return text, target


def run_all(models: Sequence[str], sizes: Sequence[tuple[int, int]], backends: Sequence[str],
            threads: int = 2, warmup: int = 10, iters: int = 100, rounds: int = 4, progress: bool = True,
            competing_load: int = 0):
    """Benchmark every model at every size on CPU; returns ``(rows, threads)`` where rows are
    ``(model, params, {size: [BenchResult...]})``. Each size's matmul reference rates are timed
    interleaved with its backends; ``competing_load`` busy processes run during each timing."""
    from ..analysis import count_params
    from ..models import create_model

    threads = set_threads(threads)
    rows = []
    for name in models:
        per_size = {}
        for size in sizes:
            per_size[size] = benchmark(name, backends, size, 1, "cpu", False, threads, warmup, iters, rounds,
                                       progress=progress, competing_load=competing_load)
            if progress:
                print(format_line(per_size[size]), flush=True)
        rows.append((name, count_params(create_model(name)), per_size))
    return rows, threads


def format_line(results: Sequence[BenchResult]) -> str:
    r0 = results[0]
    parts = ", ".join(f"{r.backend} {r.ms_per_image:.1f} ms" for r in results)
    return f"{r0.model} {r0.height}x{r0.width}: {parts}; best fp32 {verdict(results)[0]}"


def markdown_table(rows, sizes, backends, threads: int, command: str, iters: int, warmup: int,
                   rounds: int, competing_load: int = 0) -> str:
    from .backends import SPECS

    reduced = any(SPECS[b.split("+")[0]].precision != "fp32" for b in backends)
    load = (f" Shared CPU: {competing_load} competing single-threaded busy process(es) ran during every timing "
            f"(started and stopped by the benchmark)." if competing_load else "")
    lines = [
        SHARED_BEGIN if competing_load else BEGIN,
        f"Command: `{command}`  ",
        f"Machine: {machine_summary(threads)}.  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Protocol: batch 1, "
        f"each backend in its own precision (docs/deploy.md), {warmup} warm-up + mean of {iters} timed iterations per backend, "
        f"backends interleaved in {rounds} rounds. ms per image; GMACs per image; "
        f"'best fp32' = fastest of {'/'.join(OUR_FP32)} over plain eager, and over ONNX Runtime (default settings). "
        f"target: yes = best fp32 >= {TARGET_SPEEDUP}x eager and not slower than ONNX Runtime; "
        f"tie = >= {TARGET_SPEEDUP}x eager, slower than ONNX Runtime on the mean but within the spread of the rounds."
        + (f" 'reduced precision': the fastest bf16 and int8 path over the best fp32 path (targets: bf16 >= "
           f"{PRECISION_TARGETS['bf16']}x, int8 >= {PRECISION_TARGETS['int8']}x on a CPU with AMX)." if reduced else "")
        + load,
        "",
    ]
    header = ["model", "params"]
    for h, w in sizes:
        header += [f"GMACs {h}x{w}"] + [f"{b} {h}x{w}" for b in backends] + [f"best fp32 {h}x{w}", f"target {h}x{w}"]
        header += [f"reduced precision {h}x{w}"] if reduced else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for name, params, per_size in rows:
        cells = [name, f"{params / 1e6:.2f}M"]
        for size in sizes:
            results = per_size[size]
            by = {r.backend: r for r in results}
            cells.append(f"{results[0].gmacs:.2f}")
            for b in backends:
                r = by.get(b)
                cells.append(f"{r.ms_per_image:.1f} ({100 * r.matmul_share:.0f}%)" if r else "-")
            cells += list(verdict(results))
            cells += [precision_speedups(results)] if reduced else []
        lines.append("| " + " | ".join(cells) + " |")
    rates = ", ".join(f"{name} {size[0]}x{size[1]}: " + "/".join(
        f"{p} {r.matmul_gflops_per_s:.0f}" for p, r in {r.matmul_precision: r for r in per_size[size]}.items())
        for name, _, per_size in rows for size in sizes)
    lines += ["", "In parentheses: achieved GFLOP/s (2 x MACs / time) as a share of the matmul rate of the "
              "backend's precision (a 2048^3 matmul in fp32, bf16 or int8, timed interleaved with each row's "
              f"backends, so under the same load; GFLOP/s: {rates}).", SHARED_END if competing_load else END]
    return "\n".join(lines)


def write_section(path: str, section: str) -> None:
    """Replace the generated section of ``path`` whose markers ``section`` carries (the quiet or
    the shared-CPU table), or append it; create the file if needed."""
    from ..utils import replace_marked_section

    begin, end = (SHARED_BEGIN, SHARED_END) if section.startswith(SHARED_BEGIN) else (BEGIN, END)
    replace_marked_section(path, begin, end, section)


def bench_all(models: Sequence[str] | None = None, sizes=((512, 1024), (1024, 2048)),
              backends: Sequence[str] = FP32_BACKENDS + ("int8",), threads: int = 2, warmup: int = 10,
              iters: int = 100, rounds: int = 4, out: str | None = "docs/benchmarks.md",
              command: str | None = None, progress: bool = True, competing_load: int = 0) -> str:
    """Run :func:`run_all` and write the markdown table to ``out`` (under a competing load: the
    shared-CPU table, between its own markers); returns the table."""
    from ..models import list_models

    models = list(models or [m for m in list_models(aliases=False) if m not in SEARCH_ONLY])
    sizes = [tuple(s) for s in sizes]
    rows, threads = run_all(models, sizes, backends, threads, warmup, iters, rounds, progress, competing_load)
    command = command or "atrous " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    section = markdown_table(rows, sizes, backends, threads, command, iters, warmup, rounds, competing_load)
    if out:
        write_section(out, section)
    return section
