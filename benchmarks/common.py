"""What the benchmark's parts share: image data, timing, and running an export."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.workflowrun import SNAKEFILE

MB = 1 << 20


def random_layer(name: str, size: int, files: int = 1, rng: random.Random | None = None) -> bytes:
    """An uncompressed layer of `files` files of random bytes, `size` in all (from `rng`
    when given, so that a seeded set is the same every run)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for number in range(files):
            data = rng.randbytes(size // files) if rng else os.urandom(size // files)
            info = tarfile.TarInfo(f"{name}/{number}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class Measure:
    name: str
    seconds: float
    bytes: int
    peak_rss_mb: float


# Runs a command and reports the largest resident set of any process in its tree.
PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]);"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)
_peaks: list[float] = []
floor_times: list[float] = []  # each `paired` run of timed()


def timed(
    command: Callable[[], None],
    runs: int,
    prepare: Callable[[], None] | None = None,
    paired: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """Median wall time of `runs` runs, and the peak resident memory (MB) of any process
    started through run() meanwhile (0 when the work is done elsewhere, as in dockerd).

    `paired` (the cp floor) is timed right before each run, in the same conditions: on
    this kind of VM the same cp takes 0.6 s or 5 s depending on what the page cache and
    the disk are doing, so a floor timed once, minutes apart, would skew every ratio.
    """
    times = []
    _peaks.clear()
    for _ in range(runs):
        if paired:
            os.sync()
            start = time.perf_counter()
            paired()
            floor_times.append(time.perf_counter() - start)
        if prepare:
            prepare()
        os.sync()  # dirty pages of an earlier step must not slow this one
        start = time.perf_counter()
        command()
        times.append(time.perf_counter() - start)
    peaks = list(_peaks)
    _peaks.clear()
    return statistics.median(times), max(peaks, default=0.0)


def run(*command: str, cwd: str | None = None) -> None:
    wrapped = [sys.executable, "-c", PEAK_RSS, *command]
    result = subprocess.run(wrapped, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
    _peaks.append(int(result.stderr.strip().splitlines()[-1]) / 1024)


def export(work: str, config: str, *extra: str) -> None:
    snakemake = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export", "--configfile", config]
    run(*snakemake, *extra, cwd=work)
