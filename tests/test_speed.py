"""The small benchmark CI runs: the benchmark's image set at about 50 MB and at
850 MB, exported cold from a docker-save archive, against `cp` of the same bytes in the
same run. Five rounds, each exporting both sizes and copying both archives; every
figure is a median over the rounds, growths are medians of per-round differences.

Checked: what the export's time grows by from 50 MB to 850 MB is at most 3 times what a
durable cp's grows by (`cp` then `sync FILE`: the archive is fsynced before it is renamed
into place, so a plain cp, which leaves its bytes in the page cache, is not the same
work). Each layer is hashed once and written twice, into build/ and into the archive.
Plain cp is reported too.
Reported, not checked: the whole cold run at 50 MB against cp, which there measures
Snakemake's start and the per-job cost (one job per layer, one per image), not bytes; and
the `export` rule's own growth (its Snakemake benchmark file), mostly the fsync.
Also checked: the per-job cost at 336 jobs against Snakemake alone running as many jobs
of the same shape (test_per_job_cost_at_many_layers).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

import pytest

from tests.imagefactory import write_docker_archive
from tests.workflowrun import SNAKEFILE, write_config

pytestmark = pytest.mark.timing

RUNS = 5
# A cold export here varies by a second from run to run (Snakemake's start and its jobs,
# not bytes: 4.9 to 6.4 s at 50 MB in one sitting); at 450 MB the growth was half a
# second, so noise alone crossed the bound in 2 runs of 5. At 850 MB the growth is about
# twice that, the noise the same.
LARGE = 850


def make_images(size_mb: int) -> list:
    """The image set of benchmarks/run.py, at this size."""
    from benchmarks.run import make_images

    return make_images(size_mb)


def timed(command: list[str], cwd: str) -> float:
    os.sync()  # no dirty pages of an earlier step slowing this one
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return elapsed


def prepare(base: str, size_mb: int) -> tuple[list[str], str]:
    """The export command of the image set at this size, and its work directory."""
    images = make_images(size_mb)
    setup = os.path.join(base, f"setup-{size_mb}")  # each size its own config.yaml
    os.makedirs(setup)
    source = write_docker_archive(os.path.join(setup, "source.tar"), images)
    config = write_config(setup, sources=[source], images=[tags[0] for _, tags in images])
    work = os.path.join(base, f"work-{size_mb}")
    return [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export", "--configfile", config], work


def run_once(base: str, command: list[str], work: str) -> dict[str, float]:
    """One cold export, its `export` rule time, and cp (plain, then with sync) of its archive."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    export = timed(command, work)
    with open(os.path.join(work, "build", "benchmarks", "export.tsv")) as handle:
        assembly = float(handle.read().splitlines()[1].split("\t")[0])
    archive = os.path.join(work, "results", "images.tar")
    copy = os.path.join(base, "copy.tar")
    cp = timed(["cp", archive, copy], base)
    os.unlink(copy)
    durable_cp = timed(["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", archive, copy], base)
    os.unlink(copy)
    return {"export": export, "assembly": assembly, "cp": cp, "durable_cp": durable_cp}


def measure_growth(base: str) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]]]:
    """Medians at 50 MB and at LARGE MB per quantity, and each round's growth from one to the other.

    The two sizes alternate within each round and the growth is taken per round, so a
    stretch of slow disk or a busy neighbour (this kind of VM drifts by a quarter within
    the hour) lands on both sides of a difference instead of on one size only: the
    difference of two independent bests (the earlier way) moved from 1.7 to 3.1 between
    runs on one machine, on a growth of half a second under four seconds of start-up.
    """
    small_command, small_work = prepare(base, 50)
    large_command, large_work = prepare(base, LARGE)
    rounds = []
    for _ in range(RUNS):
        small = run_once(base, small_command, small_work)
        large = run_once(base, large_command, large_work)
        rounds.append((small, large))
    keys = rounds[0][0]
    median = statistics.median
    return (
        {key: median(small[key] for small, _ in rounds) for key in keys},
        {key: median(large[key] for _, large in rounds) for key in keys},
        {key: [large[key] - small[key] for small, large in rounds] for key in keys},
    )


def test_small_benchmark(tmp_path) -> None:
    small, large, rounds = measure_growth(str(tmp_path))
    growth = {key: statistics.median(values) for key, values in rounds.items()}
    per_byte = growth["export"] / max(growth["durable_cp"], 1e-3)
    per_byte_cp = growth["export"] / max(growth["cp"], 1e-3)
    assembly = growth["assembly"] / max(growth["durable_cp"], 1e-3)
    report = (
        f"50 MB: export {small['export']:.2f} s, cp {small['cp']:.3f} s ({small['export'] / small['cp']:.0f}x);"
        f" {LARGE} MB: export {large['export']:.2f} s, cp {large['cp']:.3f} s, cp+sync {large['durable_cp']:.3f} s,"
        f" assembly {large['assembly']:.2f} s; growth: export {growth['export']:.2f} s,"
        f" cp+sync {growth['durable_cp']:.3f} s; export against cp+sync {per_byte:.2f},"
        f" assembly {assembly:.2f}; export against plain cp {per_byte_cp:.2f};"
        f" export growth by round {', '.join(f'{value:.2f}' for value in rounds['export'])} s"
    )
    print(report)
    assert per_byte <= 3.0, report


# Per-job cost against Snakemake's own: a cold export of many small layers over Snakemake
# alone running as many jobs of the same shape with the same profile (best of five each).
# Measured 2.42 on a quiet 2-core machine (2.59 inside a whole CI run) while every layer job
# started Python; 1.48 once small layout blobs went to the shell's job. A regression of more
# than half fails: back to Python for them would.
PER_JOB_BASELINE = 1.5


def test_per_job_cost_at_many_layers(tmp_path) -> None:
    from benchmarks import common, scale
    from tests.imagefactory import Image, LayoutEntry, make_config, write_oci_layout

    base = [common.random_layer(f"base{i}", 1 << 20) for i in range(3)]
    images = []
    for number in range(30):  # 30 images, 10 own layers each: 303 layer jobs
        layers = [*base, *(common.random_layer(f"own{number}/{i}", 64 << 10) for i in range(10))]
        images.append((Image(layers, make_config(layers, config={"Cmd": [str(number)]})), f"many/app{number}:1"))
    entries = [LayoutEntry(image, ["docker.io/" + name], compression="none") for image, name in images]
    layout = write_oci_layout(str(tmp_path / "layout"), entries)
    work = str(tmp_path / "work")
    os.makedirs(work)
    config = write_config(work, sources=[layout], images=[name for _, name in images])
    counts = scale.job_counts(work, config)
    jobs = sum(counts.values())
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export", "--configfile", config]
    exports = []
    for _ in range(RUNS):
        for part in ("build", "results", ".snakemake"):
            shutil.rmtree(os.path.join(work, part), ignore_errors=True)
        exports.append(timed(command, work))
    alone = scale.snakemake_floor(str(tmp_path / "floor"), counts, RUNS)[0].seconds
    ratio = min(exports) / alone
    report = (
        f"{jobs} jobs: cold export {min(exports):.2f} s ({min(exports) / jobs * 1000:.1f} ms a job),"
        f" Snakemake alone {alone:.2f} s ({alone / jobs * 1000:.1f} ms a job): {ratio:.2f} x"
    )
    print(report)
    assert counts["layer_tar"] == 303 and counts["image_files"] == 30, counts
    assert ratio <= 1.5 * PER_JOB_BASELINE, report
