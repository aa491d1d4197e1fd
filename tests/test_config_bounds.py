"""A configuration file of a few hundred bytes whose YAML aliases stand for a billion values:
Snakemake stops while it parses the Snakefile, with one line, in bounded time and memory.
(The bounds themselves are unit-tested in test_startup.py; this is the whole run, where
Snakemake's own handling of the configuration would walk the value as well.)"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from tests.workflowrun import SNAKEFILE

pytestmark = pytest.mark.workflow

# the run's address space: far above what a refused run needs (about 150 MB resident), far
# below what the expanded value takes (gigabytes), so a regression fails without taking the
# machine's memory
ADDRESS_SPACE = 1 << 30


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.mark.parametrize("key", ["platform", "anchors"])
def test_snakemake_refuses_an_alias_bomb_while_parsing(tmp_path, key: str) -> None:
    """`platform`: a setting, which the schema check walks; `anchors`: a key the schema
    refuses unread, where Snakemake's run header (JSON of the whole configuration) walks it."""
    lines = ["defs:", '  l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"  l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, 9)]
    lines += ["sources: [src]", "images: [app:1]", f"{key}: *l8"]
    config = tmp_path / "config.yaml"
    config.write_text("\n".join(lines) + "\n")
    assert config.stat().st_size < 1000
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", str(tmp_path), "export", "--cores", "1"]
    started = time.monotonic()
    run = subprocess.run(
        [*command, "--configfile", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_capped,
        cwd=str(tmp_path),
    )
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-2000:]
    assert "Traceback" not in output and "MemoryError" not in output, output[-2000:]
    (line,) = (line for line in output.splitlines() if line.startswith("tarexport:"))
    # the first key the walk meets past the bound: the last one of the file
    assert line == (
        f"tarexport: error: config key {key}: more than 50000 values in the configuration"
        " (a YAML alias counts at each use); list fewer, without aliases"
    )
    assert elapsed < 60
    assert not os.path.exists(tmp_path / "results")
