"""Snakemake remote storage on a real S3 server (SeaweedFS on 127.0.0.1): every build output
and the archive live in a bucket, and a second runner with nothing local reuses the layers
and configs a first one made, as ephemeral CI runners share a cache."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import sys
import time

import pytest

from tests.engines import Registry, SeaweedS3, require
from tests.imagefactory import (
    LayoutEntry,
    make_image,
    platform_image,
    write_docker_archive,
    write_multiplatform_layout,
    write_oci_layout,
)
from tests.workflowrun import SNAKEFILE, Run, export, run_measured, snakemake, snakemake_log, write_config

BUCKET = "cache"
ONE = make_image([{"shared": b"s" * 50_000}, {"one": b"1"}])
TWO = make_image([{"shared": b"s" * 50_000}, {"two": b"2"}])
THREE = make_image([{"shared": b"s" * 50_000}, {"three": b"3"}])
ARCHIVE_FILES = ("images.tar", "images.tar.sha256", "images.tar.images.txt", "images.tar.provenance.json")


@pytest.fixture(scope="module")
def s3():
    require("weed")
    server = SeaweedS3()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> str:
    entries = [LayoutEntry(image, [f"docker.io/library/{name}:1"]) for name, image in
               (("one", ONE), ("two", TWO), ("three", THREE))]  # fmt: skip
    return write_oci_layout(str(tmp_path_factory.mktemp("src") / "layout"), entries)


def export_to_storage(work: str, s3: SeaweedS3, prefix: str, *more: str, **config: object) -> Run:
    """`snakemake export` with every output under s3://cache/<prefix> (none: outputs local)."""
    os.makedirs(work, exist_ok=True)
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export", *more]
    command += ["--configfile", write_config(work, **config), *s3.snakemake_options(prefix and f"{BUCKET}/{prefix}")]
    started = time.time()
    run = run_measured(command, work, 600)
    run.log = snakemake_log(work, started)
    assert run.returncode == 0, run.output[-4000:]
    return run


def local_files(work: str) -> dict[str, bytes]:
    found = {}
    for name in ARCHIVE_FILES:
        with open(os.path.join(work, "results", name), "rb") as handle:
            found[name] = handle.read()
    return found


def stored_files(s3: SeaweedS3, prefix: str) -> dict[str, bytes]:
    return {name: s3.get(BUCKET, f"{prefix}/results/{name}") for name in ARCHIVE_FILES}


@pytest.mark.engines
@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_the_archive_in_storage_is_a_local_runs_bytes(s3, layout, tmp_path, fmt: str) -> None:
    config = {"sources": [layout], "images": ["one:1", "two:1"], "format": fmt}
    os.makedirs(tmp_path / "local")
    export(str(tmp_path / "local"), **config)
    prefix = f"same-bytes-{fmt}"
    run = export_to_storage(str(tmp_path / "runner"), s3, prefix, **config)
    assert run.jobs["layer_tar"] == 3  # one, two, and the layer they share, stored once
    stored = stored_files(s3, prefix)
    assert stored == local_files(str(tmp_path / "local"))
    assert not os.path.exists(tmp_path / "runner" / "results" / "images.tar")  # in the bucket only
    # the run's summary (for --report) sizes the staged build files, as a local run its own
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/build/report/")
    (summary,) = [item["Key"] for item in listed["Contents"]]
    (local_summary,) = glob.glob(str(tmp_path / "local" / "build" / "report" / "*.html"))
    with open(local_summary, encoding="utf-8") as handle:
        expected = re.findall(r"\((\d+) bytes\)", handle.read())
    assert re.findall(r"\((\d+) bytes\)", s3.get(BUCKET, summary).decode()) == expected


@pytest.mark.engines
def test_a_multi_platform_index_with_attestations_in_storage(s3, tmp_path) -> None:
    images = {f"linux/{arch}": platform_image(arch) for arch in ("amd64", "arm64")}
    source = write_multiplatform_layout(str(tmp_path / "multi"), images, "example.com/multi:1", attestations=True)
    config = {"sources": [source], "images": ["example.com/multi:1"], "format": "oci", "platforms": "all"}
    os.makedirs(tmp_path / "local")
    export(str(tmp_path / "local"), **config)
    export_to_storage(str(tmp_path / "runner"), s3, "multi", **config)
    assert stored_files(s3, "multi") == local_files(str(tmp_path / "local"))


@pytest.mark.engines
def test_a_second_runner_reuses_the_first_ones_layers_and_configs(s3, layout, tmp_path) -> None:
    """Two ephemeral runners: fresh work directories (no .snakemake/, no build/), one prefix."""
    config = {"sources": [layout], "images": ["one:1", "two:1"]}
    first = export_to_storage(str(tmp_path / "first"), s3, "shared", **config)
    assert first.jobs["layer_tar"] == 3 and first.jobs["image_files"] == 2
    made = s3.get(BUCKET, "shared/results/images.tar")

    second = export_to_storage(str(tmp_path / "second"), s3, "shared", **config)
    assert second.jobs["layer_tar"] == 0 and second.jobs["image_files"] == 0, second.jobs
    assert second.jobs["manifest_json"] == 1 and second.jobs["export"] == 1  # (their names say no content)
    assert s3.get(BUCKET, "shared/results/images.tar") == made

    # one image more: only its own layer and its own small files are made
    more = {**config, "images": ["one:1", "two:1", "three:1"]}
    third = export_to_storage(str(tmp_path / "third"), s3, "shared", **more)
    assert third.jobs["layer_tar"] == 1 and third.jobs["image_files"] == 1, third.jobs
    archive = s3.get(BUCKET, "shared/results/images.tar")
    listed = s3.get(BUCKET, "shared/results/images.tar.sha256").decode()
    assert listed.split()[0] == hashlib.sha256(archive).hexdigest()


@pytest.mark.engines
def test_a_layer_object_damaged_in_the_bucket_is_made_again_and_put_back(s3, layout, tmp_path) -> None:
    config = {"sources": [layout], "images": ["one:1", "two:1"]}
    export_to_storage(str(tmp_path / "first"), s3, "damaged", **config)
    made = s3.get(BUCKET, "damaged/results/images.tar")
    key = f"damaged/build/layers/{ONE.diff_ids[1].split(':')[1]}.tar"
    layer = s3.get(BUCKET, key)
    damaged = bytes([layer[0] ^ 1]) + layer[1:]  # same size, a changed first block
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=damaged)

    second = export_to_storage(str(tmp_path / "second"), s3, "damaged", **config)
    assert second.jobs["layer_tar"] == 0, second.jobs  # found by the assembly's check, not by Snakemake
    stored = key.removeprefix("damaged/")
    # (the assembly names the staged copy it checked)
    assert f"/{stored} changed after it was made; making it again" in second.output
    assert f"tarexport: put {stored}, made again, back into storage" in second.output
    assert s3.get(BUCKET, key) == layer
    assert s3.get(BUCKET, "damaged/results/images.tar") == made

    third = export_to_storage(str(tmp_path / "third"), s3, "damaged", **config)
    assert third.jobs["layer_tar"] == 0 and "making it again" not in third.output
    assert s3.get(BUCKET, "damaged/results/images.tar") == made


@pytest.mark.engines
@pytest.mark.parametrize("failing", ["a layer job", "the planning"])
def test_an_archive_object_from_another_configuration_does_not_survive_a_failed_run(s3, tmp_path, failing: str) -> None:
    """As locally: the stale archive, its side files and its record go before any job runs
    (or when the planning fails); every runner finds the one record of the archive object
    (named by the output as given)."""
    four = make_image([{"shared": b"s" * 50_000}, {"four": b"4" * 2000}])
    entries = [LayoutEntry(image, [f"docker.io/library/{name}:1"]) for name, image in (("one", ONE), ("four", four))]
    layout = write_oci_layout(str(tmp_path / "layout"), entries)
    prefix = f"stale-{failing.split()[-1]}"
    first = export_to_storage(str(tmp_path / "first"), s3, prefix, sources=[layout], images=["one:1"])
    archive = s3.get(BUCKET, f"{prefix}/results/images.tar")
    digest = hashlib.sha256(archive).hexdigest()
    wrote = (
        f"tarexport: wrote s3://{BUCKET}/{prefix}/results/images.tar ({len(archive)} bytes, 1 images, sha256:{digest})"
    )
    assert wrote in first.output

    if failing == "a layer job":
        with open(os.path.join(layout, "index.json"), encoding="utf-8") as handle:
            (manifest,) = [m for m in json.load(handle)["manifests"] if "four" in str(m.get("annotations"))]
        with open(os.path.join(layout, "blobs", "sha256", manifest["digest"][7:]), encoding="utf-8") as handle:
            blob = os.path.join(layout, "blobs", "sha256", json.load(handle)["layers"][-1]["digest"][7:])
        with open(blob, "r+b") as handle:  # four's own layer, damaged: its job fails
            handle.write(b"\0" * 64)
    work = str(tmp_path / "second")
    os.makedirs(work)
    images = ["one:1", "four:1" if failing == "a layer job" else "five:1"]
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export"]
    command += ["--configfile", write_config(work, sources=[layout], images=images)]
    run = run_measured([*command, *s3.snakemake_options(f"{BUCKET}/{prefix}")], work, 600)
    assert run.returncode != 0
    assert "tarexport: removed results/images.tar: made from another configuration" in run.output
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert not [key for key in keys if key.startswith(f"{prefix}/results/")], keys
    assert not [key for key in keys if key.endswith(".plan")], keys


@pytest.mark.engines
def test_jobs_that_share_no_file_system_with_the_host(s3, layout, tmp_path) -> None:
    """`--shared-fs-usage none` (the local executor ignores it): each job a separate process
    started by a batch system that Snakemake asks for job states, seeing only what it stages."""
    config = {"sources": [layout], "images": ["one:1", "two:1"]}
    os.makedirs(tmp_path / "local")
    export(str(tmp_path / "local"), **config)
    states = tmp_path / "states"
    states.mkdir()
    submit, status = tmp_path / "submit.sh", tmp_path / "status.sh"
    submit.write_text(
        "#!/bin/bash\n"
        'id="$(basename "$(mktemp -u)")"\n'
        f"setsid bash -c \"bash '$1' > {states}/$id.out 2>&1 < /dev/null; echo \\$? > {states}/$id.rc\" &\n"
        'echo "$id"\n'
    )
    status.write_text(
        "#!/bin/bash\n"
        f'rc="$(cat {states}/$1.rc 2>/dev/null)"\n'
        'if [ -z "$rc" ]; then echo running; elif [ "$rc" = 0 ]; then echo success; else echo failed; fi\n'
    )
    submit.chmod(0o755)
    status.chmod(0o755)
    cluster = ["--executor", "cluster-generic", "--cluster-generic-submit-cmd", str(submit),
               "--cluster-generic-status-cmd", str(status), "--jobs", "4", "--shared-fs-usage", "none"]  # fmt: skip
    work = str(tmp_path / "runner")
    os.makedirs(work)
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export", *cluster]
    command += ["--configfile", write_config(work, **config), *s3.snakemake_options(f"{BUCKET}/unshared")]
    run = run_measured(command, work, 600)
    assert run.returncode == 0, run.output[-4000:]
    assert len(list(states.glob("*.rc"))) == 3  # the layer jobs, submitted
    assert stored_files(s3, "unshared") == local_files(str(tmp_path / "local"))


@pytest.mark.engines
def test_a_registry_source_in_storage_gives_a_local_runs_bytes(s3, tmp_path) -> None:
    """Registry sources are read over the network by planning and by each layer job, so a
    job on any node reaches them: the archive in storage equals a local run's."""
    require("docker-registry")
    require("skopeo")
    entries = [LayoutEntry(ONE, ["one"]), LayoutEntry(TWO, ["two"])]
    pushed = write_oci_layout(str(tmp_path / "push"), entries)
    server = Registry()
    try:
        server.push(pushed, "one", "app/one:1")
        server.push(pushed, "two", "app/two:1")
        source = {"type": "registry", "url": server.url, "insecure": server.url.startswith("http:")}
        config = {"sources": [source], "images": [f"{server.host}/app/one:1", f"{server.host}/app/two:1"]}
        os.makedirs(tmp_path / "local")
        export(str(tmp_path / "local"), **config)
        run = export_to_storage(str(tmp_path / "runner"), s3, "registry", **config)
    finally:
        server.stop()
    assert run.jobs["layer_tar"] == 3
    assert stored_files(s3, "registry")["images.tar"] == local_files(str(tmp_path / "local"))["images.tar"]


@pytest.fixture(scope="module")
def stored_archive(s3, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A docker-save archive, as a file and as an object in the bucket: (path, URL)."""
    path = write_docker_archive(
        str(tmp_path_factory.mktemp("archive") / "app.tar"), [(ONE, ["app:1"]), (TWO, ["app:2"])]
    )
    with open(path, "rb") as handle:
        s3.client().put_object(Bucket=BUCKET, Key="images/app.tar", Body=handle.read())
    return path, f"s3://{BUCKET}/images/app.tar"


@pytest.mark.engines
@pytest.mark.parametrize("outputs", ["local", "in storage"])
def test_a_source_given_as_a_storage_url_is_fetched_for_the_plan_and_staged_for_its_jobs(
    s3, stored_archive, tmp_path, outputs: str
) -> None:
    path, url = stored_archive
    os.makedirs(tmp_path / "local")
    export(str(tmp_path / "local"), sources=[path], images=["app:1", "app:2"])
    prefix = "" if outputs == "local" else "fetched"
    work = str(tmp_path / "runner")
    run = export_to_storage(work, s3, prefix, sources=[url], images=["app:1", "app:2"])
    assert run.jobs["layer_tar"] == 3, run.jobs
    made = local_files(work) if outputs == "local" else stored_files(s3, prefix)
    expected = local_files(str(tmp_path / "local"))
    assert made["images.tar"] == expected["images.tar"] and made["images.tar.sha256"] == expected["images.tar.sha256"]
    # the source as configured is what the published files name
    sources = json.loads(made["images.tar.provenance.json"])["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert sources[-1]["uri"] == url
    # the plan's copy is where Snakemake stages it: no layer job fetched it again
    assert run.output.count(f"Retrieving from storage: {url}") == 0, run.output[-3000:]
    again = export_to_storage(work, s3, prefix, "--forcerun", "layer_tar", sources=[url], images=["app:1", "app:2"])
    assert again.jobs["layer_tar"] == 3 and f"Retrieving from storage: {url}" not in again.output


@pytest.mark.engines
@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"s3://{BUCKET}/images/missing.tar", "does not exist in storage"),
        (
            "gs://bucket/app.tar",
            "cannot be fetched from storage (No storage provider found for query gs://bucket/app.tar.",
        ),
    ],
)
def test_a_storage_url_that_cannot_be_fetched_is_one_line_before_any_job(s3, tmp_path, url: str, says: str) -> None:
    s3.client().put_object(Bucket=BUCKET, Key="layouts/app/index.json", Body=b"{}")  # an OCI layout's prefix
    work = str(tmp_path)
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export", "-n"]
    command += ["--configfile", write_config(work, sources=[url], images=["app:1"]), *s3.snakemake_options()]
    run = run_measured(command, work, 300)
    assert run.returncode != 0
    (line,) = [line for line in run.output.splitlines() if "tarexport: error" in line]
    assert line.startswith(f"tarexport: error: source {url}: {says}"), line


@pytest.mark.workflow
@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("https://registry.example.com", "is a URL: a registry source is {type: registry, url: ...}"),
    ],
)
def test_a_source_given_as_a_url_is_one_line_before_any_job(tmp_path, path: str, says: str) -> None:
    work = str(tmp_path)
    run = snakemake(work, "-n", configfile=write_config(work, sources=[path], images=["app:1"]))
    assert run.returncode != 0
    (line,) = [line for line in run.output.splitlines() if "tarexport: error" in line]
    assert line.startswith(f"tarexport: error: source {path}: {says}")
