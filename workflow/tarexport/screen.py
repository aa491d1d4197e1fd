"""What a run shows on the terminal: a line per stage instead of Snakemake's block per job.

An export of a thousand layers is a thousand jobs; Snakemake's screen gives each a block of
64-hex paths. `Screen` is a logging filter the Snakefile puts on Snakemake's own terminal
handler (only there: its log file under .snakemake/log keeps every line). It drops the
per-job and scheduling lines, says instead how far each stage is (every few seconds, and
when it ends), and lets through everything else: errors, warnings, "Nothing to be done".
After Ctrl-C it says one line and drops the error blocks of the jobs it stopped.

It reads Snakemake's log records by their documented fields (`event`, `jobid`, `rule_name`,
`output`, `stats`: the logger-plugin interface), without importing Snakemake.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from .fileio import write_atomically
from .progress import amount

# rule name (or its prefix) -> the stage it belongs to
STAGES = (
    ("layer_tar", "layers"),
    ("layer_blob", "layers"),
    ("image_files_", "image files"),
    ("oci_", "OCI manifests"),
    ("manifest_json", "index files"),
    ("repositories", "index files"),
    ("lock", "lock file"),
    ("export", "archive"),
)
# Snakemake's per-job and scheduling events, said instead by the stage lines
_DROPPED_EVENTS = {
    "workflow_started",
    "job_info",
    "job_started",
    "job_finished",
    "shellcmd",
    "progress",
    "run_info",
    "resources_info",
}
# its scheduling chatter, by how the message starts
_DROPPED_MESSAGES = (
    "Select jobs to execute",
    "Execute ",
    "Using shell:",
    "Provided cores:",
    "Rules claiming more threads",
)
_INTERRUPTED = "Terminating processes on user request"
_KEPT_AFTER_INTERRUPT = ("Complete log(s)",)
_NO_METADATA = "Missing metadata for file"


def stage_of(rule: str) -> str:
    return next(
        (stage for prefix, stage in STAGES if rule == prefix or (rule.startswith(prefix) and prefix.endswith("_"))), ""
    )


@dataclass
class Stage:
    name: str
    total: int = 0
    done: int = 0
    bytes: int = 0
    started: float = 0.0
    said: float = 0.0  # when its last line was printed
    ended: float = 0.0
    outputs: dict[int, list[str]] = field(default_factory=dict)  # running jobs' outputs


class Screen(logging.Filter):
    """With `show`, on Snakemake's terminal handler: the stage lines instead of its own.
    Without, on its logger: it only keeps time. Either way, with `record_to`, each finished
    stage's job count and wall time go to that JSON file (the archive's summary reads it)."""

    def __init__(
        self,
        out: TextIO | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        show: bool = True,
        record_to: str = "",
        on_terminating: Callable[[], None] | None = None,
    ) -> None:
        """`on_terminating`: called when Snakemake says it acts on a Ctrl-C (interrupts.py)."""
        super().__init__()
        self.on_terminating = on_terminating
        self.out = out or sys.stderr
        self.interval = interval
        self.clock = clock
        self.show = show
        self.record_to = record_to
        self.stages: dict[str, Stage] = {}
        self.job_stage: dict[int, Stage] = {}
        self.interrupted = False

    def say(self, line: str) -> None:
        if self.show:
            print(f"tarexport: {line}", file=self.out, flush=True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Never raises: an exception from a filter would reach the scheduler that logged the
        record (a closed terminal or pipe, say), where Snakemake's own handler would have
        swallowed it. On any failure the record passes, as Snakemake would show it."""
        try:
            return self._filter(record)
        except Exception:
            return True

    def _filter(self, record: logging.LogRecord) -> bool:
        event = str(getattr(record, "event", "") or "")
        if event == "run_info":
            self._planned(getattr(record, "stats", {}) or {})
        elif event == "job_info":
            self._started(record)
        elif event == "job_finished":
            self._finished(getattr(record, "job_id", None))
        message = record.msg if isinstance(record.msg, str) else ""
        if self.on_terminating and message.startswith(_INTERRUPTED):
            self.on_terminating()
        if not self.show:
            return True
        if event in _DROPPED_EVENTS:
            return False
        if self.interrupted:
            # the jobs Ctrl-C stopped fail, each with its command: said in one line instead
            return message.startswith(_KEPT_AFTER_INTERRUPT)
        if message.startswith(_INTERRUPTED):
            self.interrupted = True
            self.say("interrupted; what was written is complete or removed, and the next run goes on from there")
            return False
        if message.startswith(_NO_METADATA):  # one per file with --report: drop-metadata's doing
            return False
        if event or record.levelno >= logging.WARNING:
            return True
        return not message.startswith(_DROPPED_MESSAGES)

    def _planned(self, stats: dict[str, int]) -> None:
        self._record()  # a new run: no stage of an earlier one
        for rule, count in stats.items():
            stage = stage_of(rule)
            if stage:
                self.stages.setdefault(stage, Stage(stage)).total += count
        todo = [f"{stage.total} {stage.name}" for stage in self.stages.values() if stage.name != "archive"]
        if todo:
            self.say("to do: " + ", ".join(todo) + (", then the archive" if "archive" in self.stages else ""))

    def _record(self) -> None:
        if not self.record_to:
            return
        ended = {
            s.name: {"jobs": s.done, "seconds": round(s.ended - s.started, 3), "bytes": s.bytes}
            for s in self.stages.values()
            if s.ended
        }
        with contextlib.suppress(OSError):  # the summary then says less; the run goes on
            write_atomically(self.record_to, json.dumps(ended, indent=1).encode())

    def _started(self, record: logging.LogRecord) -> None:
        stage = self.stages.get(stage_of(str(getattr(record, "rule_name", ""))))
        jobid = getattr(record, "jobid", None)
        if stage is None or jobid is None:
            return
        if not stage.started:
            stage.started = stage.said = self.clock()
        stage.outputs[jobid] = [str(path) for path in getattr(record, "output", None) or []]
        self.job_stage[jobid] = stage

    def _finished(self, jobid: object) -> None:
        stage = self.job_stage.pop(jobid, None)  # type: ignore[arg-type]
        if stage is None:
            return
        stage.done += 1
        for path in stage.outputs.pop(jobid, []):  # type: ignore[arg-type]
            with contextlib.suppress(OSError):  # a job may leave no file (Snakemake's checks follow)
                stage.bytes += os.path.getsize(path)
        now = self.clock()
        if stage.done == stage.total:
            stage.ended = now
            self._record()
            if stage.name != "archive":  # the archive's own job says its last line
                took = now - stage.started
                self.say(f"{stage.name}: {stage.done} of {stage.total} done ({amount(stage.bytes)}, {took:.1f} s)")
        elif now - stage.said >= self.interval:
            stage.said = now
            self.say(f"{stage.name}: {stage.done} of {stage.total} done ({amount(stage.bytes)} so far)")


def attach(logger: logging.Logger, screen: Screen) -> None:
    """Put a showing `screen` on Snakemake's terminal handler (when that handler is not
    there, it only keeps time, and Snakemake's own screen stays as it is); a silent one on
    the logger itself."""
    if screen.show:
        for handler in logger.handlers:
            if handler.name == "DefaultStreamHandler":
                handler.addFilter(screen)
                return
        screen.show = False
    logger.addFilter(screen)
