"""A Snakemake already imported: `python -m snakemake ARGS` for the tests, without paying
Snakemake's import (about 1 s of CPU on this machine kind, with the plugins the tests
install) on every one of the suite's hundreds of runs.

The server imports Snakemake, its plugins and the third-party libraries the planner uses,
then waits on a Unix socket. Each request (argv, working directory, environment, and the
caller's standard input, output and error passed as descriptors) is answered by a fork
that runs `snakemake.cli.main(argv)` as `python -m snakemake` would: in a session of its
own, with default signal handling, the request's environment, directory and `sys.path[0]`.
A second process between the server and the run waits for it (wait4: exit status and the
peak memory of the run's whole tree, as tests/workflowrun.py measures a process it starts)
and reports back, so a run is a process of its own in every way the tests can see: its
pid (for signals and killpg), its exit status, its output, its memory.

What it does not do: import `tarexport` (each Snakefile imports its own copy: a clone's or
an installed wheel's), or stand in for a run whose interpreter, PYTHON* variables or
Python path differ from the server's (tests/workflowrun.py starts those as processes).

Run as a script by tests/workflowrun.py: `python tests/snakemakeserver.py SOCKET`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys

# Read from the socket: a 4-byte length, then a JSON request; the descriptors ride on the
# first message (SCM_RIGHTS).
HEADER = struct.Struct("!I")


def preload() -> None:
    """What every run imports first: Snakemake's command line, its plugin registries (they
    import every installed plugin, the S3 plugin's boto3 and the SLURM plugin's pandas among
    them) and the libraries the planner imports."""
    import importlib

    import snakemake.cli  # noqa: F401
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry
    from snakemake_interface_logger_plugins.registry import LoggerPluginRegistry
    from snakemake_interface_report_plugins.registry import ReportPluginRegistry
    from snakemake_interface_storage_plugins.registry import StoragePluginRegistry

    for registry in (ExecutorPluginRegistry, StoragePluginRegistry, ReportPluginRegistry, LoggerPluginRegistry):
        registry()
    try:
        from snakemake_interface_scheduler_plugins.registry import SchedulerPluginRegistry

        SchedulerPluginRegistry()
    except ImportError:
        pass
    for name in ("jsonschema", "yaml", "zstandard", "isal.isal_zlib", "snakemake.api", "snakemake.workflow"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def receive(connection: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _address = socket.recv_fds(connection, 1 << 20, 8)
    (length,) = HEADER.unpack(data[: HEADER.size])
    body = data[HEADER.size :]
    while len(body) < length:
        more = connection.recv(length - len(body))
        if not more:
            raise EOFError("request cut short")
        body += more
    return json.loads(body), fds


def send(connection: socket.socket, message: dict) -> None:
    connection.sendall((json.dumps(message) + "\n").encode())


def run_snakemake(request: dict, fds: list[int]) -> None:
    """In the fork that becomes the run: never returns."""
    status = 1
    try:
        os.setsid()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.closerange(3, 1 << 16)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import tempfile

        tempfile.tempdir = None  # TMPDIR is the request's
        sys.path[0] = os.getcwd()  # as `python -m` sets it
        import snakemake
        from snakemake.cli import main

        sys.argv = [os.path.join(os.path.dirname(snakemake.__file__), "__main__.py"), *request["argv"]]

        try:
            main(request["argv"])
            status = 0
        except SystemExit as stop:
            code = stop.code
            status = code if isinstance(code, int) else (0 if code is None else 1)
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)
        except KeyboardInterrupt:
            status = 130
        except BaseException:
            import traceback

            traceback.print_exc()
            status = 1
        import atexit

        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)


def serve_one(connection: socket.socket, request: dict, fds: list[int]) -> None:
    """In the fork that answers one request: starts the run, says its pid, waits, says how
    it ended. Never returns."""
    try:
        pid = os.fork()
        if pid == 0:
            connection.close()
            run_snakemake(request, fds)
        for fd in fds:
            os.close(fd)
        send(connection, {"pid": pid})
        _, wait_status, usage = os.wait4(pid, 0)
        send(connection, {"status": os.waitstatus_to_exitcode(wait_status), "maxrss_kib": usage.ru_maxrss})
    finally:
        os._exit(0)


def main(path: str) -> None:
    """Serve until standard input ends: the test process that started the server holds its
    other end, so the server leaves when that process does, however it ends."""
    import selectors

    preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    events = selectors.DefaultSelector()
    events.register(listener, selectors.EVENT_READ)
    events.register(sys.stdin.fileno(), selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in events.select():
            if key.fileobj != listener:
                if not os.read(sys.stdin.fileno(), 1):
                    return  # the test process is gone
                continue
            answer(listener)
        try:  # the answering forks that have finished
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


def answer(listener: socket.socket) -> None:
    connection, _ = listener.accept()
    try:
        request, fds = receive(connection)
    except (OSError, EOFError, ValueError):
        connection.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        listener.close()
        serve_one(connection, request, fds)
    for fd in fds:
        os.close(fd)
    connection.close()


if __name__ == "__main__":
    main(sys.argv[1])
