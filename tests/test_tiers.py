"""The tier check itself (tests/tiers.py): what each process counts as, and that a test
starting (or reusing) something above its tier fails."""

from __future__ import annotations

import sys

import pytest

from tests.tiers import TierError, TierGuard, tier_of_command

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("argv", "tier"),
    [
        ([sys.executable, "-m", "snakemake", "-s", "Snakefile", "export"], "workflow"),
        ([sys.executable, "-S", "-c", "measure", "/tmp/peak", sys.executable, "-m", "snakemake", "-n"], "workflow"),
        (["/venv/bin/tarexport", "save", "app:1"], "workflow"),
        ([sys.executable, "-m", "pip", "install", "x.whl"], "workflow"),
        (["/usr/sbin/dockerd", "--data-root", "/tmp/d"], "engines"),
        (["skopeo", "copy", "oci:a", "docker://b"], "engines"),
        (["docker-registry", "serve", "config.yml"], "engines"),
        ([sys.executable, "-m", "tests.realworld", "/tmp/root"], "engines"),
        (["/venv/bin/tarexport", "--version"], "unit"),
        (["/bin/bash", "-c", "small_layer.sh", "bash"], "unit"),
        ([sys.executable, "-m", "ruff", "check", "."], "unit"),
        ("sh -c 'cp a b && sync b'", "unit"),
    ],
)
def test_each_process_counts_for_its_tier(argv: list[str] | str, tier: str) -> None:
    assert tier_of_command(argv) == tier


def test_a_process_above_the_tests_tier_fails_it() -> None:
    guard = TierGuard()
    guard.test, guard.allowed = "tests/test_x.py::test_small", "unit"
    guard.observe(["sh", "-c", "true"])
    with pytest.raises(TierError, match="a unit test started a process of the workflow tier"):
        guard.observe([sys.executable, "-m", "snakemake", "-n"])
    assert guard.started["tests/test_x.py::test_small"] == "workflow"
    guard.test, guard.allowed, guard.violation = "tests/test_x.py::test_run", "workflow", ""
    guard.observe([sys.executable, "-m", "snakemake", "-n"])
    with pytest.raises(TierError, match="engines tier: podman load"):
        guard.observe(["podman", "load"])


def test_a_fixture_remembers_what_it_started_for_every_test_using_it() -> None:
    guard = TierGuard()
    guard.test, guard.allowed = "tests/test_x.py::test_first", "engines"
    guard.fixtures.append("tests/test_x.py::registry")
    guard.observe(["docker-registry", "serve", "config.yml"])
    guard.fixtures.pop()
    # a later test reuses the running registry: it starts nothing itself
    guard.test, guard.allowed, guard.violation = "tests/test_x.py::test_later", "workflow", ""
    guard.uses(["tmp_path", "tests/test_y.py::registry"])  # another module's, of the same name
    assert guard.violation == ""
    guard.uses(["tmp_path", "tests/test_x.py::registry"])
    assert guard.violation == (
        "a workflow test uses fixture 'tests/test_x.py::registry', which started a process of the engines tier"
    )
    assert guard.started["tests/test_x.py::test_later"] == "engines"


def test_outside_a_test_anything_may_start() -> None:
    guard = TierGuard()
    guard.observe(["dockerd"])  # a session fixture's teardown, say
    assert guard.started == {} and guard.violation == ""
