"""Small helpers the rule files use to tune how Snakemake runs them (no Snakemake import:
they work on what Snakemake hands them)."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any


def fixed_signature(function: Callable[..., Any]) -> Callable[..., Any]:
    """A rule's function whose parameters Snakemake reads once, not once per job: it calls
    inspect.signature every time it calls one (7% of its main thread at 1000 layer jobs,
    with five such functions per job). The attribute is snakemake.common's own cache hook
    (get_function_params); holding the same mapping, it changes nothing else."""
    function._overwrite_params = inspect.signature(function).parameters
    return function


def end_rate_limit_timers() -> None:
    """Snakemake's job rate limiter (--max-jobs-per-timespan, default 100/1s) re-checks
    through non-daemon threading.Timer threads, and Python waits for them at exit: every
    run that ran jobs ended up to 1 s after its last job. The scheduler is done here, so
    the pending re-checks are moot. (A timespan under 1 s cannot be given: Snakemake 9.27
    reads "100ms" as 100 minutes.)"""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and getattr(thread.function, "__module__", "").startswith("snakemake."):
            thread.cancel()
