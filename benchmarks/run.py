"""Measure tarexport side by side with docker save, skopeo and cp, in one run.

    python benchmarks/run.py                 # about 2 GB of images, 5 runs each (median)
    python benchmarks/run.py --size-mb 200   # smaller

Creates its own images (random, incompressible data): a large shared base, a few small
app layers on top of it, and one image with many small layers. Puts them in a Docker
engine (started here), an OCI layout (gzip layers) and a docker-save archive, then times
each way of making one archive of them, and writes the table to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.engines import DockerEngine  # noqa: E402
from tests.imagefactory import Image, LayoutEntry, make_config, write_docker_archive, write_oci_layout  # noqa: E402
from tests.workflowrun import SNAKEFILE, write_config  # noqa: E402

MB = 1 << 20


def random_layer(name: str, size: int, files: int = 1) -> bytes:
    """An uncompressed layer of `files` files of random bytes, `size` in all."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for number in range(files):
            data = os.urandom(size // files)
            info = tarfile.TarInfo(f"{name}/{number}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_images(total_mb: int) -> list[tuple[Image, list[str]]]:
    base = [random_layer("base0", total_mb * MB * 45 // 100), random_layer("base1", total_mb * MB * 30 // 100)]
    images = []
    for number in range(3):
        layers = [*base, random_layer(f"app{number}", max(total_mb * MB // 200, 64 << 10))]
        images.append((Image(layers, make_config(layers, config={"Cmd": [f"/app{number}"]})), [f"bench/app{number}:1"]))
    many = [random_layer(f"small{i}", max(total_mb * MB * 20 // 100 // 50, 4096), files=4) for i in range(50)]
    images.append((Image(many, make_config(many)), ["bench/many:1"]))
    return images


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
            _floor_times.append(time.perf_counter() - start)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", default=os.path.join(ROOT, "benchmarks", "work"))
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results.md"))
    args = parser.parse_args()

    global _work_dir
    work = _work_dir = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    images = make_images(args.size_mb)
    names = [tags[0] for _, tags in images]
    archive_source = write_docker_archive(os.path.join(work, "source.tar"), images)
    layout = write_oci_layout(
        os.path.join(work, "layout"), [LayoutEntry(image, ["docker.io/" + tags[0]]) for image, tags in images]
    )
    results: list[Measure] = []

    copy = os.path.join(work, "copy.tar")

    def floor_copy() -> None:
        run("cp", archive_source, copy)

    def ours(name: str, source: str, *, fresh: bool, extra: tuple[str, ...] = ()) -> str:
        target = os.path.join(work, name)
        config_dir = os.path.join(work, name + "-config")
        os.makedirs(config_dir, exist_ok=True)
        config = write_config(config_dir, sources=[source], images=names)

        def prepare() -> None:
            if fresh:
                shutil.rmtree(target, ignore_errors=True)
            os.makedirs(target, exist_ok=True)

        prepare()
        if not fresh:
            export(target, config, *extra)  # the run whose results are then found up to date
        seconds, peak = timed(lambda: export(target, config, *extra), args.runs, prepare, floor_copy if fresh else None)
        output = os.path.join(target, "results", "images.tar")
        results.append(Measure(name, seconds, os.path.getsize(output), peak))
        return output

    plain_layout = write_oci_layout(
        os.path.join(work, "layout-plain"),
        [LayoutEntry(image, ["docker.io/" + tags[0]], compression="none") for image, tags in images],
    )
    our_archive = ours("tarexport, cold, from docker-save archive", archive_source, fresh=True)
    cold_build = os.path.join(work, "tarexport, cold, from docker-save archive", "build")
    results.append(snakemake_floor(os.path.join(work, "floor"), cold_build, args.runs))
    ours("tarexport, cold, from OCI layout (uncompressed)", plain_layout, fresh=True)
    ours("tarexport, cold, from OCI layout (gzip)", layout, fresh=True)
    results.append(decompression_floor(layout, args.runs))
    inflated = os.path.join(work, "inflated")
    os.makedirs(inflated)
    results.append(decompression_floor(layout, args.runs, into=inflated))
    shutil.rmtree(inflated)
    ours("tarexport, nothing changed", archive_source, fresh=False)

    # one small layer changed: a new app image in the layout, then the re-run
    changed_work = os.path.join(work, "changed")
    os.makedirs(changed_work)
    config = write_config(changed_work, sources=[layout], images=names)
    export(changed_work, config)
    changed_layout = os.path.join(work, "layout2")

    def change() -> None:
        base_layers = images[0][0].layers[:2]
        layers = [*base_layers, random_layer("changed", 64 << 10)]
        new = Image(layers, make_config(layers))
        shutil.rmtree(changed_layout, ignore_errors=True)
        entries = [LayoutEntry(image, ["docker.io/" + tags[0]]) for image, tags in images[1:]]
        write_oci_layout(changed_layout, [LayoutEntry(new, ["docker.io/" + names[0]]), *entries])
        write_config(changed_work, sources=[changed_layout], images=names)

    def changed_run() -> None:
        start = time.perf_counter()
        export(changed_work, config)
        # the target is per run: this run's wall time against this run's own assembly
        _changed_overheads.append(time.perf_counter() - start - changed_assembly_seconds())

    seconds, peak = timed(changed_run, args.runs, change)
    results.append(Measure("tarexport, one small layer changed", seconds, os.path.getsize(our_archive), peak))

    engine = DockerEngine()
    try:
        engine.docker("load", "-i", archive_source)
        saved = os.path.join(work, "docker-save.tar")
        seconds, peak = timed(lambda: engine.docker("save", "-o", saved, *names), args.runs)
        results.append(Measure("docker save (Docker 20.10)", seconds, os.path.getsize(saved), peak))
    finally:
        engine.stop()

    skopeo_out = os.path.join(work, "skopeo")

    def skopeo_all() -> None:
        shutil.rmtree(skopeo_out, ignore_errors=True)
        os.makedirs(skopeo_out)
        for name in names:  # skopeo copies one image per run
            target = os.path.join(skopeo_out, name.replace("/", "_").replace(":", "_") + ".tar")
            run("skopeo", "copy", "-q", f"docker-archive:{archive_source}:{name}", f"docker-archive:{target}:{name}")

    seconds, peak = timed(skopeo_all, args.runs)
    size = sum(os.path.getsize(os.path.join(skopeo_out, f)) for f in os.listdir(skopeo_out))
    results.append(Measure("skopeo copy to docker-archive (one run per image)", seconds, size, peak))

    floor = Measure(
        "cp of the docker-save archive (the floor; timed before each cold export)",
        statistics.median(_floor_times),
        os.path.getsize(archive_source),
        0,
    )
    results.append(floor)
    results += planning_scale(os.path.join(work, "scale"), args.runs)
    docker_save = next(m for m in results if m.name.startswith("docker save"))
    write_report(args.output, results, floor, docker_save, args)


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
    benchmark:
        "benchmarks/layers/{{i}}.tsv"
    shell:
        "touch {{output}} 2> {{log}}"


rule other:
    input:
        lambda wc: f"layers/{{int(wc.i) % LAYERS}}",
    output:
        "others/{{i}}",
    log:
        "logs/others/{{i}}.log",
    benchmark:
        "benchmarks/others/{{i}}.tsv"
    shell:
        "touch {{output}} 2> {{log}}"


onsuccess:  # as tarexport's Snakefile does: no wait for the rate limiter's timers at exit
    import threading

    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()
"""


def snakemake_floor(work: str, cold_build: str, runs: int) -> Measure:
    """Snakemake alone: as many jobs as the cold export ran (counted from its benchmark
    files), in the same shape (layer jobs, then jobs that each need one, then one last),
    each only touching its output, with the same scheduler and flags. A cold export less
    this is roughly tarexport's own work: a lower bound, as on 2 cores Snakemake's work
    and the jobs' overlap."""
    benchmarks = os.path.join(cold_build, "benchmarks")
    counts = {
        name: len(os.listdir(os.path.join(benchmarks, name)))
        for name in os.listdir(benchmarks)
        if os.path.isdir(os.path.join(benchmarks, name))
    }
    layers = counts.pop("layers", 0) + counts.pop("blobs", 0)
    others = sum(counts.values()) + sum(1 for name in os.listdir(benchmarks) if name.endswith(".tsv")) - 1
    os.makedirs(work, exist_ok=True)
    snakefile = os.path.join(work, "Snakefile")
    with open(snakefile, "w") as handle:
        handle.write(FLOOR_SNAKEFILE.format(layers=layers, others=others))
    target = os.path.join(work, "run")

    def prepare() -> None:
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)

    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        snakefile,
        "-d",
        target,
        "--cores",
        "all",
        "--scheduler",
        "greedy",
    ]
    seconds, peak = timed(lambda: run(*command, cwd=target), runs, prepare)
    return Measure(
        f"Snakemake alone: the same {layers + others + 1} jobs, each only touching its output", seconds, 0, peak
    )


def _gunzip_file(path: str, module: str = "zlib", into: str = "") -> int:
    """Inflate one gzip file with `module` (zlib, or python-isal's isal.isal_zlib); its size.
    With `into`, the output is written to a file there, as `gunzip` would; else discarded."""
    import importlib

    decompressor, total = importlib.import_module(module).decompressobj(wbits=31), 0
    target = os.path.join(into, os.path.basename(path)) if into else os.devnull
    with open(path, "rb") as handle, open(target, "wb") as out:
        while chunk := handle.read(MB):
            data = decompressor.decompress(chunk)
            total += len(data)
            if into:
                out.write(data)
    return total


def decompression_floor(layout: str, runs: int, into: str = "") -> Measure:
    """The fastest available gzip decompressor over the layout's layers, 2 processes in
    parallel, output discarded (the floor for a cold export from gzip layers); or, with
    `into`, written to files there, as `gunzip` does."""
    from multiprocessing import Pool

    blobs_dir = os.path.join(layout, "blobs", "sha256")
    blobs = [os.path.join(blobs_dir, name) for name in os.listdir(blobs_dir)]
    layers = []
    for path in blobs:
        with open(path, "rb") as handle:
            if handle.read(2) == b"\x1f\x8b":
                layers.append(path)
    layers.sort(key=os.path.getsize, reverse=True)  # the big ones first, as a scheduler would
    import functools
    import importlib.util

    candidates = [("zlib", functools.partial(_gunzip_file, module="zlib", into=into))]
    if importlib.util.find_spec("isal"):
        candidates.append(("python-isal", functools.partial(_gunzip_file, module="isal.isal_zlib", into=into)))
    best: Measure | None = None
    for name, function in candidates:
        with Pool(2) as pool:
            sizes: list[int] = []
            seconds, _ = timed(lambda: sizes.extend(pool.map(function, layers, chunksize=1)), runs)  # noqa: B023
        what = "into files" if into else "output discarded"
        measure = Measure(
            f"gzip decompression of the layers, {what}, 2 processes ({name})", seconds, sum(sizes) // runs, 0
        )
        if best is None or measure.seconds < best.seconds:
            best = measure
    assert best is not None
    return best


def planning_scale(work: str, runs: int) -> list[Measure]:
    """Planning at scale with tiny layers: 1000 images x 20 layers, planned and dry-run
    (`-n`); and 50 images x 10 layers exported, then re-run with nothing changed.

    Each image has its own 5 top layers over one of 10 shared 15-layer bases (so 20 layers
    each; 5,150 distinct layers, 5,150 v1 directories and 1,000 configs for the first)."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    from tests.imagefactory import make_layer

    def image_set(count: int, bases: int, base_depth: int, own: int) -> list[tuple[Image, list[str]]]:
        stacks = [[make_layer({f"base{b}/{i}": f"{b}.{i}".encode()}) for i in range(base_depth)] for b in range(bases)]
        out = []
        for number in range(count):
            layers = stacks[number % bases] + [make_layer({f"own/{number}/{i}": b"x"}) for i in range(own)]
            out.append((Image(layers, make_config(layers, config={"Cmd": [str(number)]})), [f"scale/i{number}:1"]))
        return out

    def prepared(name: str, images: list[tuple[Image, list[str]]]) -> tuple[str, str]:
        """An uncompressed layout of `images`, and a work directory with its config."""
        entries = [LayoutEntry(image, ["docker.io/" + tags[0]], compression="none") for image, tags in images]
        layout = write_oci_layout(os.path.join(work, name), entries)
        target = os.path.join(work, name + "-work")
        os.makedirs(target)
        return target, write_config(target, sources=[layout], images=[tags[0] for _, tags in images])

    measures = []
    target, config = prepared("big", image_set(1000, 10, 15, 5))
    seconds, peak = timed(lambda: export(target, config, "-n"), runs)
    measures.append(Measure("plan and dry-run (-n): 1000 images x 20 layers", seconds, 0, peak))

    target, config = prepared("small", image_set(50, 5, 5, 5))
    export(target, config)
    seconds, peak = timed(lambda: export(target, config), runs)
    size = os.path.getsize(os.path.join(target, "results", "images.tar"))
    measures.append(Measure("nothing changed: 50 images x 10 layers", seconds, size, peak))
    return measures


def write_report(
    path: str, results: list[Measure], floor: Measure, docker_save: Measure, args: argparse.Namespace
) -> None:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 30)
    lines = [
        "# Benchmark results",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by"
        f" `python benchmarks/run.py --size-mb {args.size_mb} --runs {args.runs}` on {os.cpu_count()} cores,"
        f" {memory_gib} GiB of memory, Python {platform.python_version()}, {platform.platform()}."
        f" Times are medians of {args.runs} runs with a warm page cache; `x` is the ratio to that row."
        " Peak RSS is that of the largest process started for the row (docker save works in dockerd: 0).",
        "",
        "| what | time (s) | MB/s | x cp | x docker save | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for measure in results:
        rate = measure.bytes / MB / measure.seconds if measure.seconds else 0
        lines.append(
            f"| {measure.name} | {measure.seconds:.2f} | {rate:.0f} | {measure.seconds / floor.seconds:.1f} "
            f"| {measure.seconds / docker_save.seconds:.2f} | {measure.peak_rss_mb:.0f} |"
        )
    lines += ["", *targets(results, floor, docker_save)]
    text = "\n".join(lines) + "\n"
    with open(path, "w") as handle:
        handle.write(text)
    print(text)


def targets(results: list[Measure], floor: Measure, docker_save: Measure) -> list[str]:
    """Issue 6's targets against this run's rows."""

    def row(prefix: str) -> Measure:
        return next(m for m in results if m.name.startswith(prefix))

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    cold = row("tarexport, cold, from docker-save")
    plain = row("tarexport, cold, from OCI layout (uncompressed)")
    gzip = row("tarexport, cold, from OCI layout (gzip)")
    inflate = row("gzip decompression of the layers, output discarded")
    inflate_to_files = row("gzip decompression of the layers, into files")
    changed = row("tarexport, one small layer changed")
    changed_rest = statistics.median(_changed_overheads)
    snakemake_alone = row("Snakemake alone")
    nothing = row("nothing changed: 50 images")
    scale = row("plan and dry-run")
    peak = max(m.peak_rss_mb for m in results if m.name.startswith("tarexport"))
    c, d = cold.seconds / floor.seconds, cold.seconds / docker_save.seconds
    return [
        "| target (issue 6) | this run | verdict |",
        "|---|---|---|",
        f"| cold from docker-save ≤ 2.5 x cp | {c:.1f} x | {verdict(c <= 2.5)} |",
        f"| cold from docker-save < 0.5 x docker save | {d:.2f} x | {verdict(d < 0.5)} |",
        f"| cold from uncompressed layout ≤ 1.5 x cp | {plain.seconds / floor.seconds:.1f} x |"
        f" {verdict(plain.seconds <= 1.5 * floor.seconds)} |",
        f"| cold from gzip ≤ 1.3 x fastest decompressor (output discarded) | {gzip.seconds / inflate.seconds:.1f} x"
        f" ({gzip.seconds / inflate_to_files.seconds:.1f} x decompressing into files) |"
        f" {verdict(gzip.seconds <= 1.3 * inflate.seconds)} |",
        f"| nothing changed, 50 images x 10 layers, < 2 s | {nothing.seconds:.2f} s | {verdict(nothing.seconds < 2)} |",
        f"| one small layer changed < assembly + 2 s | {changed.seconds:.2f} s; less each run's own assembly:"
        f" {changed_rest:.2f} s | {verdict(changed_rest < 2)} |",
        f"| peak RSS < 300 MB (exports) | {peak:.0f} MB | {verdict(peak < 300)} |",
        f"| 1000 images x 20 layers plan + dry-run < 30 s | {scale.seconds:.1f} s | {verdict(scale.seconds < 30)} |",
        "",
        "Not targets: roughly what the cold exports cost beyond Snakemake's own cost for the"
        f" same jobs ({snakemake_alone.seconds:.2f} s); a lower bound, as Snakemake's work and"
        " the jobs' overlap on 2 cores:",
        "",
        "| cold export | less Snakemake alone (s) | x cp |",
        "|---|---:|---:|",
        *(
            f"| {m.name.removeprefix('tarexport, cold, ')} | {m.seconds - snakemake_alone.seconds:.2f} |"
            f" {(m.seconds - snakemake_alone.seconds) / floor.seconds:.1f} |"
            for m in (cold, plain, gzip)
        ),
    ]


def changed_assembly_seconds() -> float:
    """The `export` job's own time in the latest "one small layer changed" run (its benchmark file)."""
    path = os.path.join(_work_dir, "changed", "build", "benchmarks", "export.tsv")
    with open(path) as handle:
        return float(handle.read().splitlines()[1].split("\t")[0])


_work_dir = ""
_floor_times: list[float] = []
_changed_overheads: list[float] = []


if __name__ == "__main__":
    main()
