"""Where the export writes never touches a source: an `output` or `build_dir` that is, holds
or lies inside a source (through symlinks too), an output inside the build directory or
that is a directory, are refused on one line before anything is written or removed; and
the stale-archive check removes only an archive this project wrote."""

from __future__ import annotations

import os
import shutil

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
from tests.workflowrun import export, sha256_file, snakemake, write_config

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


def test_the_stale_check_removes_only_an_archive_it_wrote(tmp_path) -> None:
    """A failed run after a change removes our old archive, but not a file someone else
    put at the output path since."""
    src = str(tmp_path / "src")
    work = str(tmp_path / "work")
    os.makedirs(work)
    write_oci_layout(src, [LayoutEntry(IMAGE, [TAG])])
    export(work, sources=[src], images=[TAG])
    output = os.path.join(work, "results", "images.tar")

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
