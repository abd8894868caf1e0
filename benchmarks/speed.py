#!/usr/bin/env python
"""The speed table of docs/benchmarks.md: every registered model on CPU (2 threads, fp32 and int8,
batch 1) at 512x1024 and 1024x2048, each backend timed by RegSeg Sec 4.6's protocol (10 warm-up
iterations, mean of the next 100), backends interleaved so machine load affects them alike.

    PYTHONPATH=. python benchmarks/speed.py                 # all models -> docs/benchmarks.md
    PYTHONPATH=. python benchmarks/speed.py --models regseg --iters 20

It is ``atrous bench --all`` with the same options; run it on a quiet machine (it takes roughly
ten minutes per model with the full protocol).
"""
from __future__ import annotations

import sys

from atrous.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--all", *sys.argv[1:]]))
