#!/usr/bin/env python
"""Where ONNX Runtime spends its time on a model, and whether our ``onnxruntime-opt`` graph differs
from the default export once ONNX Runtime has optimized both (docs/benchmarks.md).

For each model: the op counts of the two graphs after ONNX Runtime's own optimizations (saved with
``optimized_model_filepath``), then ONNX Runtime's profiler on the ``onnxruntime-opt`` graph: the
share of kernel time by op type and the slowest single nodes, averaged over ``--runs`` runs after
one warm-up run.

    PYTHONPATH=. python benchmarks/ort_profile.py fassdnet_l2 dwrseg_base --size 512x1024 --threads 2
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np


def optimized_ops(data: bytes, threads: int, folder: str, tag: str) -> collections.Counter:
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # the warning that an NCHWc graph is machine-specific is expected
    options.optimized_model_filepath = os.path.join(folder, f"{tag}.onnx")
    ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def profile(data: bytes, size, threads: int, runs: int, folder: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(folder, "profile")
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.randn(1, 3, *size).astype(np.float32)}
    for _ in range(runs + 1):
        session.run(None, feed)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    run_ms = [e["dur"] / 1000 for e in events if e.get("name") == "model_run"][1:]
    by_op, by_node = collections.Counter(), collections.Counter()
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    first_run = len(nodes) // (runs + 1)
    for e in nodes[first_run:]:  # drop the warm-up run
        ms = e["dur"] / 1000 / runs
        by_op[e["args"]["op_name"]] += ms
        by_node[(e["args"]["op_name"], e["name"][: -len("_kernel_time")])] += ms
    return run_ms, by_op, by_node


def main() -> None:
    from atrous.cli import parse_size
    from atrous.deploy.export import onnx_bytes, optimized_onnx_bytes
    from atrous.deploy.source import open_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--top", type=int, default=8, help="slowest nodes to list")
    args = parser.parse_args()
    size = parse_size(args.size)
    for name in args.models:
        model = open_model(name, warn_untrained=False)
        default = onnx_bytes(model, size)
        ours = optimized_onnx_bytes(model, size)
        with tempfile.TemporaryDirectory() as folder:
            ops = {tag: optimized_ops(data, args.threads, folder, tag)
                   for tag, data in (("onnxruntime", default), ("onnxruntime-opt", ours))}
            run_ms, by_op, by_node = profile(ours, size, args.threads, args.runs, folder)
        same = "the same" if ops["onnxruntime"] == ops["onnxruntime-opt"] else "different"
        print(f"\n{name} {size[0]}x{size[1]}, {args.threads} threads: after ONNX Runtime's optimizer the two graphs "
              f"have {same} op counts")
        for tag, counts in ops.items():
            print(f"  {tag:<16} " + ", ".join(f"{op} {n}" for op, n in counts.most_common()))
        total = sum(by_op.values())
        print(f"  onnxruntime-opt profiled: run {', '.join(f'{t:.1f}' for t in run_ms)} ms; kernel time by op:")
        for op, ms in by_op.most_common():
            print(f"    {op:<20} {ms:8.2f} ms {100 * ms / total:5.1f}%")
        print("  slowest nodes:")
        for (op, node), ms in by_node.most_common(args.top):
            print(f"    {ms:8.2f} ms  {op:<14} {node}")


if __name__ == "__main__":
    main()
