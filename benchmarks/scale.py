"""The bundle-scale set: many images, many small layers, where the cost is per job.

100 images (by default) over one shared 96 MB base of 3 layers, each with 10 own layers
of 512 KB: 1003 distinct layers, about 600 MB of archive, in an uncompressed OCI layout.
Seeded, so every run exports the same bytes. Timed side by side: tarexport (cold, nothing
changed, one image's config changed, dry run), docker save of the same images from a
Docker 20.10 engine on overlay2, an fsynced cp of the archive, and Snakemake alone running
as many jobs of the same shape with the same profile.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from benchmarks.common import MB, Measure, export, random_layer, run, timed
from tests.engines import DockerEngine
from tests.imagefactory import Image, LayoutEntry, make_config, write_docker_archive, write_oci_layout
from tests.workflowrun import ROOT, fold, write_config

SEED = 12


@dataclass
class ScaleResults:
    measures: list[Measure]
    jobs: dict[str, int]  # the cold export's jobs, by rule
    layer_job_ms: dict[str, float]  # one small layer job run by hand, the medians: shell, python
    bytes: int


def scale_images(count: int) -> list[tuple[Image, list[str]]]:
    rng = random.Random(SEED)
    base = [random_layer(f"base{i}", 32 * MB, rng=rng) for i in range(3)]
    images = []
    for number in range(count):
        layers = [*base, *(random_layer(f"own{number}/{i}", 512 << 10, rng=rng) for i in range(10))]
        images.append((Image(layers, make_config(layers, config={"Cmd": [f"/app{number}"]})), [f"scale/app{number}:1"]))
    return images


def job_counts(target: str, config: str) -> dict[str, int]:
    """The jobs a run would do, by rule (the first 'Job stats' table of a dry run)."""
    command = [sys.executable, "-m", "snakemake", "-s", os.path.join(ROOT, "Snakefile"), "-d", target, "-n"]
    output = subprocess.run([*command, "export", "--configfile", config], capture_output=True, text=True, cwd=target)
    table = output.stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts: dict[str, int] = {}
    for match in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE):
        if match.group(1) != "total":
            counts[fold(match.group(1))] = counts.get(fold(match.group(1)), 0) + int(match.group(2))
    return counts


FLOOR_SNAKEFILE = """
LAYERS, OTHERS = {layers}, {others}


rule final:  # the target, as `export` is tarexport's
    input:
        expand("layers/{{i}}", i=range(LAYERS)),
        expand("others/{{i}}", i=range(OTHERS)),
    output:
        "done",
    shell:
        "touch {{output}}"


rule layer:
    output:
        "layers/{{i}}",
    log:
        "logs/layers/{{i}}.log",
    shell:
        "touch {{output}} 2> {{log}}"


rule other:
    output:
        "others/{{i}}",
    log:
        "logs/others/{{i}}.log",
    shell:
        "touch {{output}} 2> {{log}}"


onsuccess:  # as tarexport's Snakefile does: no wait for the rate limiter's timers at exit
    import threading

    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()
"""


def snakemake_floor(work: str, counts: dict[str, int], runs: int, noop: bool = False) -> list[Measure]:
    """Snakemake alone: as many jobs as the export runs, of the same shape (layer jobs and
    small-file jobs, all independent, then one that needs them all), each only touching its
    output, with the same profile (scheduler, job rate, subsampling, cores). With `noop`,
    also the same workflow with nothing to do, and Snakemake's import alone: the floors of a
    run where nothing changed."""
    layers = counts.get("layer_tar", 0) + counts.get("layer_blob", 0)
    others = sum(counts.values()) - layers - counts.get("export", 0)
    os.makedirs(work, exist_ok=True)
    snakefile = os.path.join(work, "Snakefile")
    with open(snakefile, "w") as handle:
        handle.write(FLOOR_SNAKEFILE.format(layers=layers, others=others))
    target = os.path.join(work, "run")

    def prepare() -> None:
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)

    profile = os.path.join(ROOT, "profiles", "default")
    command = [sys.executable, "-m", "snakemake", "-s", snakefile, "-d", target, "--workflow-profile", profile]
    jobs = layers + others + 1
    seconds, peak = timed(lambda: run(*command, cwd=target), runs, prepare)
    measures = [Measure(f"Snakemake alone: the same {jobs} jobs, each only touching its output", seconds, 0, peak)]
    if not noop:
        return measures
    seconds, peak = timed(lambda: run(*command, cwd=target), runs)
    measures.append(Measure(f"Snakemake alone: the same {jobs} jobs, nothing to do", seconds, 0, peak))
    seconds, peak = timed(lambda: run(sys.executable, "-c", "import snakemake.cli"), runs)
    measures.append(Measure("Snakemake's import alone (python -c 'import snakemake.cli')", seconds, 0, peak))
    return measures


def layer_job_ms(build: str, layout: str) -> dict[str, float]:
    """One small layer's job as Snakemake starts it, run by hand 50 times: the medians, in ms,
    of the shell's job (bash, ln, sha256sum) and of the lean Python job it falls back to."""
    blobs = os.path.join(layout, "blobs", "sha256")
    small = [n for n in sorted(os.listdir(blobs)) if (512 << 10) < os.path.getsize(os.path.join(blobs, n)) < MB]
    name = small[0] if small else ""
    if not name:
        return {}
    path = os.pathsep.join([os.path.join(ROOT, "workflow")] + [p for p in sys.path if p])
    size = os.path.getsize(os.path.join(blobs, name))
    output = os.path.join(build, "job-probe.tar")
    code = "from tarexport.linklayer import main; main()"
    args = [os.path.realpath(layout), f"blobs/sha256/{name}", str(size), f"sha256:{name}", "1", "layout", "-", output]
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": build + "/pycache"}
    sys.path.insert(0, os.path.join(ROOT, "workflow"))
    from tarexport.layerfiles import record_path

    small_args = [os.path.join(blobs, name), name, str(size), "1", output, record_path(output), "false"]
    with open(os.path.join(ROOT, "workflow", "tarexport", "small_layer.sh")) as handle:
        shell_job = handle.read()
    commands = {
        "shell": ["bash", "-c", f'set -euo pipefail;\n{shell_job}\ntarexport_small "$@"', "bash", *small_args],
        "python": ["bash", "-c", 'set -euo pipefail; "$@"', "bash", sys.executable, "-S", "-P", "-c", code, *args],
    }
    medians = {}
    for kind, command in commands.items():
        times = []
        for _ in range(50):
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True)
            times.append(time.perf_counter() - start)
        medians[kind] = statistics.median(times) * 1000
    return medians


def measure_scale(work: str, count: int, runs: int) -> ScaleResults:
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    images = scale_images(count)
    names = [tags[0] for _, tags in images]
    # image 0 again with another config and a new tag, same layers: "one image's config changed"
    first = images[0][0]
    changed = Image(first.layers, make_config(first.layers, config={"Cmd": ["/app0"], "Labels": {"v": "2"}}))
    entries = [LayoutEntry(image, ["docker.io/" + tags[0]], compression="none") for image, tags in images]
    entries.append(LayoutEntry(changed, ["docker.io/scale/app0:2"], compression="none"))
    layout = write_oci_layout(os.path.join(work, "layout"), entries)
    target = os.path.join(work, "export")
    os.makedirs(target)
    config = write_config(target, sources=[layout], images=names)
    changed_config_dir = os.path.join(work, "changed-config")
    os.makedirs(changed_config_dir)
    changed_config = write_config(changed_config_dir, sources=[layout], images=["scale/app0:2", *names[1:]])
    measures: list[Measure] = []
    archive = os.path.join(target, "results", "images.tar")
    copy = os.path.join(work, "copy.tar")

    def fresh() -> None:
        for name in ("build", "results", ".snakemake"):
            shutil.rmtree(os.path.join(target, name), ignore_errors=True)

    def durable_copy() -> None:
        run("sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", archive, copy)

    counts = job_counts(target, config)
    seconds, peak = timed(lambda: export(target, config), runs, fresh)
    size = os.path.getsize(archive)
    name = f"scale: tarexport, cold, from OCI layout ({sum(counts.values())} jobs)"
    measures.append(Measure(name, seconds, size, peak))
    seconds, peak = timed(durable_copy, runs)
    measures.append(Measure("scale: cp of the archive, fsynced", seconds, size, peak))
    seconds, peak = timed(lambda: export(target, config), runs)
    measures.append(Measure("scale: tarexport, nothing changed", seconds, size, peak))
    seconds, peak = timed(lambda: export(target, config, "-n"), runs)
    measures.append(Measure("scale: snakemake -n export", seconds, 0, peak))
    # one image's config changed: each run starts from the export of the original list
    seconds, peak = timed(lambda: export(target, changed_config), runs, lambda: export(target, config))
    measures.append(Measure("scale: tarexport, one image's config changed (new tag, same layers)", seconds, size, peak))
    measures += snakemake_floor(os.path.join(work, "floor"), counts, runs, noop=True)
    probe = layer_job_ms(os.path.join(target, "build"), layout)

    source = write_docker_archive(os.path.join(work, "source.tar"), images)
    engine = DockerEngine(storage_driver="overlay2")
    try:
        engine.docker("load", "-i", source)
        os.unlink(source)
        saved = os.path.join(work, "docker-save.tar")
        seconds, peak = timed(lambda: engine.docker("save", "-o", saved, *names), runs)
        measures.append(Measure("scale: docker save (Docker 20.10, overlay2)", seconds, os.path.getsize(saved), peak))
    finally:
        engine.stop()
    shutil.rmtree(work, ignore_errors=True)
    return ScaleResults(measures, counts, probe, size)
