"""Against the real thing: Docker 20.10 builds and saves images; we export the same
images from its archive and from OCI layouts made of it, and compare file for file.
Then the archive is loaded by a fresh Docker engine, podman and skopeo."""

from __future__ import annotations

import json
import os

import pytest

from tests.engines import DockerEngine
from tests.imagefactory import Image, make_config, make_layer, oci_layout_from_docker_save, write_docker_archive
from tests.oracle import (
    MULTI,
    Oracle,
    assert_docker_loads,
    assert_podman_loads,
    assert_same_as_docker,
    assert_skopeo_reads,
    expected_tags,
    manifest_of,
    member_bytes,
    members,
)
from tests.workflowrun import export, sha256_file

pytestmark = pytest.mark.engines

SINGLE = ["base:1", "app:1", "solo:1", "rep:1", "registry.example:5000/team/app:v2"]


@pytest.mark.parametrize("name", SINGLE)
def test_single_image_matches_docker_byte_for_byte(oracle: Oracle, tmp_path, name: str) -> None:
    saved = oracle.save(f"single-{name.replace('/', '_')}.tar", name)
    work = str(tmp_path)
    export(work, sources=[saved], images=[name])
    ours = os.path.join(work, "results", "images.tar")
    assert member_bytes(ours, "manifest.json") == member_bytes(saved, "manifest.json")
    assert member_bytes(ours, "repositories") == member_bytes(saved, "repositories")
    assert_same_as_docker(ours, saved)
    if not any(kind == "sym" for kind, _, _ in members(saved).values()):
        # nothing of Docker's save-time mtimes in it: the whole archive is the same bytes
        assert sha256_file(ours) == sha256_file(saved)
    if name == "rep:1":
        # one diff three times in one image: one file and two relative symlinks
        kinds = [e[0] for n, e in members(ours).items() if n.endswith("/layer.tar")]
        assert kinds.count("sym") >= 1


def test_untagged_image_by_id(oracle: Oracle, tmp_path) -> None:
    image_id = oracle.ids["untagged"]
    saved = oracle.save("untagged.tar", image_id)
    work = str(tmp_path)
    export(work, sources=[saved], images=[image_id.split(":")[1][:12]])
    ours = os.path.join(work, "results", "images.tar")
    assert member_bytes(ours, "manifest.json") == member_bytes(saved, "manifest.json")
    assert manifest_of(ours)[0]["RepoTags"] is None
    assert "repositories" not in members(ours)
    assert_same_as_docker(ours, saved)


def test_parent_links_are_kept_as_docker_keeps_them(oracle: Oracle, tmp_path) -> None:
    """docker save writes Parent when the parent is saved too; so do we, from its archive,
    and a fresh engine loading ours records the same parent."""
    saved = oracle.save("parent-and-child.tar", "base:1", "child:1")
    key = lambda item: item["Config"]  # noqa: E731
    docker_manifest = sorted(manifest_of(saved), key=key)
    assert [item.get("Parent") for item in docker_manifest if item["RepoTags"] == ["child:1"]] == [oracle.ids["base"]]
    work = str(tmp_path / "both")
    os.makedirs(work)
    export(work, sources=[saved], images=["base:1", "child:1"])
    ours = os.path.join(work, "results", "images.tar")
    assert sorted(manifest_of(ours), key=key) == docker_manifest
    assert_same_as_docker(ours, saved)
    fresh = DockerEngine()
    try:
        fresh.docker("load", "-i", ours)
        inspect = json.loads(fresh.docker("image", "inspect", "child:1"))[0]
        assert inspect["Parent"] == oracle.ids["base"]
    finally:
        fresh.stop()
    # the child alone: Docker writes no Parent, byte for byte neither do we
    alone = str(tmp_path / "alone")
    os.makedirs(alone)
    export(alone, sources=[saved], images=["child:1"])
    child_only = oracle.save("child-only.tar", "child:1")
    assert member_bytes(os.path.join(alone, "results", "images.tar"), "manifest.json") == member_bytes(
        child_only, "manifest.json"
    )


def check_multi(ours: str, docker: str, oracle: Oracle) -> None:
    assert_same_as_docker(ours, docker)
    # Docker orders manifest.json by Go map iteration; we follow the request.
    our_manifest = manifest_of(ours)
    docker_manifest = manifest_of(docker)
    key = lambda item: item["Config"]  # noqa: E731
    assert sorted(our_manifest, key=key) == sorted(docker_manifest, key=key)
    expected_order = [oracle.ids[s].split(":")[1] + ".json" for s in ("base", "app", "solo", "rep", "untagged")]
    assert [item["Config"] for item in our_manifest] == expected_order
    assert our_manifest[0]["RepoTags"] == ["base:1", "base:latest"]  # every tag, sorted
    assert member_bytes(ours, "repositories") == member_bytes(docker, "repositories")


def test_many_images_from_docker_archive(oracle: Oracle, multi_save: str, tmp_path) -> None:
    work = str(tmp_path)
    export(work, sources=[multi_save], images=[*MULTI, oracle.ids["untagged"]])
    check_multi(os.path.join(work, "results", "images.tar"), multi_save, oracle)


@pytest.mark.parametrize(("compression", "family"), [("gzip", "oci"), ("zstd", "docker"), ("none", "oci")])
def test_many_images_from_oci_layout(oracle: Oracle, multi_save: str, tmp_path, compression: str, family: str) -> None:
    layout = str(tmp_path / "layout")
    oci_layout_from_docker_save(multi_save, layout, compression=compression, family=family)
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[layout], images=[*MULTI, oracle.ids["untagged"]])
    check_multi(os.path.join(work, "results", "images.tar"), multi_save, oracle)


def test_names_from_bare_ref_names_and_repository(oracle: Oracle, multi_save: str, tmp_path) -> None:
    """A layout naming images by bare tag only (as skopeo writes), joined to `repository`."""
    app_only = oracle.save("app-only.tar", "app:1")
    layout = str(tmp_path / "layout")
    oci_layout_from_docker_save(app_only, layout, name_style="both")
    # rewrite the annotations to a bare ref name
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    for entry in index["manifests"]:
        entry["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    with open(os.path.join(layout, "index.json"), "w") as handle:
        json.dump(index, handle)
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[{"path": layout, "repository": "app"}], images=["app:1"])
    ours = os.path.join(work, "results", "images.tar")
    assert member_bytes(ours, "manifest.json") == member_bytes(app_only, "manifest.json")


def test_digest_reference_exports_without_tag(oracle: Oracle, multi_save: str, tmp_path) -> None:
    layout = str(tmp_path / "layout")
    digests = oci_layout_from_docker_save(multi_save, layout)
    app_id = oracle.ids["app"]
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[layout], images=[f"app@{digests[app_id]}"])
    manifest = manifest_of(os.path.join(work, "results", "images.tar"))
    assert manifest == [{**manifest[0], "RepoTags": None}]
    assert manifest[0]["Config"] == app_id.split(":")[1] + ".json"


@pytest.fixture(scope="module")
def exported_multi(oracle: Oracle, multi_save: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = str(tmp_path_factory.mktemp("loadwork"))
    layout = os.path.join(work, "layout")
    oci_layout_from_docker_save(multi_save, layout)
    export(work, sources=[layout], images=[*MULTI, oracle.ids["untagged"]])
    return os.path.join(work, "results", "images.tar")


def test_docker_load_in_a_fresh_engine(oracle: Oracle, exported_multi: str) -> None:
    assert_docker_loads(exported_multi, oracle)


def test_podman_load(oracle: Oracle, exported_multi: str) -> None:
    assert_podman_loads(exported_multi, expected_tags(oracle))


def test_skopeo_inspect(oracle: Oracle, exported_multi: str) -> None:
    assert_skopeo_reads(exported_multi, expected_tags(oracle))


# Configs Docker's builder never writes but `docker load` accepts: each is decoded by the
# real daemon, saved, and must come out of our export byte for byte the same.
CRAFTED: dict[str, dict[str, object]] = {
    "offset-time": {"created": "2023-06-15T10:20:30.123400000+05:30"},
    "pre-epoch": {"created": "1960-01-01T00:00:00Z"},
    "no-created": {"created": None},
    "far-future": {"created": "2300-01-01T00:00:00Z"},
    # past 11 octal digits of seconds (2242), before Docker's clamp (2262): a PAX mtime record
    "past-octal-mtime": {"created": "2250-01-01T00:00:00Z"},
    "year-zero": {"created": "0000-01-01T00:00:00Z"},
    "go-decoding": {
        "Config": {"labels": {"a": "1"}, "Cmd": "echo hi"},
        "config": {"Labels": {"b": "<&>"}, "Env": ["A=1", None, "B=\b\f\u2028"]},
        "Parent": "sha256:" + "a" * 64,
        "author": "me <me@example.com>",
        "comment": "line\u2029two",
        "variant": "v8",
        "architecture": "arm64",
        "os.version": "10.0",
        "os.features": ["x"],
    },
    "every-field": {
        "container": "abc",
        "docker_version": "20.10.24",
        "container_config": {"Hostname": "h", "Cmd": ["/bin/sh", "-c", "#(nop) X"], "Image": "sha256:" + "b" * 64},
        "config": {
            "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1, "Timeout": 2, "StartPeriod": 3, "Retries": 4},
            "StopTimeout": 0,
            "ArgsEscaped": True,
            "NetworkDisabled": True,
            "MacAddress": "02:42:ac:11:00:02",
            "OnBuild": [],
            "Volumes": {},
            "ExposedPorts": {},
            "Shell": [],
            "Entrypoint": None,
            "Tty": True,
            "StopSignal": "SIGKILL",
        },
        "history": [{"created_by": "a"}, {"created_by": "b", "empty_layer": True}, {"created_by": "c"}],
        "Size": 12345,
    },
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_configs_match_docker_byte_for_byte(oracle: Oracle, tmp_path, case: str) -> None:
    fields = {k: v for k, v in CRAFTED[case].items() if v is not None}
    layers = [make_layer({f"{case}/1": case.encode()}), make_layer({f"{case}/2": b"two"})]
    config = json.loads(make_config(layers))
    if CRAFTED[case].get("created", "") is None:
        del config["created"]
    config.update(fields)
    # invalid UTF-8 inside a string, as some producers write
    raw = json.dumps(config, ensure_ascii=False).encode().replace(b"<&>", b"<&>\xf0\x9f")
    image = Image(layers, raw)
    tag = f"crafted-{case}:1"
    source = write_docker_archive(str(tmp_path / "crafted.tar"), [(image, [tag])])
    oracle.engine.docker("load", "-i", source)
    saved = oracle.save(f"crafted-{case}.tar", tag)
    assert manifest_of(saved)[0]["Config"] == image.image_id.split(":")[1] + ".json"  # Docker kept our bytes
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[source], images=[tag])
    ours = os.path.join(work, "results", "images.tar")
    assert_same_as_docker(ours, saved)
    assert sha256_file(ours) == sha256_file(saved)


def test_foreign_layer_sources(oracle: Oracle, tmp_path) -> None:
    """A foreign layer (as Windows base layers are) keeps its LayerSources entry.

    Docker 20.10 on Linux drops LayerSources when it loads an image, so its save cannot
    show them: everything else must match, and the entry must be Go's encoding.
    """
    layers = [make_layer({"base": b"foreign base"}), make_layer({"app": b"app"})]
    image = Image(layers, make_config(layers))
    descriptor = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "size": 1234,
        "digest": "sha256:" + "f" * 64,
        "urls": ["https://example.invalid/base?a=1&b=<2>"],
    }
    source = write_docker_archive(
        str(tmp_path / "foreign.tar"), [(image, ["foreign:1"])], {image.diff_ids[0]: descriptor}
    )
    oracle.engine.docker("load", "-i", source)
    saved = oracle.save("foreign.tar", "foreign:1")
    export(str(tmp_path), sources=[source], images=["foreign:1"])
    ours = os.path.join(str(tmp_path), "results", "images.tar")
    assert_same_as_docker(ours, saved)
    entry = (
        '"LayerSources":{"'
        + image.diff_ids[0]
        + '":{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",'
        '"size":1234,"digest":"sha256:'
        + "f" * 64
        + '","urls":["https://example.invalid/base?a=1\\u0026b=\\u003c2\\u003e"]}}'
    )
    assert member_bytes(ours, "manifest.json") == member_bytes(saved, "manifest.json").replace(
        b"]}]", b"]," + entry.encode() + b"}]"
    )
    assert_docker_loads(ours, oracle, {image.image_id: {"foreign:1"}})


def test_layer_sources_of_ordinary_layers_are_not_kept(oracle: Oracle, tmp_path) -> None:
    """LayerSources entries for ordinary layers (Docker 25 lists every layer, with the OCI
    layer type and the layer's own digest): Docker 20.10 loads the archive and its save
    writes none; ours is its archive byte for byte."""
    layers = [make_layer({"base": b"listed base"}), make_layer({"app": b"listed app"})]
    image = Image(layers, make_config(layers))
    media_types = ["application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar.gzip"]
    listed = {
        diff_id: {"mediaType": media_type, "size": len(layer), "digest": diff_id}
        for diff_id, layer, media_type in zip(image.diff_ids, layers, media_types, strict=True)
    }
    source = write_docker_archive(str(tmp_path / "listed.tar"), [(image, ["listed:1"])], listed)
    oracle.engine.docker("load", "-i", source)
    saved = oracle.save("listed.tar", "listed:1")
    assert "LayerSources" not in manifest_of(saved)[0]
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[source], images=["listed:1"])
    ours = os.path.join(work, "results", "images.tar")
    assert member_bytes(ours, "manifest.json") == member_bytes(saved, "manifest.json")
    assert_same_as_docker(ours, saved)
    assert sha256_file(ours) == sha256_file(saved)
