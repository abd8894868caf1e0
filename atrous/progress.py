"""Progress of long work: a tqdm bar on a terminal, periodic log lines otherwise.

When stderr is a terminal, :func:`progress` is a tqdm bar. When it is not (a log file, CI, a
pipe), carriage-return bar updates would fill the log with thousands of partial lines, so the
same calls print one plain line every ``ATROUS_LOG_EVERY`` seconds (default 30) and one at the
end: ``train: 1200/2500 (48%) 1.31 s/it, eta 28m22s, loss=0.41``.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable


def _interval() -> float:
    try:
        return float(os.environ.get("ATROUS_LOG_EVERY", "30"))
    except ValueError:
        return 30.0


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "",
             disable: bool = False, initial: int = 0, unit: str = "it", leave: bool = True):
    """A progress object with tqdm's interface (iteration, ``update``, ``set_postfix``,
    ``set_postfix_str``, ``close``): tqdm on a terminal, :class:`LogProgress` otherwise."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not disable and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, initial=initial, unit=unit, leave=leave,
                    dynamic_ncols=True)
    return LogProgress(iterable, total, desc, disable, initial, unit)


class LogProgress:
    """Plain log lines at most every ``interval`` seconds, plus one when closed."""

    def __init__(self, iterable=None, total=None, desc="", disable=False, initial=0, unit="it",
                 interval: float | None = None, stream=None):
        self.iterable, self.total, self.desc, self.disable, self.unit = iterable, total, desc, disable, unit
        self.n = self.start_n = initial
        self.interval = _interval() if interval is None else interval
        self.stream = stream or sys.stderr
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self):
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.disable and time.monotonic() - self.last >= self.interval:
            self._print()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if not self.closed and not self.disable and self.n > self.start_n:
            self._print()
        self.closed = True

    def _print(self) -> None:
        self.last = now = time.monotonic()
        done = self.n - self.start_n
        rate = (now - self.start) / done if done else 0.0
        count = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else str(self.n)
        text = f"{self.desc}: {count}"
        if done:
            text += f" {rate:.3g} s/{self.unit}"
            if self.total:
                left = rate * (self.total - self.n)
                text += f", eta {int(left // 60)}m{int(left % 60):02d}s"
        if self.postfix:
            text += f", {self.postfix}"
        print(text, file=self.stream, flush=True)
