"""Run the real `snakemake export` in a work directory and report what it ran."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAKEFILE = os.path.join(ROOT, "Snakefile")


@dataclass
class Run:
    returncode: int
    output: str  # stdout and stderr together

    @property
    def jobs(self) -> Counter[str]:
        """Jobs Snakemake finished, by rule."""
        return Counter(fold(rule) for rule in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", self.output))

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
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd or workdir)
    return Run(result.returncode, result.stdout + result.stderr)


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
