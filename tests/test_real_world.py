"""The real-world corpus (tests/realworld.py) against Docker 20.10 and the four loaders.

- Images Docker built (Debian 12 from debootstrap; every file kind on top of it; a
  60-layer chain; whiteout layers it loaded), exported from its own save, match that save
  file for file.
- The same images converted by skopeo to gzip and zstd layouts, and images umoci and
  buildah/podman wrote with their own tar writers, exported together with them into one
  bundle: a fresh Docker loads the bundle and its `docker save` of every image in it is our
  archive again, file for file. podman, skopeo and containerd load it too, as does the
  `format: oci` bundle, and an image whose layer GNU tar wrote with sparse entries (which
  Docker loads but cannot save again).

Run alone with `pytest -m corpus`.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass

import pytest

from tests.engines import Containerd, DockerEngine, Podman, require
from tests.oracle import (
    assert_same_as_docker,
    assert_skopeo_reads,
    familiar,
    manifest_of,
    member_bytes,
)
from tests.realworld import (
    DockerBuilt,
    build_docker_images,
    buildah_sources,
    debian_root,
    root_tar,
    skopeo_layout,
    sparse_layout,
    umoci_layout,
)
from tests.workflowrun import export

pytestmark = [pytest.mark.engines, pytest.mark.corpus]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    for tool in ("dockerd", "debootstrap", "skopeo", "umoci", "buildah", "podman", "containerd"):
        require(tool)
    base = str(tmp_path_factory.mktemp("corpus"))
    rootfs = root_tar(debian_root(base), os.path.join(base, "debian.tar"))
    engine = DockerEngine(storage_driver="overlay2")  # vfs would copy Debian into every layer
    try:
        yield build_docker_images(engine, base, rootfs)
    finally:
        engine.stop()


EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"  # 1024 zero bytes


def normal(name: str) -> str:
    """A tag as Docker prints it: docker.io (and its library/) implied, other registries kept."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def tags_by_id(archive: str) -> dict[str, set[str]]:
    return {
        "sha256:" + str(item["Config"]).removesuffix(".json").removeprefix("blobs/sha256/"): set(item["RepoTags"] or [])
        for item in manifest_of(archive)
    }


def assert_matches_docker_save(ours: str, docker: str) -> None:
    assert_same_as_docker(ours, docker)
    key = lambda item: item["Config"]  # noqa: E731 - Docker orders manifest.json by Go map order
    assert sorted(manifest_of(ours), key=key) == sorted(manifest_of(docker), key=key)
    assert member_bytes(ours, "repositories") == member_bytes(docker, "repositories")


def layer_members(archive: str, diff_id: str) -> list[tarfile.TarInfo]:
    """The entries of the layer with this diff ID in a legacy archive."""
    with tarfile.open(archive) as outer:
        for item in manifest_of(archive):
            config = json.loads(outer.extractfile(str(item["Config"])).read())  # type: ignore[union-attr]
            for name, diff in zip(item["Layers"], config["rootfs"]["diff_ids"], strict=True):  # type: ignore[arg-type]
                if diff == diff_id:
                    member = outer.getmember(name)
                    while member.issym():
                        member = outer.getmember(
                            os.path.normpath(os.path.join(os.path.dirname(member.name), member.linkname))
                        )
                    with tarfile.open(
                        fileobj=outer.extractfile(member), encoding="utf-8", errors="surrogateescape"
                    ) as inner:
                        return inner.getmembers()
    raise AssertionError(f"no layer {diff_id} in {archive}")


def config_of(archive: str, image_id: str) -> dict:
    return json.loads(member_bytes(archive, image_id.split(":")[1] + ".json"))


def test_docker_built_images_match_docker_save_file_for_file(built: DockerBuilt, tmp_path) -> None:
    work = str(tmp_path)
    export(work, sources=[built.save], images=built.tags)
    ours = os.path.join(work, "results", "images.tar")
    assert_matches_docker_save(ours, built.save)

    # the corpus holds what it claims (a Docker that dropped a kind would make this test weaker)
    debian = config_of(ours, built.ids["realworld/debian:12"])
    root = {m.name: m for m in layer_members(ours, debian["rootfs"]["diff_ids"][0])}
    assert "etc/debian_version" in root and root["usr/bin/su"].mode & 0o4000
    assert any(m.islnk() for m in root.values()) and sum(m.issym() for m in root.values()) > 100
    kinds = config_of(ours, built.ids["realworld/kinds:1"])
    assert kinds["rootfs"]["diff_ids"][:1] == debian["rootfs"]["diff_ids"]
    assert sum(bool(h.get("empty_layer")) for h in kinds["history"]) >= 2
    added = {m.name: m for m in layer_members(ours, kinds["rootfs"]["diff_ids"][1])}
    assert added["kinds/null"].ischr() and added["kinds/loop9"].isblk() and added["kinds/fifo"].isfifo()
    # Docker's writer walks in name order: "hard" is the file, "plain" the link to it
    assert added["kinds/plain"].islnk() and added["kinds/plain"].linkname == "kinds/hard"
    assert added["kinds/dangling"].issym() and added["kinds/sticky"].mode & 0o1000
    assert added["kinds/setuid"].mode & 0o4000 and added["kinds/setgid"].mode & 0o2000
    assert "SCHILY.xattr.security.capability" in added["kinds/caps"].pax_headers
    assert any(len(name.encode("utf-8", "surrogateescape")) > 255 for name in added)
    assert any("\udce9" in name for name in added), "a file name that is not UTF-8"
    sparse = {m.name: m for m in layer_members(ours, kinds["rootfs"]["diff_ids"][2])}
    assert sparse["kinds/sparse.img"].size == 64 << 20
    chain = config_of(ours, built.ids["realworld/chain:60"])
    assert len(chain["rootfs"]["diff_ids"]) == 60
    loaded = config_of(ours, built.ids["realworld/loaded:1"])
    whiteouts = [m.name for m in layer_members(ours, loaded["rootfs"]["diff_ids"][1])]
    assert loaded["rootfs"]["diff_ids"][2] == EMPTY_LAYER
    assert "etc/.wh.gone" in whiteouts and "cache/.wh..wh..opq" in whiteouts


@dataclass
class Bundle:
    legacy: str  # format: docker
    oci: str  # format: oci
    expected: dict[str, set[str]]  # image ID -> tags, as Docker prints them
    sparse: str  # format: docker, the GNU sparse image alone (Docker cannot save it again)
    sparse_expected: dict[str, set[str]]


@pytest.fixture(scope="module")
def bundle(built: DockerBuilt, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """Every source kind in one export: Docker's save, skopeo's gzip and zstd layouts of it,
    umoci's layout, podman's docker-archive and buildah's layout."""
    base = str(tmp_path_factory.mktemp("bundle"))
    gzip_layout, zstd_layout = os.path.join(base, "gzip"), os.path.join(base, "zstd")
    converted = ["realworld/debian:12", "realworld/kinds:1", "realworld/loaded:1"]
    gzip_names = skopeo_layout(built.save, converted, gzip_layout, "gzip")
    zstd_names = skopeo_layout(built.save, converted, zstd_layout, "zstd")
    umoci, umoci_tags = umoci_layout(base)
    podman_archive, buildah_layout, built_names = buildah_sources(base)
    pushed = [name.replace("localhost/built/", "pushed/") for name in built_names]
    sources: list[object] = [
        built.save,
        gzip_layout,
        zstd_layout,
        {"path": umoci, "repository": "umoci/app"},
        podman_archive,
        buildah_layout,
    ]
    images = [
        *built.tags,
        *gzip_names.values(),
        *zstd_names.values(),
        *(f"umoci/app:{tag}" for tag in umoci_tags),
        *built_names,
        *pushed,
    ]
    archives = {}
    for fmt in ("docker", "oci"):
        work = os.path.join(base, f"work-{fmt}")
        os.makedirs(work)
        export(work, sources=sources, images=images, format=fmt)
        archives[fmt] = os.path.join(work, "results", "images.tar")
    expected = {image_id: {normal(t) for t in tags} for image_id, tags in tags_by_id(archives["docker"]).items()}
    assert set().union(*expected.values()) == {normal(name) for name in images}
    # skopeo rewrites a Docker config into OCI's schema on the way (a new image ID), the
    # same way for both compressions; the layers, uncompressed, stay the same
    id_of = {tag: image_id for image_id, tags in expected.items() for tag in tags}
    for tag in converted:
        assert id_of[gzip_names[tag]] == id_of[zstd_names[tag]] != built.ids[tag]
        original, converted_config = (config_of(archives["docker"], id_of[t]) for t in (tag, gzip_names[tag]))
        assert original["rootfs"] == converted_config["rootfs"]
    layout, name = sparse_layout(base)
    work = os.path.join(base, "work-sparse")
    os.makedirs(work)
    export(work, sources=[layout], images=[name])
    sparse = os.path.join(work, "results", "images.tar")
    config = manifest_of(sparse)[0]["Config"]
    diff_id = json.loads(member_bytes(sparse, str(config)))["rootfs"]["diff_ids"][0]
    assert any(member.issparse() for member in layer_members(sparse, diff_id)), "GNU tar wrote no sparse entry"
    return Bundle(archives["docker"], archives["oci"], expected, sparse, tags_by_id(sparse))


def test_bundle_is_what_docker_saves_after_loading_it(bundle: Bundle, tmp_path) -> None:
    fresh = DockerEngine(storage_driver="overlay2")
    try:
        fresh.docker("load", "-i", bundle.legacy)
        assert fresh.images() == bundle.expected
        saved = str(tmp_path / "resaved.tar")
        fresh.docker("save", "-o", saved, *sorted(set().union(*bundle.expected.values())))
        assert_matches_docker_save(bundle.legacy, saved)
        for image_id in list(fresh.images()):
            fresh.docker("rmi", "-f", image_id)
        fresh.docker("load", "-i", bundle.oci)
        assert fresh.images() == bundle.expected
        fresh.docker("load", "-i", bundle.sparse)
        assert fresh.images() == {**bundle.expected, **bundle.sparse_expected}
    finally:
        fresh.stop()


def test_podman_skopeo_and_containerd_load_the_bundle(bundle: Bundle) -> None:
    for archive, expected in (
        (bundle.legacy, bundle.expected),
        (bundle.oci, bundle.expected),
        (bundle.sparse, bundle.sparse_expected),
    ):
        podman = Podman()
        try:
            podman.podman("load", "-i", archive)
            # podman puts localhost/ before a name without a registry, as it does on load
            loaded = {image_id: {familiar(n) for n in found} for image_id, found in podman.images().items()}
            assert loaded == {image_id: {familiar(n) for n in tags} for image_id, tags in expected.items()}, archive
        finally:
            podman.stop()
        daemon = Containerd()
        try:
            daemon.ctr("images", "import", archive)  # unpacks each layer: diff IDs checked
            assert {normal(name) for name in daemon.images()} == set().union(*expected.values()), archive
        finally:
            daemon.stop()
    assert_skopeo_reads(bundle.legacy, bundle.expected)
    assert_skopeo_reads(bundle.sparse, bundle.sparse_expected)
