"""The test harness's own measurements: the memory limit on hostile runs must measure the
run, not the test process that starts it."""

from __future__ import annotations

import sys

from tests.workflowrun import run_measured


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


def test_exit_status_and_output_come_through(tmp_path) -> None:
    run = run_measured([sys.executable, "-c", "import sys; print('out'); sys.exit('err')"], str(tmp_path), 60)
    assert run.returncode == 1 and "out" in run.output and "err" in run.output
    run = run_measured(["sh", "-c", "kill -9 $$"], str(tmp_path), 60)
    assert run.returncode == 128 + 9
