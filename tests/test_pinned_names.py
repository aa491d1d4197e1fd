"""`repo:tag@sha256:...`, as release image lists pin names: the pinned image, exported under
its tag (docker save drops it), from an OCI layout, a docker-save archive and a registry;
the tag is in manifest.json, repositories and index.json, and the real clients show it."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest

from tests.engines import Containerd, DockerEngine, Podman, Registry, require
from tests.imagefactory import Image, LayoutEntry, make_config, make_layer, write_docker_archive, write_oci_layout
from tests.workflowrun import export

pytestmark = pytest.mark.engines

BASE = make_layer({"base": os.urandom(50_000)})
OLD = Image([BASE, make_layer({"app": b"release 1.0"})], b"")
OLD.config = make_config(OLD.layers, config={"Cmd": ["old"]})
NEW = Image([BASE, make_layer({"app": b"release 1.1"})], b"")
NEW.config = make_config(NEW.layers, config={"Cmd": ["new"]})


def manifest_digest(layout: str, name: str) -> str:
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    return next(m["digest"] for m in index["manifests"] if name in (m.get("annotations") or {}).values())


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory):
    """Where `app:1` has moved on to NEW; OLD is still held (by another tag, or by ID)."""
    require("docker-registry")
    require("skopeo")
    root = tmp_path_factory.mktemp("pinned")
    layout = write_oci_layout(
        str(root / "layout"),
        [LayoutEntry(NEW, ["docker.io/library/app:1"]), LayoutEntry(OLD, ["docker.io/library/app:0.9"])],
    )
    archive = write_docker_archive(str(root / "saved.tar"), [(NEW, ["app:1"]), (OLD, ["app:0.9"])])
    push = write_oci_layout(str(root / "push"), [LayoutEntry(NEW, ["new"]), LayoutEntry(OLD, ["old"])])
    registry = Registry()
    registry.push(push, "new", "team/app:1")
    registry.push(push, "old", "team/app:0.9")
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/team/app:0.9"],
        capture_output=True,
        text=True,
        check=True,
    )
    pins = {
        "layout": ([layout], f"app:1@{manifest_digest(layout, 'docker.io/library/app:0.9')}", "app:1"),
        "docker-archive": ([archive], f"app:1@{OLD.image_id}", "app:1"),
        "registry": (
            [{"type": "registry", "url": registry.url, "insecure": True}],
            f"{registry.host}/team/app:1@{json.loads(inspected.stdout)['Digest']}",
            f"{registry.host}/team/app:1",
        ),
    }
    yield pins
    registry.stop()


def exported(tmp_path, sources: list, pin: str, fmt: str) -> str:
    work = str(tmp_path / fmt)
    os.makedirs(work)
    export(work, sources=sources, images=[pin], format=fmt)
    return os.path.join(work, "results", "images.tar")


def members(path: str) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["layout", "docker-archive", "registry"])
def test_a_pinned_name_exports_the_pinned_image_under_its_tag(sources, tmp_path, kind: str) -> None:
    source, pin, tag = sources[kind]
    repository, _, version = tag.rpartition(":")
    for fmt in ("docker", "oci"):
        files = members(exported(tmp_path, source, pin, fmt))
        (entry,) = json.loads(files["manifest.json"])
        assert entry["RepoTags"] == [tag]
        config = entry["Config"]
        assert files[config] == OLD.config  # the pinned image, not the one the tag names now
        if fmt == "docker":
            assert list(json.loads(files["repositories"])) == [repository]
            assert list(json.loads(files["repositories"])[repository]) == [version]
        else:
            (named,) = json.loads(files["index.json"])["manifests"]
            full = tag if "/" in repository else f"docker.io/library/{tag}"
            assert named["annotations"]["io.containerd.image.name"] == full
            assert named["annotations"]["org.opencontainers.image.ref.name"] == version


def test_the_clients_load_the_pinned_image_under_its_tag(sources, tmp_path) -> None:
    for tool in ("dockerd", "podman", "containerd"):
        require(tool)
    source, pin, _ = sources["layout"]
    legacy, oci = exported(tmp_path, source, pin, "docker"), exported(tmp_path, source, pin, "oci")
    docker = DockerEngine()
    try:
        docker.docker("load", "-i", legacy)
        assert docker.images() == {OLD.image_id: {"app:1"}}
    finally:
        docker.stop()
    podman = Podman()
    try:
        podman.podman("load", "-i", legacy)
        # podman 4.3 names a familiar tag from a docker-save archive localhost/ (as it does Docker's own)
        assert podman.images()[OLD.image_id] & {"docker.io/library/app:1", "localhost/app:1"}
    finally:
        podman.stop()
    containerd = Containerd()
    try:
        containerd.ctr("images", "import", oci)
        assert "docker.io/library/app:1" in containerd.images()
    finally:
        containerd.stop()
