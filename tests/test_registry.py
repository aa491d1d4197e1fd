"""Registry sources against a real registry (CNCF distribution 2.8 on 127.0.0.1):
the same archive as from a layout, each blob downloaded once, auth and TLS."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.engines import Registry, require
from tests.imagefactory import Image, LayoutEntry, compress, make_config, make_layer, sha, write_oci_layout
from tests.workflowrun import export, sha256_file, snakemake, write_config

BASE = make_layer({"base": os.urandom(200_000)})
A = Image([BASE, make_layer({"app": b"a1"})], b"")
A.config = make_config(A.layers, config={"Cmd": ["a"]})
B = Image([BASE, make_layer({"app": b"b1"})], b"")
B.config = make_config(B.layers, config={"Cmd": ["b"]})
C = Image([BASE, make_layer({"app": b"a2"})], b"")
C.config = make_config(C.layers, config={"Cmd": ["a2"]})


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The images to push, named by bare ref names (a, b, c) as skopeo's oci: transport wants."""
    require("docker-registry")
    require("skopeo")
    entries = [LayoutEntry(A, ["a"]), LayoutEntry(B, ["b"]), LayoutEntry(C, ["c"])]
    return write_oci_layout(str(tmp_path_factory.mktemp("push") / "layout"), entries)


@pytest.fixture
def registry(layout: str):
    server = Registry()
    server.push(layout, "a", "bench/a:1")
    server.push(layout, "b", "bench/b:1")
    yield server
    server.stop()


def blob(layer: bytes) -> str:
    """The digest of a layer as pushed: gzip-compressed by the test layout, kept by skopeo."""
    return sha(compress(layer, "gzip"))


def archive(work: str) -> str:
    return os.path.join(work, "results", "images.tar")


def source_of(server: Registry, **extra: object) -> dict[str, object]:
    return {"type": "registry", "url": server.url, "insecure": server.url.startswith("http:"), **extra}


def test_same_archive_as_from_a_layout(registry: Registry, tmp_path) -> None:
    names = [f"{registry.host}/bench/a:1", f"{registry.host}/bench/b:1"]
    from_registry = str(tmp_path / "registry")
    from_layout = str(tmp_path / "layout")
    os.makedirs(from_registry)
    os.makedirs(from_layout)
    export(from_registry, sources=[source_of(registry)], images=names)
    local = write_oci_layout(str(tmp_path / "local"), [LayoutEntry(A, [names[0]]), LayoutEntry(B, [names[1]])])
    export(from_layout, sources=[local], images=names)
    assert sha256_file(archive(from_registry)) == sha256_file(archive(from_layout))
    for fmt in ("oci",):  # the OCI layout too, uncompressed layers
        work = str(tmp_path / fmt)
        os.makedirs(work)
        export(work, sources=[source_of(registry)], images=names, format=fmt)


def test_each_blob_is_downloaded_once(registry: Registry, layout: str, tmp_path) -> None:
    work = str(tmp_path)
    names = [f"{registry.host}/bench/a:1", f"{registry.host}/bench/b:1"]
    export(work, sources=[source_of(registry)], images=names)
    first = registry.blob_downloads()
    # each config and layer blob once; the shared base layer once for both images
    assert sorted(first) == sorted({A.image_id, B.image_id, blob(BASE), blob(A.layers[1]), blob(B.layers[1])})

    again = export(work, sources=[source_of(registry)], images=names)
    assert registry.blob_downloads() == first and again.nothing_to_do

    registry.push(layout, "c", "bench/a:1")  # the tag moves
    moved = export(work, sources=[source_of(registry)], images=names)
    new = registry.blob_downloads()[len(first) :]
    assert sorted(new) == sorted([C.image_id, blob(C.layers[1])])  # its config and its new layer only
    assert moved.jobs["layer_tar"] == 1


def test_digest_reference(registry: Registry, tmp_path) -> None:
    digest = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{registry.host}/bench/b:1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    work = str(tmp_path)
    export(work, sources=[source_of(registry)], images=[f"{registry.host}/bench/b@{digest}"])
    import json
    import tarfile

    with tarfile.open(archive(work)) as result:
        manifest = json.load(result.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] is None and manifest[0]["Config"] == B.image_id.split(":")[1] + ".json"


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("tarexport: error:")]
    assert lines and "Traceback" not in output, output[-3000:]
    return lines[0]


def test_plain_http_needs_insecure(registry: Registry, tmp_path) -> None:
    work = str(tmp_path)
    config = write_config(
        work, sources=[{"type": "registry", "url": registry.url}], images=[f"{registry.host}/bench/a:1"]
    )
    run = snakemake(work, configfile=config)
    assert run.returncode != 0 and "plain http needs `insecure: true`" in one_line(run.output)


def test_basic_auth(layout: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cret-pa55word"
    server = Registry(user=("alice", secret))
    try:
        server.push(layout, "a", "bench/a:1", user=("alice", secret))
        source = source_of(server, username_env="TX_USER", password_env="TX_PASSWORD")
        name = f"{server.host}/bench/a:1"
        monkeypatch.setenv("TX_USER", "alice")
        monkeypatch.setenv("TX_PASSWORD", "wrong")
        bad = str(tmp_path / "bad")
        os.makedirs(bad)
        run = snakemake(bad, configfile=write_config(bad, sources=[source], images=[name]))
        assert run.returncode != 0 and "401" in one_line(run.output)
        assert not os.path.exists(archive(bad))
        monkeypatch.setenv("TX_PASSWORD", secret)
        good = str(tmp_path / "good")
        os.makedirs(good)
        run = export(good, sources=[source], images=[name])
        assert secret not in run.output
        for directory, _, files in os.walk(good):  # nor in Snakemake's metadata, logs or the archive
            for file in files:
                with open(os.path.join(directory, file), "rb") as handle:
                    assert secret.encode() not in handle.read(), file
    finally:
        server.stop()


def test_tls_with_a_custom_ca(layout: str, tmp_path) -> None:
    server = Registry(tls=True)
    try:
        server.push(layout, "a", "bench/a:1")
        name = f"{server.host}/bench/a:1"
        untrusted = str(tmp_path / "untrusted")
        os.makedirs(untrusted)
        run = snakemake(
            untrusted,
            configfile=write_config(untrusted, sources=[{"type": "registry", "url": server.url}], images=[name]),
        )
        assert run.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in one_line(run.output)
        trusted = str(tmp_path / "trusted")
        os.makedirs(trusted)
        export(trusted, sources=[{"type": "registry", "url": server.url, "ca_file": server.ca_file}], images=[name])
        assert os.path.isfile(archive(trusted))
    finally:
        server.stop()
