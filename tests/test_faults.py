"""Faults: killed runs, a run failing after a change, a full disk, two runs at once, and
stored layers changed behind the workflow's back. Never a partial or stale archive."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tarexport.layerfiles import fingerprint, record_path
from tests.imagefactory import Image, LayoutEntry, make_config, make_layer, sha, write_oci_layout
from tests.workflowrun import SNAKEFILE, export, sha256_file, snakemake, write_config

pytestmark = pytest.mark.workflow

# big enough that a run takes seconds: layer jobs and the assembly can be interrupted
LAYERS = [make_layer({f"data{i}": os.urandom(3 << 20)}) for i in range(8)]
BIG = Image(LAYERS, make_config(LAYERS))
TAG = "docker.io/library/big:1"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_oci_layout(str(tmp_path_factory.mktemp("src") / "layout"), [LayoutEntry(BIG, [TAG])])


@pytest.fixture(scope="module")
def baseline(source: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = str(tmp_path_factory.mktemp("baseline"))
    export(work, sources=[source], images=["big:1"])
    return sha256_file(os.path.join(work, "results", "images.tar"))


def archive(work: str) -> str:
    return os.path.join(work, "results", "images.tar")


def run_to_completion(work: str, config: str) -> None:
    """A re-run as a user would do it: unlock if Snakemake asks, then run."""
    run = snakemake(work, configfile=config)
    if run.returncode != 0 and "cannot be locked" in run.output:
        unlock = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "--unlock", "--configfile", config]
        subprocess.run(unlock, check=True, capture_output=True)
        run = snakemake(work, configfile=config)
    assert run.returncode == 0, run.output[-3000:]


def test_kill_9_at_many_points(source: str, baseline: str, tmp_path) -> None:
    work = str(tmp_path)
    config = write_config(work, sources=[source], images=["big:1"])
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export", "--configfile", config]
    for delay in (0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 7.0):
        if os.path.exists(archive(work)):
            os.unlink(archive(work))  # so that the next attempt has the assembly to do again
        process = subprocess.Popen(
            command, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGKILL)  # the run and every job it started
        process.wait()
        # whatever was interrupted, the output path holds the whole archive or nothing
        assert not os.path.exists(archive(work)) or sha256_file(archive(work)) == baseline
    run_to_completion(work, config)
    assert sha256_file(archive(work)) == baseline
    # and once surely during the assembly: killed when its temporary file appears
    os.unlink(archive(work))
    process = subprocess.Popen(
        command, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    results = os.path.dirname(archive(work))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(n.endswith(".part") for n in os.listdir(results)):
        time.sleep(0.001)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert any(n.endswith(".part") for n in os.listdir(results)), "the assembly was not caught"
    assert not os.path.exists(archive(work))
    run_to_completion(work, config)
    assert sha256_file(archive(work)) == baseline
    # the archive and its side files
    published = ("images.tar", "images.tar.sha256", "images.tar.images.txt", "images.tar.provenance.json")
    leftovers = [name for name in os.listdir(results) if name not in published]
    assert not leftovers  # the killed attempt's temporary is gone too


def test_a_failed_run_after_a_change_never_leaves_a_stale_archive(tmp_path) -> None:
    """Snakemake #3808: good run, changed input, failed job, re-run: never the old archive."""
    work = str(tmp_path / "work")
    os.makedirs(work)
    src = str(tmp_path / "src")
    old = Image([make_layer({"v": b"1"})], b"")
    old.config = make_config(old.layers)
    write_oci_layout(src, [LayoutEntry(old, [TAG])])
    export(work, sources=[src], images=["big:1"])
    # the tag moves to a new image whose layer blob is damaged
    new_layers = [make_layer({"v": b"2" * 5000})]
    new = Image(new_layers, make_config(new_layers))
    shutil.rmtree(src)
    write_oci_layout(src, [LayoutEntry(new, [TAG], compression="none")])
    blob = os.path.join(src, "blobs", "sha256", sha(new_layers[0]).split(":")[1])
    with open(blob, "r+b") as handle:
        handle.seek(100)
        handle.write(b"!")
    config = write_config(work, sources=[src], images=["big:1"])
    for _ in range(2):  # the failing run, then a plain re-run
        run = snakemake(work, configfile=config)
        assert run.returncode != 0 and "layer blob has digest" in run.output
        assert "Nothing to be done" not in run.output
        assert not os.path.exists(archive(work))
        # nor the files published beside the old archive
        assert not glob.glob(archive(work) + "*")
    with open(blob, "r+b") as handle:
        handle.seek(100)
        handle.write(new_layers[0][100:101])
    run_to_completion(work, config)
    fresh = str(tmp_path / "fresh")
    os.makedirs(fresh)
    export(fresh, sources=[src], images=["big:1"])
    assert sha256_file(archive(work)) == sha256_file(archive(fresh))


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        if os.environ.get("CI"):
            pytest.fail("cannot mount a tmpfs to fill")
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield str(mount)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("tarexport: error:")]
    assert lines and "Traceback" not in output, output[-3000:]
    return lines[0]


def test_full_disk_for_the_archive(source: str, small_disk: str, tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    # (in a directory below the mount point: Snakemake removes a failed job's empty output directories)
    output = os.path.join(small_disk, "out", "images.tar")
    run = snakemake(work, configfile=write_config(work, sources=[source], images=["big:1"], output=output))
    assert run.returncode != 0
    assert "No space left on device" in one_line(run.output)
    assert not os.path.exists(output)
    assert not os.path.isdir(os.path.dirname(output)) or os.listdir(os.path.dirname(output)) == []  # no temporary


def test_full_disk_for_the_build_directory(source: str, small_disk: str, tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    build = os.path.join(small_disk, "build")
    # the space guard off (keep_free_mib: 0), so that the disk really fills; with it, the
    # layer job stops first (test_compressible_layers)
    config = write_config(work, sources=[source], images=["big:1"], build_dir=build, keep_free_mib=0)
    run = snakemake(work, configfile=config)
    assert run.returncode != 0
    assert "No space left on device" in one_line(run.output)
    assert not os.path.exists(archive(work))


def test_a_second_run_at_once_refuses(source: str, baseline: str, tmp_path) -> None:
    work = str(tmp_path)
    config = write_config(work, sources=[source], images=["big:1"])
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export", "--configfile", config]
    first = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    locks = os.path.join(work, ".snakemake", "locks")
    layers = os.path.join(work, "build", "layers")
    deadline = time.monotonic() + 30
    # a stored layer: jobs run, so Snakemake has written all its lock files (seen on a busy
    # machine: stopped between its first lock file and the next, it let a second run by)
    while time.monotonic() < deadline and not (os.path.isdir(layers) and os.listdir(layers)):
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGSTOP)  # hold the first run inside its locked section
    try:
        assert os.listdir(locks), "the first run ended before the second could start"
        second = snakemake(work, configfile=config)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode != 0 and "cannot be locked" in second.output
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    assert sha256_file(archive(work)) == baseline


def own_layout(tmp_path) -> str:
    """A layout of BIG for one test: with linked layers, damaging a stored layer damages it."""
    return write_oci_layout(str(tmp_path / "layout"), [LayoutEntry(BIG, [TAG])])


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as handle:  # same size, one byte changed
        handle.seek(offset)
        was = handle.read(1)
        handle.seek(offset)
        handle.write(b"X" if was != b"X" else b"Y")


def test_a_stored_layer_changed_behind_our_back_is_made_again(baseline: str, tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    settings = {"sources": [own_layout(tmp_path)], "images": ["big:1"], "link_layers": False}
    export(work, **settings)
    relative = os.path.join("build", "layers", BIG.diff_ids[0].split(":")[1] + ".tar")
    stored = os.path.join(work, relative)
    flip_byte(stored, 0)
    run = snakemake(work, configfile=write_config(work, **settings, compression="gzip"))
    assert run.returncode == 0, run.output[-3000:]
    assert f"tarexport: stored layer {relative} changed after it was made; making it again" in run.output
    with open(stored, "rb") as handle:
        assert handle.read() == LAYERS[0]

    # a byte the record's samples do not cover: found in the bytes the archive is written
    # from, with the default verify_layers: quick
    flip_byte(stored, 100_000)
    run = snakemake(work, configfile=write_config(work, **settings, compression="none"))
    assert run.returncode == 0, run.output[-3000:]
    assert f"tarexport: stored layer {relative} changed after it was made; making it again" in run.output
    assert sha256_file(archive(work)) == baseline  # a clean export's bytes
    with open(stored, "rb") as handle:
        assert handle.read() == LAYERS[0]

    flip_byte(stored, 100_000)  # `full`: found before writing, by hashing every layer whole
    full = write_config(work, **settings, compression="zstd", verify_layers="full")
    run = snakemake(work, configfile=full)
    assert run.returncode == 0, run.output[-3000:]
    assert f"stored layer {relative} no longer has digest {BIG.diff_ids[0]}; making it again" in run.output


@pytest.mark.parametrize("offset", [0, 100_000])  # found before writing; found as written
def test_a_damaged_stored_layer_whose_source_is_damaged_too_is_one_line(tmp_path, offset: int) -> None:
    """Nothing to make it again from: the run fails naming the stored layer and the source's
    blob, and leaves no archive."""
    work = str(tmp_path / "work")
    os.makedirs(work)
    layout = own_layout(tmp_path)
    settings = {"sources": [layout], "images": ["big:1"]}
    export(work, **settings)
    stored = os.path.join(work, "build", "layers", BIG.diff_ids[0].split(":")[1] + ".tar")
    flip_byte(stored, offset)
    for blob in glob.glob(os.path.join(layout, "blobs", "sha256", "*")):
        if os.path.getsize(blob) > 1 << 20:  # the layers' blobs
            flip_byte(blob, 100)
    run = snakemake(work, configfile=write_config(work, **settings, compression="gzip"))
    assert run.returncode != 0
    line = one_line(run.output)
    assert "changed after it was made, and making it again failed: image big:1" in line, line
    assert f"source {layout}, member blobs/sha256/" in line and ": layer blob has digest sha256:" in line, line
    assert not os.path.exists(archive(work))


@pytest.mark.parametrize(
    ("fmt", "layers", "changed"),
    [
        ("docker", "uncompressed", "config"),
        ("oci", "uncompressed", "config"),
        ("docker", "uncompressed", "layer"),
        ("oci", "uncompressed", "layer"),
        ("oci", "keep", "kept blob"),
    ],
)
def test_every_stored_file_an_archive_takes_is_checked(tmp_path, fmt: str, layers: str, changed: str) -> None:
    """Each archive entry names the digest its build file must have, and the bytes written
    into the archive are hashed against it: a stored file changed since it was made is found
    at assembly, in either format, whichever build directory it lives in, even rewritten
    together with its record (as a runner writing a shared cache could). A layer is made
    again from its source and the archive is a clean export's; a config is refused."""
    work = str(tmp_path / "work")
    os.makedirs(work)
    settings = {"sources": [own_layout(tmp_path)], "images": [TAG], "format": fmt, "layers": layers}
    settings["link_layers"] = False
    export(work, **settings)
    clean = sha256_file(archive(work))
    build = os.path.join(work, "build")
    stored = {
        "config": os.path.join(build, "configs", BIG.image_id.split(":")[1] + ".json"),
        "layer": os.path.join(build, "layers", BIG.diff_ids[0].split(":")[1] + ".tar"),
        "kept blob": os.path.join(build, "blobs", sorted(os.listdir(os.path.join(build, "blobs")))[0])
        if layers == "keep"
        else "",
    }[changed]
    with open(stored, "rb") as handle:
        made = handle.read()
    if changed == "config":  # still valid JSON, so that only its digest tells
        with open(stored, "ab") as handle:
            handle.write(b"\n")
    else:
        assert len(made) > 1 << 20  # a record of sampled blocks
        flip_byte(stored, 100_000)
        with open(record_path(stored), "w") as handle:  # the record made again for the new bytes
            handle.write(fingerprint(stored))
    os.unlink(archive(work))
    run = snakemake(work, configfile=write_config(work, **settings))  # assembles again
    if changed == "config":
        assert run.returncode != 0 and "stored config" in one_line(run.output), run.output[-3000:]
        assert not os.path.exists(archive(work))
    else:
        assert run.returncode == 0, run.output[-3000:]
        assert f"{os.path.relpath(stored, work)} changed after it was made; making it again" in run.output
        with open(stored, "rb") as handle:
            assert handle.read() == made
        assert sha256_file(archive(work)) == clean
