"""Where the export writes never touches a source: an `output` or `build_dir` that is, holds
or lies inside a source (through symlinks too), an output inside the build directory or
that is a directory, are refused on one line before anything is written or removed; and
the stale-archive check removes only an archive this project wrote."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from tests.imagefactory import (
    Image,
    LayoutEntry,
    make_config,
    make_image,
    make_layer,
    sha,
    write_docker_archive,
    write_oci_layout,
)
from tests.test_hostile import assert_sources_untouched, snapshot
from tests.workflowrun import SNAKEFILE, export, run_measured, sha256_file, snakemake, write_config

pytestmark = pytest.mark.workflow

IMAGE = make_image([{"a": b"A"}])
TAG = "paths:1"


def sources(root: str) -> tuple[str, str]:
    """A layout and a docker-save style archive, both holding the image."""
    root = os.path.join(root, "sources")
    os.makedirs(root)
    layout = write_oci_layout(os.path.join(root, "layout"), [LayoutEntry(IMAGE, ["docker.io/library/" + TAG])])
    archive = write_docker_archive(os.path.join(root, "saved.tar"), [(IMAGE, [TAG])])
    return layout, archive


# case -> (config changes given the layout, the archive and the work dir; words of the error)
CASES = {
    "output-is-the-archive-source": (lambda lay, arc, work: {"output": arc}, "is this source"),
    "output-inside-the-layout": (
        lambda lay, arc, work: {"output": os.path.join(lay, "index.json")},
        "lies inside this source",
    ),
    "output-links-to-the-source": (lambda lay, arc, work: {"output": link(work, "out.tar", arc)}, "is this source"),
    "build-dir-is-the-layout": (lambda lay, arc, work: {"build_dir": lay}, "overlap"),
    "build-dir-holds-the-source": (lambda lay, arc, work: {"build_dir": os.path.dirname(lay)}, "overlap"),
    "output-is-a-build-record": (lambda lay, arc, work: {"output": "build/export.plan"}, "lies inside build_dir"),
    "output-is-a-directory": (lambda lay, arc, work: {"output": make_dir(work, "results")}, "is a directory"),
}


def link(work: str, name: str, target: str) -> str:
    path = os.path.join(work, name)
    os.symlink(target, path)
    return path


def make_dir(work: str, name: str) -> str:
    path = os.path.join(work, name)
    os.makedirs(path)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_write_paths_that_would_touch_a_source_are_refused(tmp_path, case: str) -> None:
    change, expected = CASES[case]
    layout, archive = sources(str(tmp_path))
    work = str(tmp_path / "work")
    os.makedirs(work)
    config = {"sources": [layout, archive], "images": [TAG], **change(layout, archive, work)}
    before = snapshot(str(tmp_path), work)
    run = snakemake(work, configfile=write_config(work, **config))
    lines = [line for line in run.output.splitlines() if line.startswith("tarexport: error:")]
    assert run.returncode != 0 and lines and "Traceback" not in run.output, run.output[-3000:]
    assert expected in lines[0], lines[0]
    assert_sources_untouched(before, work, str(tmp_path))


def exported_once(root: str) -> tuple[str, str, str]:
    """A layout, a work directory, and the archive exported there from the layout."""
    src = os.path.join(root, "src")
    work = os.path.join(root, "work")
    os.makedirs(work)
    write_oci_layout(src, [LayoutEntry(IMAGE, [TAG])])
    export(work, sources=[src], images=[TAG])
    return src, work, os.path.join(work, "results", "images.tar")


def test_the_stale_check_removes_only_an_archive_it_wrote(tmp_path) -> None:
    """A failed run after a change removes our old archive, but not a file someone else
    put at the output path since."""
    src, work, output = exported_once(str(tmp_path))

    def break_the_source() -> str:
        """The tag moves to an image whose layer blob is damaged: the next run fails in a job."""
        layers = [make_layer({"v": b"2" * 5000})]
        shutil.rmtree(src)
        write_oci_layout(src, [LayoutEntry(Image(layers, make_config(layers)), [TAG], compression="none")])
        blob = os.path.join(src, "blobs", "sha256", sha(layers[0]).split(":")[1])
        with open(blob, "r+b") as handle:
            handle.seek(100)
            handle.write(b"!")
        return write_config(work, sources=[src], images=[TAG])

    # someone else's file at the output path (a new file, renamed into place)
    theirs = output + ".theirs"
    with open(theirs, "wb") as handle:
        handle.write(b"not ours")
    os.replace(theirs, output)
    run = snakemake(work, configfile=break_the_source())
    assert run.returncode != 0 and "layer blob has digest" in run.output, run.output[-3000:]
    with open(output, "rb") as handle:
        assert handle.read() == b"not ours"

    # our own archive of the earlier configuration is removed by the same failure
    os.unlink(output)
    shutil.rmtree(src)
    write_oci_layout(src, [LayoutEntry(IMAGE, [TAG])])
    export(work, sources=[src], images=[TAG])
    assert os.path.isfile(output)
    run = snakemake(work, configfile=break_the_source())
    assert run.returncode != 0 and "removed" in run.output and not os.path.exists(output), run.output[-3000:]


def test_configurations_sharing_a_build_dir_keep_their_own_v1_json(tmp_path) -> None:
    """Docker writes an image's `os` into its lower v1 `json` files but not into their IDs:
    two configurations sharing one build_dir, whose images share a lower layer but not
    their `os`, each get their own file, and their archives stay what a lone run makes."""
    base = make_layer({"base": b"shared"})
    images = {}
    for os_name in ("linux", "freebsd"):
        layers = [base, make_layer({"top": os_name.encode()})]
        images[os_name] = Image(layers, make_config(layers, os=os_name))
    layout = write_oci_layout(
        str(tmp_path / "layout"),
        [LayoutEntry(image, [f"docker.io/library/{os_name}:1"]) for os_name, image in images.items()],
    )
    shared = str(tmp_path / "shared-build")
    archives = {}
    for _ in range(2):  # A, B, then A and B again over what the other wrote
        for os_name in images:
            work = str(tmp_path / f"work-{os_name}")
            os.makedirs(work, exist_ok=True)
            export(work, sources=[layout], images=[f"{os_name}:1"], build_dir=shared)
            archives[os_name] = sha256_file(os.path.join(work, "results", "images.tar"))
    for os_name in images:
        alone = str(tmp_path / f"alone-{os_name}")
        os.makedirs(alone)
        export(alone, sources=[layout], images=[f"{os_name}:1"])
        assert archives[os_name] == sha256_file(os.path.join(alone, "results", "images.tar")), os_name


def test_a_failed_plan_removes_our_archive_of_another_configuration_but_not_in_a_dry_run(tmp_path) -> None:
    """Planning fails (a typo'd image): no job runs, yet the archive of the earlier
    configuration must not stay at `output`. A dry run leaves it; a real run removes it;
    an output refused as a source is never removed."""
    src, work, output = exported_once(str(tmp_path))
    typo = write_config(work, sources=[src], images=["paths:2"])

    dry = snakemake(work, "-n", configfile=typo)
    lines = [line for line in dry.output.splitlines() if line.startswith("tarexport: error:")]
    assert dry.returncode != 0 and lines and "paths:2" in lines[0] and "Traceback" not in dry.output, dry.output
    assert os.path.isfile(output) and "removed" not in dry.output

    run = snakemake(work, configfile=typo)
    lines = [line for line in run.output.splitlines() if line.startswith("tarexport: error:")]
    assert run.returncode != 0 and lines and "paths:2" in lines[0], run.output[-3000:]
    assert "tarexport: removed results/images.tar" in run.output and not os.path.exists(output)

    # asked for by file name, the same error
    by_name = snakemake(work, "results/images.tar", configfile=typo)
    assert by_name.returncode != 0 and "tarexport: error: no such image: paths:2" in by_name.output

    # a bare `snakemake` (no target) means `snakemake export`: the same error, then the archive
    bare = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "--configfile"]
    run = run_measured([*bare, typo], work, 600)
    assert run.returncode != 0 and "tarexport: error: no such image: paths:2" in run.output, run.output[-3000:]
    run = run_measured([*bare, write_config(work, sources=[src], images=[TAG])], work, 600)
    assert run.returncode == 0 and os.path.isfile(output), run.output[-3000:]

    # the same failure with our archive now at a path that is also a source: kept
    run = snakemake(work, configfile=write_config(work, sources=[src, output], images=["paths:2"]))
    assert run.returncode != 0 and "is this source" in run.output and os.path.isfile(output), run.output[-3000:]


@pytest.mark.parametrize("linked", ["layers", "docker/v1-id-directory", "oci/manifests"])
def test_build_dir_directories_that_are_symlinks_are_refused(tmp_path, linked: str) -> None:
    """The export writes and removes files in its build directories: one that is a symlink
    to elsewhere would be written through. Refused on one line, nothing written there; the
    build directory itself may be a symlink."""
    src = str(tmp_path / "src")
    work = str(tmp_path / "work")
    elsewhere = str(tmp_path / "elsewhere")
    os.makedirs(elsewhere)
    with open(os.path.join(elsewhere, "precious.tmp"), "wb") as handle:
        handle.write(b"keep")
    write_oci_layout(src, [LayoutEntry(IMAGE, [TAG])])
    real_build = str(tmp_path / "real-build")
    os.makedirs(os.path.dirname(os.path.join(real_build, linked)), exist_ok=True)
    os.symlink(elsewhere, os.path.join(real_build, linked))
    os.makedirs(work)
    os.symlink(real_build, os.path.join(work, "build"))
    run = snakemake(work, configfile=write_config(work, sources=[src], images=[TAG]))
    lines = [line for line in run.output.splitlines() if line.startswith("tarexport: error:")]
    assert run.returncode != 0 and lines and "Traceback" not in run.output, run.output[-3000:]
    assert f"build/{linked} is a symbolic link" in lines[0], lines[0]
    assert os.listdir(elsewhere) == ["precious.tmp"]

    os.unlink(os.path.join(real_build, linked))  # the build directory through its own link is fine
    export(work, sources=[src], images=[TAG])
    assert os.path.isdir(os.path.join(real_build, "layers")) and os.listdir(elsewhere) == ["precious.tmp"]


@pytest.mark.parametrize("key", ["output", "build_dir"])
def test_braces_in_write_paths_are_one_line(tmp_path, key: str) -> None:
    src = write_oci_layout(str(tmp_path / "src"), [LayoutEntry(IMAGE, [TAG])])
    work = str(tmp_path / "work")
    os.makedirs(work)
    run = snakemake(work, configfile=write_config(work, sources=[src], images=[TAG], **{key: "out/{image}.tar"}))
    lines = [line for line in run.output.splitlines() if line.startswith("tarexport: error:")]
    assert run.returncode != 0 and lines and "Traceback" not in run.output, run.output[-3000:]
    assert lines[0] == (
        f"tarexport: error: config key {key}: out/{{image}}.tar has a brace, which Snakemake reads as a wildcard;"
        " choose a path without"
    )


def test_oci_assembly_reads_only_the_manifests_of_its_own_plan(tmp_path) -> None:
    """A build directory shared by configurations holds other plans' manifests and
    indexes: the assembly walks the files its plan names, not everything there (a stray
    entry it cannot read, here a directory, stopped it)."""
    src, work, output = exported_once(str(tmp_path))
    config = {"sources": [src], "images": [TAG], "format": "oci"}
    export(work, **config)
    before = sha256_file(output)
    os.makedirs(os.path.join(work, "build", "oci", "manifests", "f" * 64 + ".json"))
    export(work, **config, compression="gzip")  # assembles again, from the same manifests
    export(work, **config)
    assert sha256_file(output) == before
