"""A long job's progress line: `tarexport: WHAT: X of Y GB (Z MB/s)` on standard error every
few seconds, from a timer thread, so the work itself never checks the clock."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO


def amount(count: int) -> str:
    """Bytes for people: 812 KB, 1.3 GB (decimal units, as `docker images` shows sizes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


class ProgressLine:
    """While the `with` block runs, print how many of `total` bytes `done()` says are done,
    every `interval` seconds (nothing for a job shorter than that; 0: never)."""

    def __init__(
        self, what: str, done: Callable[[], int], total: int, interval: float, out: TextIO | None = None
    ) -> None:
        self.what, self.done, self.total, self.interval = what, done, total, interval
        self.out = out or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._started = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            done = self.done()
            rate = done / max(time.monotonic() - self._started, 1e-9)
            print(
                f"tarexport: {self.what}: {amount(done)} of {amount(self.total)} ({amount(int(rate))}/s)",
                file=self.out,
                flush=True,
            )

    def __enter__(self) -> ProgressLine:
        if self.interval > 0:
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
