"""The test harness's own measurements: the memory limit on hostile runs must measure the
run, not the test process that starts it; and a Snakemake run through the test server is
the run a process of its own would be."""

from __future__ import annotations

import sys

import pytest

from tests.workflowrun import run_measured


@pytest.mark.unit
def test_peak_memory_is_the_commands_own_however_big_the_tests_are(tmp_path) -> None:
    held = bytearray(600 << 20)  # pytest itself grows this big over a whole run
    held[:: 1 << 12] = b"x" * len(held[:: 1 << 12])  # touched: resident
    small = run_measured([sys.executable, "-c", "pass"], str(tmp_path), 60)
    big = run_measured(
        [sys.executable, "-c", "b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096])"], str(tmp_path), 60
    )
    assert small.returncode == 0 and big.returncode == 0
    assert small.max_rss_mib < 100, small.max_rss_mib
    assert 300 < big.max_rss_mib < 450, big.max_rss_mib
    del held


@pytest.mark.unit
def test_exit_status_and_output_come_through(tmp_path) -> None:
    run = run_measured([sys.executable, "-c", "import sys; print('out'); sys.exit('err')"], str(tmp_path), 60)
    assert run.returncode == 1 and "out" in run.output and "err" in run.output
    run = run_measured(["sh", "-c", "kill -9 $$"], str(tmp_path), 60)
    assert run.returncode == 128 + 9


# A Snakemake run through the test server (tests/snakemakeserver.py) is a process of its
# own in every way the tests look at: status, output, environment, directory, memory, and
# a timeout that kills its whole tree.
PROBE_SNAKEFILE = """
import os, sys, tempfile
rule probe:
    output: "probe.txt"
    run:
        with open(output[0], "w") as handle:
            print(os.environ.get("TX_PROBE"), os.getcwd(), tempfile.gettempdir(), sys.path[0], file=handle)
        print("to stdout"); print("to stderr", file=sys.stderr)

rule fail:
    shell: "echo failing >&2; exit 3"

rule hang:
    shell: "sleep 120 & echo $! > hang.pid; wait"
"""


def served_and_started(tmp_path, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """The same `python -m snakemake ARGS` through the server and as a process of its own."""
    import os

    from tests.workflowrun import served

    runs = []
    for mode in ("served", "started"):
        work = tmp_path / mode
        work.mkdir(exist_ok=True)
        (work / "Snakefile").write_text(PROBE_SNAKEFILE)
        environment = {**os.environ, **(env or {}), "TAREXPORT_TEST_SNAKEMAKE_SERVER": "1" if mode == "served" else "0"}
        command = [sys.executable, "-m", "snakemake", "--cores", "1", *args, "--quiet", "all"]
        os.environ["TAREXPORT_TEST_SNAKEMAKE_SERVER"] = environment["TAREXPORT_TEST_SNAKEMAKE_SERVER"]
        try:
            assert served(command, environment) == (mode == "served")
            runs.append((work, run_measured(command, str(work), timeout, env=environment)))
        finally:
            os.environ.pop("TAREXPORT_TEST_SNAKEMAKE_SERVER")
    return runs


@pytest.mark.workflow
def test_a_served_run_sees_its_own_environment_directory_and_path(tmp_path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for work, run in served_and_started(tmp_path, "probe", env={"TX_PROBE": "given", "TMPDIR": str(scratch)}):
        assert run.returncode == 0, run.output
        assert "to stdout" in run.output and "to stderr" in run.output
        assert (work / "probe.txt").read_text().split() == ["given", str(work), str(scratch), str(work)]
        assert 50 < run.max_rss_mib < 1024, run.max_rss_mib


@pytest.mark.workflow
def test_a_served_run_fails_as_a_started_one_does(tmp_path) -> None:
    (_, served), (_, started) = served_and_started(tmp_path, "fail")
    assert served.returncode == started.returncode == 1
    assert "failing" in served.output and "failing" in started.output


@pytest.mark.workflow
def test_a_served_run_past_its_time_is_killed_with_its_jobs(tmp_path) -> None:
    import os
    import subprocess
    import time

    from tests.workflowrun import run_served

    work = tmp_path / "served"
    work.mkdir()
    (work / "Snakefile").write_text(PROBE_SNAKEFILE)
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_served([sys.executable, "-m", "snakemake", "--cores", "1", "hang"], str(work), 8, dict(os.environ))
    assert time.monotonic() - started < 60
    pid = int((work / "hang.pid").read_text())
    for _ in range(50):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().split()[2] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the job's sleep {pid} outlived the killed run")
