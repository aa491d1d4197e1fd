"""Time the assembly job alone (`tarexport assemble`), this tree side by side with another.

    git worktree add --detach /tmp/tx-head HEAD
    python benchmarks/assembly.py --baseline /tmp/tx-head            # both sets, 5 runs each
    python benchmarks/assembly.py --baseline /tmp/tx-head --size-mb 200 --scale-images 10 --runs 3

The sets of run.py and scale.py (2 GB: one large shared base, a few app layers, one image
of 50 small layers; scale: 100 images, 1003 distinct layers of 512 KB over a 96 MB base),
each in an uncompressed OCI layout, exported once by this tree's workflow. Then the job
Snakemake runs last, run by hand with each tree's package (PYTHONPATH), the two trees in
turn so that both see the same page cache and disk: the median wall time, and the median
CPU time (user + system) of the job's process. Both trees read the same build directory.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import export  # noqa: E402
from benchmarks.run import make_images  # noqa: E402
from benchmarks.scale import scale_images  # noqa: E402
from tests.imagefactory import Image, LayoutEntry, write_oci_layout  # noqa: E402
from tests.workflowrun import write_config  # noqa: E402


def built(work: str, images: list[tuple[Image, list[str]]]) -> str:
    """A build directory with every file the assembly takes, made by this tree's workflow."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    entries = [LayoutEntry(image, ["docker.io/" + tags[0]], compression="none") for image, tags in images]
    layout = write_oci_layout(os.path.join(work, "layout"), entries)
    target = os.path.join(work, "export")
    os.makedirs(target)
    export(target, write_config(target, sources=[layout], images=[tags[0] for _, tags in images]))
    return os.path.join(target, "build")


def assemble_once(tree: str, build: str, output: str, compression: str, verify: str) -> tuple[float, float]:
    """One `tarexport assemble` with the package of `tree`: wall and CPU seconds."""
    command = [sys.executable, "-m", "tarexport", "assemble", "--build-dir", build, "--output", output]
    command += ["--compression", compression, "--verify", verify]
    env = {**os.environ, "PYTHONPATH": os.path.join(tree, "workflow")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.sync()  # the last run's dirty pages must not slow this one
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    os.unlink(output)
    return wall, cpu


def side_by_side(trees: dict[str, str], build: str, runs: int, compression: str, verify: str) -> dict[str, list[float]]:
    """name -> [median wall s, median CPU s], each tree's runs taken in turn."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    output = os.path.join(os.path.dirname(build), "bench.tar")
    for tree in trees.values():  # one warm-up each: the page cache holds the layers
        assemble_once(tree, build, output, compression, verify)
    for _ in range(runs):
        for name, tree in trees.items():
            times[name].append(assemble_once(tree, build, output, compression, verify))
    return {
        name: [statistics.median(t[0] for t in measured), statistics.median(t[1] for t in measured)]
        for name, measured in times.items()
    }


def check_before_writing(build: str, runs: int) -> float:
    """Median seconds of this tree's check before writing (verify_layers: quick) alone, in
    this process: what keeping it costs each assembly."""
    sys.path.insert(0, os.path.join(ROOT, "workflow"))
    from tarexport.jobs import ARCHIVES, _check_stored_files

    entries = ARCHIVES["docker"][0](build, [])
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        _check_stored_files(entries, False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--baseline", required=True, action="append", help="another checkout (e.g. a worktree of HEAD); may repeat"
    )
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--scale-images", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compression", default="none", choices=("none", "gzip", "zstd"))
    parser.add_argument("--verify", default="quick", choices=("quick", "full"))
    parser.add_argument("--work", default=os.path.join(ROOT, "benchmarks", "work-assembly"))
    args = parser.parse_args()
    trees = {f"baseline {tree}": os.path.abspath(tree) for tree in args.baseline}
    trees["this tree"] = ROOT
    sets = {}  # (0 leaves a set out)
    if args.size_mb:
        sets[f"{args.size_mb} MB, 4 images"] = make_images(args.size_mb)
    if args.scale_images:
        sets[f"scale: {args.scale_images} images"] = scale_images(args.scale_images)
    print(f"| set | tree | wall (s) | CPU (s) |  ({args.runs} runs, medians; {args.compression}, verify {args.verify})")
    print("|---|---|---:|---:|")
    for name, images in sets.items():
        work = os.path.join(args.work, "set")
        build = built(work, images)
        for tree, (wall, cpu) in side_by_side(trees, build, args.runs, args.compression, args.verify).items():
            print(f"| {name} | {tree} | {wall:.2f} | {cpu:.2f} |", flush=True)
        print(f"| {name} | this tree's check before writing, alone | {check_before_writing(build, args.runs):.3f} | |")
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
