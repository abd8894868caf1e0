#!/usr/bin/env python
"""Where OpenVINO spends its time on a model, from its per-layer performance counters: what bounds
a backend that misses the bf16 / int8 targets of docs/benchmarks.md (issue 14), as
``benchmarks/ort_profile.py`` does for ONNX Runtime.

For each model and backend (``openvino``, ``openvino-bf16``, ``openvino-int8``; int8 calibrated on
random inputs): the run time, then the share of layer time by layer type and by the kernel
OpenVINO chose (its ``exec_type``, e.g. ``brgconv_avx512_amx_bf16`` for an AMX convolution,
``jit_avx512_I8`` for AVX-512 int8, ``ref_*`` for a reference kernel), and the slowest layers;
averaged over ``--runs`` runs after one warm-up run.

    PYTHONPATH=. python benchmarks/ov_profile.py regseg --size 512x1024 --threads 2
    PYTHONPATH=. python benchmarks/ov_profile.py dsnet --backend openvino-int8 --top 12
"""
from __future__ import annotations

import argparse
import collections
import time

import numpy as np


def profile(predictor, size, runs: int):
    """``(ms per run, {layer type: ms}, {exec type: ms}, {(layer, type, exec type): ms})``."""
    import openvino as ov

    request = predictor.compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)))
    request.infer()  # warm-up
    by_type, by_exec, by_layer = collections.Counter(), collections.Counter(), collections.Counter()
    start = time.perf_counter()
    for _ in range(runs):
        request.infer()
        for info in request.get_profiling_info():
            if info.status != info.Status.EXECUTED:
                continue
            ms = info.real_time.total_seconds() * 1000 / runs
            by_type[info.node_type] += ms
            by_exec[info.exec_type] += ms
            by_layer[(info.node_name, info.node_type, info.exec_type)] += ms
    return (time.perf_counter() - start) * 1000 / runs, by_type, by_exec, by_layer


def main() -> None:
    from atrous.cli import parse_size
    from atrous.deploy.backends import build_predictor
    from atrous.deploy.machine import machine_summary
    from atrous.deploy.source import open_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="openvino,openvino-bf16,openvino-int8", help="comma-separated")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--top", type=int, default=8, help="slowest layers to list")
    args = parser.parse_args()
    size = parse_size(args.size)
    print(machine_summary(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    for name in args.models:
        model = open_model(name, warn_untrained=False)
        for backend in [b.strip() for b in args.backend.split(",") if b.strip()]:
            predictor = build_predictor(model, backend, size, threads=args.threads)
            predictor.compiled = _with_counters(predictor)
            ms, by_type, by_exec, by_layer = profile(predictor, size, args.runs)
            total = sum(by_type.values())
            note = f"; {predictor.note}" if predictor.note else ""
            print(f"\n{name} {size[0]}x{size[1]} {backend} ({predictor.label}{note}): "
                  f"{ms:.1f} ms per run (counters on), layers {total:.1f} ms")
            for title, counter in (("by layer type", by_type), ("by kernel (exec type)", by_exec)):
                print(f"  {title}:")
                for key, t in counter.most_common(10):
                    print(f"    {key:<34} {t:8.2f} ms {100 * t / total:5.1f}%")
            print("  slowest layers:")
            for (layer, kind, kernel), t in by_layer.most_common(args.top):
                print(f"    {t:8.2f} ms  {kind:<16} {kernel:<28} {layer}")


def _with_counters(predictor):
    """The predictor's model compiled again with the same settings and performance counters on."""
    import openvino as ov

    return ov.Core().compile_model(predictor.ov_model, "CPU", {**predictor.config, "PERF_COUNT": True})


if __name__ == "__main__":
    main()
