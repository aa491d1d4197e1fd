"""The Snakemake workflow itself: jobs, reproducibility, reuse across runs, scale-out, errors."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import tarfile
from collections import Counter

import pytest

from tests.imagefactory import (
    Image,
    LayoutEntry,
    make_config,
    make_image,
    make_layer,
    sha,
    write_docker25_archive,
    write_docker_archive,
    write_oci_layout,
)
from tests.workflowrun import export, fold, sha256_file, snakemake, write_config

pytestmark = pytest.mark.workflow

BASE = make_image([{"etc/os": b"base\n"}, {"usr/lib/x": b"x" * 5000}], created="2024-01-01T00:00:00Z")
APP = Image(
    [*BASE.layers, make_layer({"app/bin": b"app-1\n"})],
    b"",
)
APP.config = make_config(APP.layers, created="2024-02-02T02:02:02.5+02:00", config={"Labels": {"a<b": "&"}})
TOOL = make_image([{"tool": b"tool\n"}, {"usr/lib/x": b"x" * 5000}])


def layout(root: str, extra: list[LayoutEntry] | None = None) -> str:
    entries = [
        LayoutEntry(BASE, ["example.com/base:1.0", "example.com/base:latest"]),
        LayoutEntry(APP, ["example.com/app:1.0"], compression="zstd", family="docker"),
        LayoutEntry(TOOL, ["tool:2"], compression="none"),
        *(extra or []),
    ]
    return write_oci_layout(root, entries)


IMAGES = ["example.com/base", "example.com/app:1.0", "tool:2"]


@pytest.fixture
def sources(tmp_path) -> str:
    return layout(str(tmp_path / "src" / "layout"))


def archive(work: str) -> str:
    return os.path.join(work, "results", "images.tar")


def job_stats(output: str) -> dict[str, int]:
    """The 'Job stats' table Snakemake prints for a (dry) run."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]  # the first table of the two
    stats: Counter[str] = Counter()
    for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE):
        if m.group(1) != "total":
            stats[fold(m.group(1))] += int(m.group(2))
    return dict(stats)


def test_dry_run_lists_every_tracked_output(sources: str, tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    run = snakemake(work, "-n", configfile=write_config(work, sources=[sources], images=IMAGES))
    assert run.returncode == 0, run.output
    # 4 distinct diffs (usr/lib/x is in all three images); one job per image for its config
    # and v1 dirs (6 in all: base's lower dir is app's lowest too)
    assert job_stats(run.output) == {
        "export": 1,
        "image_files": 3,
        "layer_tar": 4,
        "manifest_json": 1,
        "repositories": 1,
    }
    assert not os.path.exists(archive(work))


def test_byte_reproducible_across_directories_cores_umask_and_mtimes(sources: str, tmp_path) -> None:
    first = str(tmp_path / "one")
    second = str(tmp_path / "two")
    os.makedirs(first)
    os.makedirs(second)
    export(first, "--cores", "1", sources=[sources], images=IMAGES)
    # the same content, newer mtimes, another directory
    copy = str(tmp_path / "copy")
    shutil.copytree(sources, copy, copy_function=shutil.copyfile)
    old_umask = os.umask(0o077)
    try:
        export(second, "--cores", "2", sources=[copy], images=IMAGES, build_dir="other-build")
    finally:
        os.umask(old_umask)
    assert sha256_file(archive(first)) == sha256_file(archive(second))
    assert stat.S_IMODE(os.stat(archive(second)).st_mode) == 0o644
    with tarfile.open(archive(first)) as result:
        names = result.getnames()
    assert names == sorted(names, key=lambda n: n.split("/"))


def test_reuse_across_runs(tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    src = layout(str(tmp_path / "src"))
    first = export(work, sources=[src], images=IMAGES)
    assert first.jobs["layer_tar"] == 4
    digest = sha256_file(archive(work))

    again = export(work, sources=[src], images=IMAGES)
    assert again.nothing_to_do and not again.jobs

    # same content rewritten: new mtimes on every source file
    shutil.rmtree(src)
    layout(src)
    rewritten = export(work, sources=[src], images=IMAGES)
    assert rewritten.jobs["layer_tar"] == 0 and rewritten.jobs["image_files"] == 0, rewritten.jobs
    assert sha256_file(archive(work)) == digest

    # the same layout moved elsewhere: stored layers and configs are named by digest, kept
    moved = str(tmp_path / "moved")
    shutil.move(src, moved)
    relocated = export(work, sources=[moved], images=IMAGES)
    assert relocated.jobs["layer_tar"] == 0 and relocated.jobs["image_files"] == 0, relocated.jobs
    assert sha256_file(archive(work)) == digest
    shutil.move(moved, src)

    # one more image: only its new layer, its config and v1 dirs, the index files and the archive
    extra = make_image([{"etc/os": b"base\n"}, {"extra": b"new\n"}])
    shutil.rmtree(src)
    layout(src, [LayoutEntry(extra, ["extra:1"])])
    added = export(work, sources=[src], images=[*IMAGES, "extra:1"])
    assert added.jobs == {
        "layer_tar": 1,
        "image_files": 1,  # its config and top v1 dir: its lower layer's v1 dir equals base's
        "manifest_json": 1,
        "repositories": 1,
        "export": 1,
    }


def test_changed_image_reexports_only_its_parts(tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    src = layout(str(tmp_path / "src"))
    export(work, sources=[src], images=IMAGES)
    new_layers = [*BASE.layers, make_layer({"app/bin": b"app-2\n"})]
    new_app = Image(new_layers, make_config(new_layers))
    shutil.rmtree(src)
    write_oci_layout(
        src,
        [
            LayoutEntry(BASE, ["example.com/base:1.0", "example.com/base:latest"]),
            LayoutEntry(new_app, ["example.com/app:1.0"]),
            LayoutEntry(TOOL, ["tool:2"], compression="none"),
        ],
    )
    changed = export(work, sources=[src], images=IMAGES)
    assert changed.jobs == {
        "layer_tar": 1,
        "image_files": 1,
        "manifest_json": 1,
        "repositories": 1,
        "export": 1,
    }


def test_going_back_to_an_earlier_image_list_rewrites_the_index_files(tmp_path) -> None:
    """Snakemake's metadata is dropped (profile), so a plan file that comes back (named by its
    content, so older than the outputs made in between) must still re-run its jobs."""
    work = str(tmp_path / "work")
    os.makedirs(work)
    src = layout(str(tmp_path / "src"))
    export(work, sources=[src], images=IMAGES)
    first = sha256_file(archive(work))
    fewer = export(work, sources=[src], images=IMAGES[:2])
    assert fewer.jobs["manifest_json"] == 1 and fewer.jobs["repositories"] == 1, fewer.jobs
    assert sha256_file(archive(work)) != first
    again = export(work, sources=[src], images=IMAGES)
    assert again.jobs["manifest_json"] == 1 and again.jobs["repositories"] == 1, again.jobs
    assert again.jobs["layer_tar"] == 0 and again.jobs["image_files"] == 0, again.jobs
    assert sha256_file(archive(work)) == first


def test_cluster_generic_executor_gives_the_same_bytes(sources: str, tmp_path) -> None:
    local = str(tmp_path / "local")
    cluster = str(tmp_path / "cluster")
    os.makedirs(local)
    os.makedirs(cluster)
    export(local, sources=[sources], images=IMAGES)
    submit = os.path.join(cluster, "submit.sh")
    with open(submit, "w") as handle:
        # each job a separate process, as a batch system would start it
        handle.write('#!/bin/bash\nsetsid bash "$1" > "$1.out" 2>&1 < /dev/null &\necho $!\n')
    os.chmod(submit, 0o755)
    run = export(
        cluster,
        "--executor",
        "cluster-generic",
        "--cluster-generic-submit-cmd",
        submit,
        "--jobs",
        "4",
        "--latency-wait",
        "30",
        sources=[sources],
        images=IMAGES,
    )
    assert run.jobs["layer_tar"] == 4
    assert sha256_file(archive(cluster)) == sha256_file(archive(local))


def test_runs_from_any_directory_with_relative_paths(tmp_path) -> None:
    work = tmp_path / "work"
    layout(str(work / "in" / "layout"))
    config = write_config(str(work), sources=["in/layout"], images=["tool:2"], output="out/x.tar", build_dir="b")
    run = snakemake(str(work), configfile=config, cwd="/")
    assert run.returncode == 0, run.output
    assert os.path.isfile(work / "out" / "x.tar")
    assert os.path.isdir(work / "b" / "layers")


def test_from_docker_archive_and_layout_together(tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    src = layout(str(tmp_path / "src"))
    legacy = write_docker_archive(str(tmp_path / "legacy.tar"), [(make_image([{"z": b"z"}]), ["zed:1"])])
    export(work, sources=[src, legacy], images=["zed:1", "tool:2"])
    with tarfile.open(archive(work)) as result:
        manifest = json.load(result.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert [m["RepoTags"] for m in manifest] == [["zed:1"], ["tool:2"]]


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("tarexport: error:")]
    assert lines, output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"images": ["tool:2"], "formta": "docker"}, "config key (top level): unknown key ('formta' was unexpected)"),
        ({"images": ["tool:2"], "format": "tgz"}, "config key format: 'tgz' is not one of ['docker', 'oci']"),
        (
            {"images": ["tool:2"], "layers": "keep"},
            "config key layers: `keep` needs format: oci (format docker stores uncompressed layer.tar)",
        ),
        (
            {"images": ["tool:2"], "compression": "xz"},
            "config key compression: 'xz' is not one of ['none', 'gzip', 'zstd']",
        ),
        ({"images": [3]}, "config key images[0]: 3 is not of type 'string'"),
        ({"images": []}, "config key images: [] should be non-empty"),
        ({"images": ["nothere:1"]}, "no such image: nothere:1 (not found in any source)"),
        ({"images": ["UPPER:1"]}, "invalid reference 'UPPER:1': repository name must be lowercase"),
        ({"images": ["tool:2"], "sources": ["missing-dir"]}, "source missing-dir: does not exist"),
    ],
)
def test_user_mistakes_give_one_line(sources: str, tmp_path, config: dict, expected: str) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    run = snakemake(work, configfile=write_config(work, **{"sources": [sources], **config}))
    assert run.returncode != 0
    assert one_line_error(run.output) == f"tarexport: error: {expected}"
    assert not os.path.exists(archive(work))


def test_tag_in_two_sources_with_different_images_is_an_error(sources: str, tmp_path) -> None:
    work = str(tmp_path / "work")
    other = write_oci_layout(str(tmp_path / "other"), [LayoutEntry(make_image([{"q": b"q"}]), ["tool:2"])])
    os.makedirs(work)
    run = snakemake(work, configfile=write_config(work, sources=[sources, other], images=["tool:2"]))
    assert run.returncode != 0
    assert "tag tool:2 names" in one_line_error(run.output)


def test_corrupt_layer_fails_without_archive_then_recovers(tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    src = layout(str(tmp_path / "src"))
    blob_dir = os.path.join(src, "blobs", "sha256")
    tool_layer = TOOL.layers[0]  # stored uncompressed
    victim = os.path.join(blob_dir, sha(tool_layer).split(":")[1])
    with open(victim, "rb") as handle:
        original = handle.read()
    with open(victim, "wb") as handle:
        handle.write(original[:-1] + b"\x01")
    run = snakemake(work, configfile=write_config(work, sources=[src], images=["tool:2"]))
    assert run.returncode != 0
    line = one_line_error(run.output)
    assert "layer blob has digest sha256:" in line and f"expected {sha(tool_layer)}" in line
    assert line.startswith("tarexport: error: image tool:2, source ")
    assert "blobs/sha256/" in line and str(os.path.basename(src)) in line
    assert not os.path.exists(archive(work))
    assert not os.path.exists(os.path.join(work, "build", "layers", sha(tool_layer).split(":")[1] + ".tar"))
    with open(victim, "wb") as handle:
        handle.write(original)
    export(work, sources=[src], images=["tool:2"])
    assert os.path.isfile(archive(work))


def test_small_uncompressed_layout_blobs_are_stored_by_the_shell_job(sources: str, tmp_path) -> None:
    """No Python for them: the command is the shell's, and its record is the one Python writes."""
    work = str(tmp_path)
    config = write_config(work, sources=[sources], images=IMAGES)
    planned = snakemake(work, "-n", "-p", configfile=config)
    by_shell = set(
        re.findall(r"^Shell command: \. \S+; tarexport_small \S+ ([0-9a-f]{64}) ", planned.output, re.MULTILINE)
    )
    tool_only = {sha(layer)[7:] for layer in TOOL.layers} - {sha(layer)[7:] for layer in BASE.layers}
    assert tool_only and tool_only <= by_shell  # TOOL's own layers are stored uncompressed in the layout
    assert snakemake(work, configfile=config).returncode == 0
    for diff in by_shell:
        stored = os.path.join(work, "build", "layers", diff + ".tar")
        with open(stored + ".check") as handle:
            assert handle.read() == f'{{"size": {os.path.getsize(stored)}, "sha256": "{diff}"}}'
        assert sha256_file(stored) == diff


def test_a_corrupted_small_blob_fails_through_the_shell_job_with_one_line(tmp_path) -> None:
    """The shell job's digest check fails: its link is removed and the Python job names the blob."""
    src = write_oci_layout(str(tmp_path / "src"), [LayoutEntry(TOOL, ["tool:2"], compression="none")])
    blob = os.path.join(src, "blobs", "sha256", sha(TOOL.layers[0])[7:])
    with open(blob, "r+b") as handle:  # same size, still a tar header: only the digest tells
        handle.seek(os.path.getsize(blob) - 1500)
        handle.write(b"X")
    work = str(tmp_path / "work")
    os.makedirs(work)
    config = write_config(work, sources=[src], images=["tool:2"])
    assert re.search(
        r"Shell command: \. \S+; tarexport_small " + blob, snakemake(work, "-n", "-p", configfile=config).output
    )
    run = snakemake(work, configfile=config)
    lines = [line for line in run.output.splitlines() if line.startswith("tarexport: error:")]
    assert run.returncode != 0 and lines, run.output[-3000:]
    assert "layer blob has digest" in lines[0] and "tool:2" in lines[0], lines[0]
    assert not os.path.exists(os.path.join(work, "build", "layers", sha(TOOL.layers[0])[7:] + ".tar"))
    assert os.stat(blob).st_nlink == 1
    assert not os.path.exists(archive(work))


def test_docker25_archive_source_gives_the_same_archive(tmp_path) -> None:
    """The OCI-layout variant of docker save (Docker 25+) is read like the legacy one."""
    images = [(BASE, ["example.com/base:1.0"]), (TOOL, ["tool:2"])]
    modern = write_docker25_archive(str(tmp_path / "modern.tar"), images, str(tmp_path))
    legacy = write_docker_archive(str(tmp_path / "legacy.tar"), images)
    results = []
    for source in (modern, legacy):
        work = str(tmp_path / os.path.basename(source).replace(".tar", ""))
        os.makedirs(work)
        export(work, sources=[source], images=["example.com/base:1.0", "tool:2"])
        results.append(sha256_file(archive(work)))
    assert results[0] == results[1]


def test_a_docker25_save_of_an_image_by_id_alone_is_read_from_manifest_json(tmp_path) -> None:
    """Docker 25+ saving only untagged images writes index.json with "manifests": null."""
    images = [(BASE, []), (TOOL, [])]
    source = write_docker25_archive(str(tmp_path / "by-id.tar"), images, str(tmp_path))
    with tarfile.open(source) as saved:
        assert json.load(saved.extractfile("index.json"))["manifests"] is None  # type: ignore[arg-type]
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[source], images=[BASE.image_id, TOOL.image_id[7:19]])
    with tarfile.open(archive(work)) as exported:
        manifest = json.load(exported.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert [entry["Config"] for entry in manifest] == [BASE.image_id[7:] + ".json", TOOL.image_id[7:] + ".json"]
    assert [entry["RepoTags"] for entry in manifest] == [None, None]
    # a directory layout still needs its manifests list: it has no manifest.json to fall back on
    layout = str(tmp_path / "docker25-layout")
    os.unlink(os.path.join(layout, "manifest.json"))
    run = snakemake(work, configfile=write_config(work, sources=[layout], images=[BASE.image_id]))
    assert run.returncode != 0 and "index.json has no manifests list" in run.output


def test_a_legacy_config_whose_name_is_not_a_digest_is_accepted(tmp_path) -> None:
    """Some writers name the config `config.json`: no digest is claimed, none is checked."""
    named = write_docker_archive(str(tmp_path / "named.tar"), [(TOOL, ["tool:2"])])
    plain = str(tmp_path / "plain.tar")
    with tarfile.open(named) as original, tarfile.open(plain, "w", format=tarfile.PAX_FORMAT) as renamed:
        manifest = json.load(original.extractfile("manifest.json"))  # type: ignore[arg-type]
        config_name = manifest[0]["Config"]
        manifest[0]["Config"] = "config.json"
        for member in original.getmembers():
            data = original.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if member.name == "manifest.json":
                data = json.dumps(manifest).encode()
                member.size = len(data)
            elif member.name == config_name:
                member.name = "config.json"
            renamed.addfile(member, io.BytesIO(data) if member.isfile() else None)
    results = []
    for source in (named, plain):
        work = str(tmp_path / os.path.basename(source)[:-4])
        os.makedirs(work)
        export(work, sources=[source], images=["tool:2"])
        results.append(sha256_file(archive(work)))
    assert results[0] == results[1]


def test_uncompressed_layout_blobs_are_hard_linked_unless_asked_not_to(sources: str, tmp_path) -> None:
    linked, copied = str(tmp_path / "linked"), str(tmp_path / "copied")
    os.makedirs(linked)
    os.makedirs(copied)
    export(linked, sources=[sources], images=IMAGES)
    export(copied, sources=[sources], images=IMAGES, link_layers=False)
    assert sha256_file(archive(linked)) == sha256_file(archive(copied))

    blobs = os.path.join(sources, "blobs", "sha256")

    def linked_layers(work: str) -> set[str]:
        """Stored layers that are the layout's own blob file (uncompressed: blob digest = diff_id)."""
        stored = os.path.join(work, "build", "layers")
        return {
            name[: -len(".tar")]
            for name in os.listdir(stored)
            if name.endswith(".tar")
            and os.path.exists(os.path.join(blobs, name[: -len(".tar")]))
            and os.path.samefile(os.path.join(stored, name), os.path.join(blobs, name[: -len(".tar")]))
        }

    def diffs(image: Image) -> set[str]:
        return {sha(layer).split(":")[1] for layer in image.layers}

    tool_only = diffs(TOOL) - diffs(BASE)
    assert tool_only and tool_only <= linked_layers(linked)  # TOOL's own layers are stored uncompressed in the layout
    assert linked_layers(copied) == set()
