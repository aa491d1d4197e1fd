"""Run the real `snakemake export` in a work directory and report what it ran."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAKEFILE = os.path.join(ROOT, "Snakefile")


@dataclass
class Run:
    returncode: int
    output: str  # stdout and stderr together
    max_rss_mib: float = 0.0  # the largest resident set of Snakemake and any of its jobs
    seconds: float = 0.0  # wall clock
    log: str = ""  # Snakemake's own log file of the run (every line: the screen shows stages)

    @property
    def jobs(self) -> Counter[str]:
        """Jobs Snakemake finished, by rule."""
        text = self.log or self.output
        return Counter(fold(rule) for rule in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", text))

    @property
    def nothing_to_do(self) -> bool:
        return "Nothing to be done" in self.output


def fold(rule: str) -> str:
    """A rule name with the image it serves left out: image_files_<id> is image_files."""
    return "image_files" if rule.startswith("image_files_") else rule


def write_config(workdir: str, **config: object) -> str:
    path = os.path.join(workdir, "config.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    return path


def snakemake(workdir: str, *args: str, configfile: str = "", cwd: str = "", timeout: int = 600) -> Run:
    """`snakemake -s SNAKEFILE -d WORKDIR export ARGS`, started from `cwd` (default: the work dir)."""
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", workdir, "export", *args]
    if configfile:
        command += ["--configfile", configfile]
    started = time.time()
    run = run_measured(command, cwd or workdir, timeout)
    run.log = snakemake_log(workdir, started)
    return run


def snakemake_log(workdir: str, since: float) -> str:
    """The log file Snakemake wrote for a run started at `since` (none for a dry run)."""
    logs = os.path.join(workdir, ".snakemake", "log")
    try:
        names = [n for n in os.listdir(logs) if os.path.getmtime(os.path.join(logs, n)) >= since - 1]
    except OSError:
        return ""
    if not names:
        return ""
    with open(os.path.join(logs, max(names)), encoding="utf-8", errors="replace") as handle:
        return handle.read()


# Runs the command and writes its peak memory, in KiB, to a file. Measured from here, not
# from the test process: a child's peak starts at its parent's size when forked (Linux
# carries it through exec), and pytest grows to hundreds of MiB over a run.
_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(command: list[str], cwd: str, timeout: float) -> Run:
    """Run `command`, with its wall time and the peak memory of its whole process tree:
    wait4 reports the larger of the child's own peak and that of every descendant it
    waited for (Snakemake waits for its jobs)."""
    start = time.monotonic()
    descriptor, peak = tempfile.mkstemp(prefix="tx-peak-")
    os.close(descriptor)
    process = subprocess.Popen(
        [sys.executable, "-S", "-c", _MEASURE, peak, *command],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    streams: dict[str, str] = {}

    def drain(name: str, stream: object) -> None:
        streams[name] = stream.read()  # type: ignore[attr-defined]

    readers = [
        threading.Thread(target=drain, args=(name, stream), daemon=True)
        for name, stream in (("out", process.stdout), ("err", process.stderr))
    ]
    for reader in readers:
        reader.start()
    killed = threading.Event()

    def kill() -> None:  # the whole tree: a job left running would hold the pipes open
        killed.set()
        os.killpg(process.pid, signal.SIGKILL)

    killer = threading.Timer(timeout, kill)
    killer.start()
    try:
        process.wait()
        for reader in readers:
            reader.join(timeout=60)
        with open(peak) as handle:
            peak_kib = int(handle.read() or 0)
    finally:
        killer.cancel()
        os.unlink(peak)
    seconds = time.monotonic() - start
    if killed.is_set():
        raise subprocess.TimeoutExpired(command, timeout, streams.get("out", ""), streams.get("err", ""))
    return Run(process.returncode, streams.get("out", "") + streams.get("err", ""), peak_kib / 1024, seconds)


def export(workdir: str, *args: str, **config: object) -> Run:
    run = snakemake(workdir, *args, configfile=write_config(workdir, **config))
    assert run.returncode == 0, run.output[-4000:]
    return run


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
