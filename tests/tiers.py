"""The test tiers, and the check that each test is what its tier says.

Every test carries exactly one tier marker (README, Development):
- unit: in-process; no Snakemake run, no engine (small processes of our own, such as a
  layer job's shell script or a linter, are allowed);
- workflow: real Snakemake runs (and real installs: pip, venv), no engine;
- engines: anything that starts a daemon or a client of one (Docker, podman, containerd,
  skopeo, umoci, buildah, the registry, SeaweedFS, SLURM, debootstrap);
- timing: the speed checks, run alone after the rest (tests/run-all.sh).

The check: every process a test starts (or a fixture it uses starts) is classified; one
of a higher tier than the test's fails the test, naming the process. Fixtures remember
what they started, so a test that only reuses a module's registry is still an engines
test. With TAREXPORT_TIER_AUDIT=1 the run also lists tests that started nothing of their
tier (candidates for a lower one).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence

TIERS = ("unit", "workflow", "engines", "timing")
RANK = {"unit": 0, "workflow": 1, "engines": 2, "timing": 3}

ENGINE_TOOLS = frozenset(
    {
        "dockerd", "docker", "containerd", "ctr", "podman", "skopeo", "umoci", "buildah", "docker-registry",
        "weed", "slurmctld", "slurmd", "munged", "mungekey", "sinfo", "squeue", "scontrol", "sbatch", "srun",
        "debootstrap", "chroot",
    }
)  # fmt: skip


def tier_of_command(argv: Sequence[str] | str) -> str:
    """The tier a process needs: engines for a daemon or its client, workflow for a
    Snakemake run (also through `tarexport save`), unit for anything else."""
    if isinstance(argv, str):
        argv = argv.split()
    argv = [str(arg) for arg in argv]
    if not argv:
        return "unit"
    if os.path.basename(argv[0]) in ENGINE_TOOLS:
        return "engines"
    for index, arg in enumerate(argv[:-1]):
        if arg == "-m" and argv[index + 1] in ("tests.realworld",):
            return "engines"
        if arg == "-m" and argv[index + 1] in ("snakemake", "pip", "venv"):  # a run, or a real install
            return "workflow"
    names = [os.path.basename(arg) for arg in argv]
    if "snakemake" in names:
        return "workflow"
    if "tarexport" in names and "save" in argv:
        return "workflow"
    return "unit"


class TierGuard:
    """What the running test (or fixture) may start, and what each has started."""

    def __init__(self) -> None:
        self.test = ""  # node id of the running test
        self.allowed = "timing"  # outside a test: anything
        self.fixtures: list[str] = []  # the wider-than-a-test fixtures being set up, innermost last
        self.fixture_tiers: dict[str, str] = {}  # fixture key -> the highest tier it started
        self.started: dict[str, str] = {}  # node id -> the highest tier it (or its fixtures) started
        self.violation = ""

    def observe(self, argv: Sequence[str] | str) -> None:
        tier = tier_of_command(argv)
        for name in self.fixtures:
            if RANK[tier] > RANK[self.fixture_tiers.get(name, "unit")]:
                self.fixture_tiers[name] = tier
        if not self.test:
            return
        self.raise_to(tier)
        if RANK[tier] > RANK[self.allowed] and not self.violation:
            shown = argv if isinstance(argv, str) else " ".join(str(arg) for arg in argv)[:200]
            self.violation = f"a {self.allowed} test started a process of the {tier} tier: {shown}"
            raise TierError(self.violation)

    def raise_to(self, tier: str) -> None:
        if RANK[tier] > RANK[self.started.get(self.test, "unit")]:
            self.started[self.test] = tier

    def uses(self, fixture_keys: Iterable[str]) -> None:
        """The test uses these fixtures (by `fixture_key`): what they started counts as its own."""
        for name in fixture_keys:
            tier = self.fixture_tiers.get(name, "unit")
            self.raise_to(tier)
            if RANK[tier] > RANK[self.allowed] and not self.violation:
                self.violation = (
                    f"a {self.allowed} test uses fixture {name!r}, which started a process of the {tier} tier"
                )


def fixture_key(baseid: str, name: str) -> str:
    """A fixture as defined (modules may define fixtures of one name): where, and its name."""
    return f"{baseid}::{name}" if baseid else name


class TierError(RuntimeError):
    """A process of a higher tier than the test's."""


GUARD = TierGuard()


def install() -> None:
    """Every subprocess.Popen in this process is observed (before it starts)."""
    original = subprocess.Popen.__init__
    if getattr(original, "tier_guarded", False):
        return

    def guarded(self: subprocess.Popen, args: object, *rest: object, **options: object) -> None:
        GUARD.observe(args if isinstance(args, (str, list, tuple)) else [str(args)])  # type: ignore[arg-type]
        original(self, args, *rest, **options)  # type: ignore[arg-type]

    guarded.tier_guarded = True  # type: ignore[attr-defined]
    subprocess.Popen.__init__ = guarded  # type: ignore[method-assign]
