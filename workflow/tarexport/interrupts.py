"""Ctrl-C that reaches Snakemake's process is not lost. Runs in Snakemake's process.

Snakemake 9's terminal handler swallows a KeyboardInterrupt raised while it writes a line
(`snakemake/logging.py`, the stream handler's `emit`: `except (KeyboardInterrupt,
SystemExit): pass`). A Ctrl-C landing there, most likely just as a job has finished and
its line is written, is lost: the jobs that were running die, and when none was, the run
goes on and ends with exit 0 (seen under load: the suite on two workers).

The latch raises KeyboardInterrupt as Python's own handler does and, until Snakemake says
it is terminating (its scheduler's line, which the screen sees and reports through
`handled`), raises it again every `interval` seconds, at most `tries` times.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType


class InterruptLatch:
    def __init__(self, interval: float = 0.5, tries: int = 20) -> None:
        self.interval = interval
        self.tries = tries
        self.pending = False  # a Ctrl-C Snakemake has not said it acted on
        self.resending = False  # the next SIGINT is our own
        self._watch: threading.Thread | None = None

    def install(self) -> bool:
        """In place of Python's own SIGINT handler only (an ignored SIGINT stays ignored);
        from the main thread. True when installed."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return False
        signal.signal(signal.SIGINT, self.handle)
        return True

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.resending:
            self.resending = False
            if not self.pending:
                return  # acted on since we sent it
        else:
            self.pending = True
            if self._watch is None or not self._watch.is_alive():
                self._watch = threading.Thread(target=self._resend, name="tarexport-interrupt", daemon=True)
                self._watch.start()
        raise KeyboardInterrupt

    def handled(self) -> None:
        """Snakemake said it is terminating: the interrupt was not lost."""
        self.pending = False

    def _resend(self) -> None:
        for _ in range(self.tries):
            threading.Event().wait(self.interval)
            if not self.pending:
                return
            self.resending = True
            os.kill(os.getpid(), signal.SIGINT)
