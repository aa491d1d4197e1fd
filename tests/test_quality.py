"""The project's own checks: ruff, snakefmt and `snakemake --lint` stay clean."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.workflowrun import ROOT, SNAKEFILE


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)


@pytest.mark.unit
def test_ruff() -> None:
    result = run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.unit
def test_snakefmt() -> None:
    result = run(sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules")
    assert result.returncode == 0, result.stdout + result.stderr


# The one lint left on purpose: the jobs run the tarexport package with the interpreter
# that drives Snakemake (pip-installed, like the tool itself), so a `conda:` environment
# would be declared without being what runs; none is declared (README: How the workflow runs).
SOFTWARE_LINT = "Specify a conda environment or container for each rule."


@pytest.mark.workflow
def test_snakemake_lint() -> None:
    result = run(sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "--lint")
    output = result.stdout + result.stderr
    assert result.returncode in (0, 1), output
    findings = re.findall(r"^    \* (.+?):?$", output, re.MULTILINE)
    assert set(findings) <= {SOFTWARE_LINT}, output
    if not findings:
        assert "Congratulations" in output
