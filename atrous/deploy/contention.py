"""A bounded competing CPU load for timing backends on a shared CPU (robots share theirs).

:func:`competing_load` starts ``n`` worker processes on this machine, each a single-threaded
pure-Python busy loop (one core's worth of scalar work, no extra memory, no thread pools), and
always stops them when the block ends: normally, on an exception or on Ctrl-C. Each worker also
stops by itself after ``max_seconds`` and as soon as its parent process is gone, so no worker can
outlive the benchmark that started it.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from typing import Iterator

# The worker: spin until the deadline, or until the parent dies (it is then re-parented).
WORKER = """
import os, sys, time
parent, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
x = 0
try:
    while time.monotonic() < deadline and os.getppid() == parent:
        for i in range(20000):
            x = (x * 1103515245 + i) % 2147483648
except KeyboardInterrupt:
    pass
"""
DEFAULT_MAX_SECONDS = 3600.0


class CompetingLoad:
    """The running workers: ``pids``, ``n``, and a one-line ``description``."""

    def __init__(self, processes: list[subprocess.Popen]):
        self.processes = processes

    @property
    def n(self) -> int:
        return len(self.processes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    @property
    def description(self) -> str:
        return (f"{self.n} competing busy-loop process(es) (single-threaded pure Python, one core each) on "
                f"{os.cpu_count()} logical CPUs" if self.n else "no competing load")

    def alive(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]


@contextlib.contextmanager
def competing_load(n: int, max_seconds: float = DEFAULT_MAX_SECONDS) -> Iterator[CompetingLoad]:
    """Run ``n`` busy worker processes for the duration of the block (``n == 0``: none)."""
    if n < 0:
        raise ValueError(f"competing load: expected a number of processes >= 0, got {n}")
    processes: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            processes.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, str(os.getpid()), str(float(max_seconds))],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if processes:
            time.sleep(0.2)  # let the interpreters start and reach the loop
        yield CompetingLoad(processes)
    finally:
        stop(processes)


def stop(processes: list[subprocess.Popen], timeout: float = 5.0) -> None:
    """Terminate every process (then kill what is left) and reap it."""
    for p in processes:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in processes:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
