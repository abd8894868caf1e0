#!/usr/bin/env python
"""The speed table of docs/benchmarks.md: every registered model on CPU (2 threads, fp32 and int8,
batch 1) at 512x1024 and 1024x2048, backends interleaved so machine load affects them alike.
RegSeg Sec 4.6 times 10 warm-up + 100 iterations on a GPU; on CPU this table of six backends,
two sizes and every model defaults to 3 warm-up + 20 timed iterations (``--warmup 10 --iters 100``
for the full protocol); the table states what was used.

    PYTHONPATH=. python benchmarks/speed.py                 # all models -> docs/benchmarks.md
    PYTHONPATH=. python benchmarks/speed.py --models regseg --iters 20

It is ``atrous bench --all`` with the same options; run it on a quiet machine (it takes roughly
ten minutes per model with the defaults on 2 cores, DSNet's 1024x2048 being the slowest).
"""
from __future__ import annotations

import sys

from atrous.cli import main

if __name__ == "__main__":
    sys.argv = ["atrous", "bench", "--all", *sys.argv[1:]]  # the command line the table records
    sys.exit(main(sys.argv[1:]))
