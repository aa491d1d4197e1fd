"""Release builds: the lock file (update, frozen, `snakemake lock`) and the provenance
statement, against a real registry whose tag moves between builds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import jsonschema
import pytest

from tests.engines import Containerd, DockerEngine, Registry, require
from tests.imagefactory import (
    Image,
    LayoutEntry,
    make_config,
    make_layer,
    platform_image,
    write_multiplatform_layout,
    write_oci_layout,
)
from tests.workflowrun import ROOT, SNAKEFILE, Run, export, run_measured, sha256_file, snakemake, write_config

BASE = make_layer({"base": os.urandom(40_000)})
OLD = Image([BASE, make_layer({"app": b"release 1.0"})], b"")
OLD.config = make_config(OLD.layers, config={"Cmd": ["old"]})
NEW = Image([BASE, make_layer({"app": b"release 1.1"})], b"")
NEW.config = make_config(NEW.layers, config={"Cmd": ["new"]})
TOOL = Image([make_layer({"tool": b"helper"})], b"")
TOOL.config = make_config(TOOL.layers, config={"Cmd": ["tool"]})


def schema(name: str) -> jsonschema.Draft202012Validator:
    with open(os.path.join(ROOT, "schemas", name)) as handle:
        return jsonschema.Draft202012Validator(json.load(handle))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """`team/app:1` names OLD (moved to NEW by the test that needs it); `team/tool:1` TOOL."""
    require("docker-registry")
    require("skopeo")
    push = write_oci_layout(
        str(tmp_path_factory.mktemp("push") / "layout"),
        [LayoutEntry(OLD, ["old"]), LayoutEntry(NEW, ["new"]), LayoutEntry(TOOL, ["tool"])],
    )
    server = Registry()
    server.push(push, "old", "team/app:1")
    server.push(push, "tool", "team/tool:1")
    server.layout = push  # type: ignore[attr-defined]
    yield server
    server.stop()


def config(registry: Registry, **more: object) -> dict[str, object]:
    return {
        "sources": [{"type": "registry", "url": registry.url, "insecure": True}],
        "images": [f"{registry.host}/team/app:1", f"{registry.host}/team/tool:1"],
        "lockfile": "release.lock",
        **more,
    }


def published(work: str) -> dict[str, bytes]:
    """The archive and the files beside it, by suffix."""
    results = os.path.join(work, "results")
    found = {}
    for name in sorted(os.listdir(results)):
        with open(os.path.join(results, name), "rb") as handle:
            found[name.removeprefix("images.tar")] = handle.read()
    return found


def exported_config(archive: str, tag: str) -> bytes:
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        (entry,) = [e for e in manifest if tag in (e["RepoTags"] or [])]
        return tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]


def error_lines(run: Run) -> list[str]:
    return [line for line in run.output.splitlines() if "tarexport: error" in line]


@pytest.mark.engines
def test_a_moved_tag_updates_the_lock_and_frozen_rebuilds_the_release(registry, tmp_path) -> None:
    first, later, rebuild = (str(tmp_path / name) for name in ("first", "later", "rebuild"))
    for work in (first, later, rebuild):
        os.makedirs(work)
    export(first, **config(registry))
    with open(os.path.join(first, "release.lock")) as handle:
        lock = json.load(handle)
    schema("lock.schema.json").validate(lock)
    assert [entry["request"] for entry in lock["requests"]] == config(registry)["images"]
    (app,) = lock["requests"][0]["images"]
    assert app["imageId"] == OLD.image_id and app["names"] == [f"{registry.host}/team/app:1"]
    assert [layer["diffId"] for layer in app["layers"]] == OLD.diff_ids
    assert app["platform"] == "linux/amd64" and app["source"] == registry.url
    assert app["manifestDigest"].startswith("sha256:")
    released = published(first)

    # an unchanged release leaves the lock untouched (not even rewritten)
    before = os.stat(os.path.join(first, "release.lock")).st_mtime_ns
    again = export(first, **config(registry))
    assert os.stat(os.path.join(first, "release.lock")).st_mtime_ns == before
    assert again.nothing_to_do, again.output[-2000:]

    registry.push(registry.layout, "new", "team/app:1")  # the tag moves
    try:
        shutil.copy(os.path.join(first, "release.lock"), os.path.join(later, "release.lock"))
        export(later, **config(registry))  # update: the lock follows the tag
        with open(os.path.join(later, "release.lock")) as handle:
            moved = json.load(handle)
        assert moved["requests"][0]["images"][0]["imageId"] == NEW.image_id
        assert moved["requests"][1] == lock["requests"][1]
        archive = os.path.join(later, "results", "images.tar")
        assert exported_config(archive, f"{registry.host}/team/app:1") == NEW.config

        # frozen with the first lock: the first release, byte for byte, though the tag moved
        shutil.copy(os.path.join(first, "release.lock"), os.path.join(rebuild, "release.lock"))
        export(rebuild, **config(registry, lock_mode="frozen"))
        rebuilt = published(rebuild)
        for suffix in ("", ".sha256", ".images.txt"):
            assert rebuilt[suffix] == released[suffix], suffix
        with open(os.path.join(rebuild, "release.lock")) as handle:
            assert json.load(handle) == lock  # never written in frozen mode
    finally:
        registry.push(registry.layout, "old", "team/app:1")


@pytest.mark.engines
def test_frozen_refuses_a_name_the_lock_does_not_hold(registry, tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, **config(registry))
    assert set(published(work)) == {"", ".sha256", ".images.txt", ".provenance.json"}
    more = config(registry, lock_mode="frozen")
    more["images"] = [*more["images"], f"{registry.host}/team/extra:1"]  # type: ignore[list-item]
    run = snakemake(work, configfile=write_config(work, **more))
    assert run.returncode != 0
    (line,) = error_lines(run)
    assert f"{registry.host}/team/extra:1 is not in the lock file release.lock" in line
    assert "Traceback" not in run.output
    assert os.listdir(os.path.join(work, "results")) == []  # no archive, no stale side files


@pytest.mark.engines
def test_frozen_refuses_a_locked_image_no_source_holds(registry, tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, **config(registry))
    layout = write_oci_layout(str(tmp_path / "other"), [LayoutEntry(NEW, ["docker.io/library/app:1"])])
    run = snakemake(work, configfile=write_config(work, **config(registry, lock_mode="frozen", sources=[layout])))
    assert run.returncode != 0
    (line,) = error_lines(run)
    assert f"is locked as image {OLD.image_id}" in line and "no source holds it" in line
    assert os.listdir(os.path.join(work, "results")) == []


@pytest.mark.engines
def test_snakemake_lock_writes_the_lock_alone(registry, tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    configfile = write_config(work, **config(registry))
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "lock", "--configfile", configfile]
    run = run_measured(command, work, 300)
    assert run.returncode == 0, run.output[-3000:]
    with open(os.path.join(work, "release.lock")) as handle:
        schema("lock.schema.json").validate(json.load(handle))
    assert not os.path.exists(os.path.join(work, "results"))
    assert not os.path.exists(os.path.join(work, "build", "layers"))  # no layer downloaded
    # and in frozen mode it refuses, in one line
    configfile = write_config(work, **config(registry, lock_mode="frozen"))
    command[-1] = configfile
    run = run_measured(command, work, 300)
    assert run.returncode != 0 and "lock_mode is frozen" in run.output


@pytest.mark.engines
@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_provenance_names_the_archive_the_configuration_and_every_image(registry, tmp_path, fmt: str) -> None:
    works = [str(tmp_path / "a"), str(tmp_path / "b" / "elsewhere")]
    for work in works:
        os.makedirs(work)
        export(work, **config(registry, format=fmt, compression="gzip", compressor_versions="any"))
    files = published(works[0])
    assert files == published(works[1])  # byte-identical across work directories
    statement = json.loads(files[".provenance.json"])
    schema("provenance.schema.json").validate(statement)
    archive = os.path.join(works[0], "results", "images.tar")
    assert statement["subject"] == [{"name": "images.tar", "digest": {"sha256": sha256_file(archive)}}]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["images"] == config(registry)["images"]
    assert definition["externalParameters"]["format"] == fmt
    listed = [line.rsplit("@", 1) for line in files[".images.txt"].decode().splitlines()]
    images = [d for d in definition["resolvedDependencies"] if d["annotations"].get("kind") == "image"]
    assert [(d["name"], "sha256:" + d["digest"]["sha256"]) for d in images] == [tuple(pair) for pair in listed]
    assert {d["annotations"]["imageId"] for d in images} == {OLD.image_id, TOOL.image_id}
    assert [d["uri"] for d in definition["resolvedDependencies"] if "uri" in d] == [registry.url]
    builder = statement["predicate"]["runDetails"]["builder"]
    assert builder["version"]["tarexport"] and builder["version"]["snakemake"].startswith("9.")
    assert builder["version"]["zlib"]  # the compression library that decided the bytes
    assert "metadata" not in statement["predicate"]["runDetails"]  # no time stamp without SOURCE_DATE_EPOCH


@pytest.mark.engines
def test_source_date_epoch_dates_the_provenance(registry, tmp_path) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    configfile = write_config(work, **config(registry))
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export", "--configfile", configfile]
    environment = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    done = subprocess.run(command, cwd=work, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    statement = json.loads(published(work)[".provenance.json"])
    assert statement["predicate"]["runDetails"]["metadata"] == {"finishedOn": "2023-11-14T22:13:20Z"}


@pytest.mark.engines
def test_a_receiver_checks_the_image_list_against_the_loaders(registry, tmp_path) -> None:
    """The README's check: the loaders show each name with the digest the list gives."""
    require("dockerd")
    require("containerd")
    lists = {}
    for fmt in ("docker", "oci"):
        work = str(tmp_path / fmt)
        os.makedirs(work)
        export(work, **config(registry, format=fmt))
        lists[fmt] = set(published(work)[".images.txt"].decode().splitlines())
    docker = DockerEngine()
    try:
        docker.docker("load", "-i", str(tmp_path / "docker" / "results" / "images.tar"))
        shown = docker.docker("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}}@{{.ID}}")
        assert set(shown.split()) == lists["docker"]
    finally:
        docker.stop()
    containerd = Containerd()
    try:
        containerd.ctr("images", "import", str(tmp_path / "oci" / "results" / "images.tar"))
        assert {f"{name}@{digest}" for name, digest in containerd.images().items()} == lists["oci"]
    finally:
        containerd.stop()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "does not exist; write it with lock_mode: update"),
        ("{not json", "cannot be read"),
        ('{"lockVersion": 1}', "is not a tarexport lock ((top level): 'tarexport' is a required property)"),
    ],
)
def test_a_lock_that_cannot_be_used_is_one_line(tmp_path, content: str | None, says: str) -> None:
    from tarexport.errors import TarexportError
    from tarexport.lockfile import read_lock

    path = tmp_path / "release.lock"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TarexportError) as caught:
        read_lock(str(path), "release.lock", os.path.join(ROOT, "schemas", "lock.schema.json"))
    assert f"lock file release.lock {says}" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.unit
def test_a_lock_for_another_platform_is_refused() -> None:
    from tarexport.errors import TarexportError
    from tarexport.lockfile import Lock, check_settings

    lock = Lock("release.lock", "linux/arm64", "chosen", {})
    check_settings(lock, "linux/arm64", "chosen")
    with pytest.raises(TarexportError, match=r"written for platform linux/arm64 .* asks for linux/amd64"):
        check_settings(lock, "linux/amd64", "chosen")


@pytest.mark.engines
def test_the_lock_is_rewritten_by_its_content_not_its_time(registry, tmp_path) -> None:
    """A committed lock checked out anew (a new mtime, the same bytes) is left alone; a lock
    that says something else is rewritten though it is newer than anything the plan made."""
    first, clone = str(tmp_path / "first"), str(tmp_path / "clone")
    os.makedirs(first)
    os.makedirs(clone)
    export(first, **config(registry))
    with open(os.path.join(first, "release.lock"), "rb") as handle:
        locked = handle.read()
    shutil.copy(os.path.join(first, "release.lock"), os.path.join(clone, "release.lock"))
    before = os.stat(os.path.join(clone, "release.lock")).st_mtime_ns
    run = export(clone, **config(registry))
    assert run.jobs["export"] == 1 and "lock" not in run.jobs, run.jobs
    assert os.stat(os.path.join(clone, "release.lock")).st_mtime_ns == before
    # another branch's lock, checked out after the plan was made: rewritten to what resolves
    other = json.loads(locked)
    other["requests"] = other["requests"][:1]
    with open(os.path.join(first, "release.lock"), "w") as handle:
        json.dump(other, handle)
    run = export(first, **config(registry))
    assert run.jobs["lock"] == 1, run.jobs
    with open(os.path.join(first, "release.lock"), "rb") as handle:
        assert handle.read() == locked


@pytest.mark.workflow
def test_frozen_needs_a_lock_file(tmp_path) -> None:
    work = str(tmp_path)
    run = snakemake(work, configfile=write_config(work, sources=["x"], images=["a:1"], lock_mode="frozen"))
    (line,) = error_lines(run)
    assert line == "tarexport: error: config key lock_mode: frozen needs a lock file to read; set lockfile: PATH"


@pytest.mark.workflow
def test_frozen_keeps_the_locked_index_of_each_tag(tmp_path) -> None:
    """`platforms: all`: each tag's index is locked; frozen exports it again, and refuses when
    no source holds it any more (rather than exporting the tag without its index)."""
    images = {f"linux/{arch}": platform_image(arch) for arch in ("amd64", "arm64")}
    multi = write_multiplatform_layout(str(tmp_path / "multi"), images, "example.com/multi:1")
    settings = {"images": ["example.com/multi:1"], "format": "oci", "platforms": "all", "lockfile": "release.lock"}
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[multi], **settings)
    with open(os.path.join(work, "release.lock")) as handle:
        (image,) = json.load(handle)["requests"][0]["images"]
    with open(os.path.join(multi, "index.json")) as handle:
        (top,) = json.load(handle)["manifests"]
    assert image["indexDigests"] == {"example.com/multi:1": top["digest"]}
    released = published(work)[""]
    os.unlink(os.path.join(work, "results", "images.tar"))
    export(work, sources=[multi], **settings, lock_mode="frozen")
    assert published(work)[""] == released
    # the same amd64 image, no longer in that index: refused in one line
    single = write_oci_layout(str(tmp_path / "single"), [LayoutEntry(images["linux/amd64"], ["example.com/multi:1"])])
    run = snakemake(work, configfile=write_config(work, sources=[single], **settings, lock_mode="frozen"))
    (line,) = error_lines(run)
    assert f"example.com/multi:1 is locked as index {top['digest']}" in line and "no source holds it" in line
