"""Run the real `snakemake export` in a work directory and report what it ran."""

from __future__ import annotations

import contextlib
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


# Job slots of one export when the suite runs on several workers (pytest -n).
WORKER_SLOTS = "4"
CORES_GIVEN = frozenset({"--cores", "-c", "--jobs", "-j"})


def snakemake(workdir: str, *args: str, configfile: str = "", cwd: str = "", timeout: int = 600) -> Run:
    """`snakemake -s SNAKEFILE -d WORKDIR export ARGS`, started from `cwd` (default: the work dir)."""
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", workdir, "export", *args]
    if os.environ.get("PYTEST_XDIST_WORKER") and not CORES_GIVEN.intersection(args):
        command += ["--cores", WORKER_SLOTS]  # the profile's 16 slots, times two workers, on two cores
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


def run_measured(command: list[str], cwd: str, timeout: float, env: dict[str, str] | None = None) -> Run:
    """Run `command`, with its wall time and the peak memory of its whole process tree:
    wait4 reports the larger of the child's own peak and that of every descendant it
    waited for (Snakemake waits for its jobs). `python -m snakemake ...` runs as a fork of
    an already imported Snakemake (tests/snakemakeserver.py) where that is the same run."""
    environment = dict(os.environ if env is None else env)
    if served(command, environment):
        return run_served(command, cwd, timeout, environment)
    start = time.monotonic()
    descriptor, peak = tempfile.mkstemp(prefix="tx-peak-")
    os.close(descriptor)
    process = subprocess.Popen(
        [sys.executable, "-S", "-c", _MEASURE, peak, *command],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    killed = threading.Event()

    def kill() -> None:  # the whole tree: a job left running would hold the pipes open
        killed.set()
        os.killpg(process.pid, signal.SIGKILL)

    killer = threading.Timer(timeout, kill)
    killer.start()
    try:
        streams = drain_both(process.stdout, process.stderr, process.wait)
        with open(peak) as handle:
            peak_kib = int(handle.read() or 0)
    finally:
        killer.cancel()
        os.unlink(peak)
    seconds = time.monotonic() - start
    if killed.is_set():
        raise subprocess.TimeoutExpired(command, timeout, streams[0], streams[1])
    return Run(process.returncode, streams[0] + streams[1], peak_kib / 1024, seconds)


def drain_both(out: Any, err: Any, wait: Callable[[], object]) -> tuple[str, str]:
    """Both streams read whole (each on a thread of its own, so neither pipe fills), once
    `wait` has returned."""
    streams: dict[str, str] = {}

    def drain(name: str, stream: Any) -> None:
        streams[name] = stream.read()

    readers = [threading.Thread(target=drain, args=item, daemon=True) for item in (("out", out), ("err", err))]
    for reader in readers:
        reader.start()
    wait()
    for reader in readers:
        reader.join(timeout=60)
    return streams.get("out", ""), streams.get("err", "")


# --- Snakemake runs as forks of an already imported Snakemake (tests/snakemakeserver.py)

SERVER_SCRIPT = os.path.join(ROOT, "tests", "snakemakeserver.py")
_server: dict[str, Any] = {}
_server_lock = threading.Lock()


def python_settings(env: dict[str, str]) -> dict[str, str]:
    """What decides how an interpreter starts: a run differing here is not the server's."""
    return {key: value for key, value in env.items() if key.startswith("PYTHON")}


def served(command: list[str], env: dict[str, str]) -> bool:
    """A `python -m snakemake` run of this interpreter, started as the server was."""
    if os.environ.get("TAREXPORT_TEST_SNAKEMAKE_SERVER", "1") == "0":
        return False
    if command[:3] != [sys.executable, "-m", "snakemake"]:
        return False
    return python_settings(env) == python_settings(dict(os.environ))


def snakemake_server() -> str:
    """The socket of this process's server, started on first use and stopped at exit."""
    with _server_lock:
        if _server.get("pid") == os.getpid():
            return _server["socket"]
        import atexit

        base = tempfile.mkdtemp(prefix="txsm-")
        path = os.path.join(base, "socket")
        process = subprocess.Popen(
            [sys.executable, SERVER_SCRIPT, path],
            cwd=ROOT,
            stdin=subprocess.PIPE,  # held open: the server leaves when this process ends
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        ready = process.stdout.readline()  # type: ignore[union-attr]
        if ready.strip() != b"ready":
            raise RuntimeError(f"the Snakemake server did not start: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]

        def stop() -> None:
            process.kill()
            process.wait()
            import shutil

            shutil.rmtree(base, ignore_errors=True)

        atexit.register(stop)
        _server.update(pid=os.getpid(), socket=path, process=process)
        return path


def run_served(command: list[str], cwd: str, timeout: float, env: dict[str, str]) -> Run:
    """`command` (python -m snakemake ARGS) as a fork of the server: the same Run as a
    process started here would give."""
    import json
    import socket
    import struct

    from tests.tiers import GUARD

    GUARD.observe(command)  # no Popen here for the guard to see
    start = time.monotonic()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(snakemake_server())
        body = json.dumps({"argv": command[3:], "cwd": os.path.abspath(cwd), "env": env}).encode()
        socket.send_fds(connection, [struct.pack("!I", len(body)) + body], [null, out_write, err_write])
    finally:
        for fd in (null, out_write, err_write):
            os.close(fd)
    answers = connection.makefile("rb")
    first = answers.readline()
    if not first:
        raise RuntimeError("the Snakemake server did not start the run")
    pid = json.loads(first)["pid"]
    ended: dict[str, Any] = {}
    killed = threading.Event()

    def kill() -> None:  # the whole tree, as for a process started here
        killed.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    def wait() -> None:
        ended.update(json.loads(answers.readline() or b'{"status": -1, "maxrss_kib": 0}'))

    killer = threading.Timer(timeout, kill)
    killer.start()
    try:
        with (
            open(out_read, encoding="utf-8", errors="replace") as out,
            open(err_read, encoding="utf-8", errors="replace") as err,
        ):
            streams = drain_both(out, err, wait)
    finally:
        killer.cancel()
        connection.close()
    seconds = time.monotonic() - start
    if killed.is_set():
        raise subprocess.TimeoutExpired(command, timeout, streams[0], streams[1])
    status = ended["status"]
    return Run(status if status >= 0 else 128 - status, streams[0] + streams[1], ended["maxrss_kib"] / 1024, seconds)


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
