"""`format: oci`: the layout Docker 25+ writes, loaded by Docker 20.10, podman, skopeo and
containerd; compressed archives; kept compressed layers; multi-platform sources."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest
import zstandard

from tests.engines import Containerd, require
from tests.imagefactory import (
    Image,
    LayoutEntry,
    make_config,
    make_layer,
    oci_layout_from_docker_save,
    platform_image,
    write_multiplatform_layout,
    write_oci_layout,
)
from tests.oracle import (
    MULTI,
    Oracle,
    assert_docker_loads,
    assert_podman_loads,
    assert_skopeo_reads,
    expected_tags,
    members,
)
from tests.workflowrun import export, sha256_file, snakemake, write_config

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def result(work: str, name: str = "images.tar") -> str:
    return os.path.join(work, "results", name)


def read_member(archive: str, name: str) -> bytes:
    with tarfile.open(archive) as handle:
        return handle.extractfile(name).read()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def layout(multi_save: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("ocilayout") / "layout")
    oci_layout_from_docker_save(multi_save, root)  # gzip layers, as a registry would hold them
    return root


@pytest.fixture(scope="module")
def oci_export(oracle: Oracle, layout: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = str(tmp_path_factory.mktemp("ociwork"))
    export(work, sources=[layout], images=[*MULTI, oracle.ids["untagged"]], format="oci")
    return result(work)


@pytest.mark.engines
def test_the_layout_docker_25_writes(oracle: Oracle, oci_export: str) -> None:
    entries = members(oci_export)
    assert {kind for kind, _, _ in entries.values()} == {"dir", "file"}  # no symlinks
    blobs = {name: content for name, (kind, _, content) in entries.items() if name.startswith("blobs/sha256/")}
    for name, content in blobs.items():
        assert name == "blobs/sha256/" + hashlib.sha256(content).hexdigest()  # type: ignore[arg-type]
    assert sorted(set(entries) - set(blobs)) == [
        "blobs",
        "blobs/sha256",
        "index.json",
        "manifest.json",
        "oci-layout",
        "repositories",
    ]
    assert entries["oci-layout"][2] == b'{"imageLayoutVersion": "1.0.0"}'

    index = json.loads(read_member(oci_export, "index.json"))
    names = [(m.get("annotations") or {}) for m in index["manifests"]]
    assert names == [
        {"io.containerd.image.name": "docker.io/library/base:1", "org.opencontainers.image.ref.name": "1"},
        {"io.containerd.image.name": "docker.io/library/base:latest", "org.opencontainers.image.ref.name": "latest"},
        {"io.containerd.image.name": "docker.io/library/app:1", "org.opencontainers.image.ref.name": "1"},
        {"io.containerd.image.name": "docker.io/library/solo:1", "org.opencontainers.image.ref.name": "1"},
        {"io.containerd.image.name": "docker.io/library/rep:1", "org.opencontainers.image.ref.name": "1"},
        {},  # the untagged image: one entry, no names
    ]
    saved = json.loads(read_member(oci_export, "manifest.json"))
    order = ["base", "app", "solo", "rep", "untagged"]
    assert [item["Config"] for item in saved] == ["blobs/sha256/" + oracle.ids[s].split(":")[1] for s in order]
    for item in saved:
        config = json.loads(blobs[item["Config"]])  # type: ignore[arg-type]
        assert item["Layers"] == ["blobs/sha256/" + d.split(":")[1] for d in config["rootfs"]["diff_ids"]]
    repositories = json.loads(read_member(oci_export, "repositories"))
    assert repositories["app"]["1"] == saved[1]["Layers"][-1].rsplit("/", 1)[1]  # the top layer's diff_id
    for descriptor in index["manifests"]:
        manifest = json.loads(blobs["blobs/sha256/" + descriptor["digest"].split(":")[1]])  # type: ignore[arg-type]
        assert manifest["mediaType"] == descriptor["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert {layer["mediaType"] for layer in manifest["layers"]} == {LAYER_TAR}


@pytest.mark.engines
def test_docker_20_loads_it(oracle: Oracle, oci_export: str) -> None:
    assert_docker_loads(oci_export, oracle)


@pytest.mark.engines
def test_podman_loads_it(oracle: Oracle, oci_export: str) -> None:
    assert_podman_loads(oci_export, expected_tags(oracle))


@pytest.mark.engines
def test_skopeo_reads_it_as_docker_archive(oracle: Oracle, oci_export: str) -> None:
    assert_skopeo_reads(oci_export, expected_tags(oracle))


@pytest.mark.engines
def test_skopeo_reads_it_as_oci_archive(oracle: Oracle, layout: str, tmp_path) -> None:
    # oci-archive references name the ref name (a tag alone): export tags that are unique
    export(str(tmp_path), sources=[layout], images=["app:1", "base:latest"], format="oci")
    expected = {oracle.ids["app"]: {"app:1"}, oracle.ids["base"]: {"base:latest"}}
    assert_skopeo_reads(result(str(tmp_path)), expected, transport="oci-archive")


def containerd_names(archive: str, piped: bytes | None = None) -> dict[str, str]:
    """What `ctr images import` makes of the archive (or of bytes piped to `import -`)."""
    require("containerd")
    daemon = Containerd()
    try:
        if piped is None:
            daemon.ctr("images", "import", archive)
        else:
            daemon.ctr("images", "import", "-", stdin=piped)
        return daemon.images()
    finally:
        daemon.stop()


def index_names(archive: str) -> dict[str, str]:
    index = json.loads(read_member(archive, "index.json"))
    return {
        m["annotations"]["io.containerd.image.name"]: m["digest"] for m in index["manifests"] if m.get("annotations")
    }


@pytest.mark.engines
def test_containerd_imports_it(oci_export: str) -> None:
    assert containerd_names(oci_export) == index_names(oci_export)


@pytest.mark.engines
def test_kept_layers_are_the_source_blobs(oracle: Oracle, layout: str, tmp_path) -> None:
    export(str(tmp_path), sources=[layout], images=["app:1", "solo:1"], format="oci", layers="keep")
    archive = result(str(tmp_path))
    entries = members(archive)
    saved = json.loads(read_member(archive, "manifest.json"))
    for item in saved:
        for layer in item["Layers"]:
            with open(os.path.join(layout, layer), "rb") as handle:
                assert entries[layer][2] == handle.read()  # the gzip blob, byte for byte
            assert entries[layer][2][:2] == b"\x1f\x8b"
    expected = {oracle.ids["app"]: {"app:1"}, oracle.ids["solo"]: {"solo:1"}}
    assert_docker_loads(archive, oracle, expected)
    assert containerd_names(archive) == index_names(archive)


@pytest.mark.engines
def test_compressed_archives_load(oracle: Oracle, layout: str, tmp_path) -> None:
    expected = {oracle.ids["app"]: {"app:1"}}
    for compression in ("gzip", "zstd"):
        work = str(tmp_path / compression)
        os.makedirs(work)
        output = f"out.tar.{compression}"
        export(work, sources=[layout], images=["app:1"], format="oci", compression=compression, output=output)
        archive = os.path.join(work, output)
        if compression == "gzip":
            assert_docker_loads(archive, oracle, expected)  # Docker 20.10 reads gzip, not zstd
        assert_podman_loads(archive, expected)
        # ctr 1.6 reads only plain tar: decompress through a pipe, as the README says
        plain = decompress(archive, compression)
        with tarfile.open(fileobj=io.BytesIO(plain)) as handle:
            (entry,) = json.load(handle.extractfile("index.json"))["manifests"]  # type: ignore[arg-type]
        assert containerd_names(archive, piped=plain) == {"docker.io/library/app:1": entry["digest"]}


def decompress(archive: str, compression: str) -> bytes:
    with open(archive, "rb") as handle:
        data = handle.read()
    if compression == "gzip":
        return gzip.decompress(data)
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


@pytest.mark.engines
def test_own_output_is_a_source(oracle: Oracle, oci_export: str, multi_save: str, tmp_path) -> None:
    """A Docker 25+ style archive (ours) as a source gives the same docker archive."""
    images = [*MULTI, oracle.ids["untagged"]]
    from_oci = str(tmp_path / "a")
    from_docker = str(tmp_path / "b")
    os.makedirs(from_oci)
    os.makedirs(from_docker)
    export(from_oci, sources=[oci_export], images=images)
    export(from_docker, sources=[multi_save], images=images)
    assert sha256_file(result(from_oci)) == sha256_file(result(from_docker))


# ---------------------------------------------------------------- without Docker

ONE = [make_layer({"one": b"1" * 3000}), make_layer({"two": b"2"})]
SIMPLE = Image(ONE, make_config(ONE))


@pytest.mark.workflow
def test_reproducible_in_every_compression(tmp_path) -> None:
    source = write_oci_layout(str(tmp_path / "src"), [LayoutEntry(SIMPLE, ["example.com/one:1"])])
    for compression in ("none", "gzip", "zstd"):
        digests = []
        for cores in ("1", "2"):
            work = str(tmp_path / f"{compression}-{cores}")
            os.makedirs(work)
            export(
                work,
                "--cores",
                cores,
                sources=[source],
                images=["example.com/one:1"],
                format="oci",
                compression=compression,
            )
            digests.append(sha256_file(result(work)))
        assert digests[0] == digests[1], compression


@pytest.mark.workflow
@pytest.mark.parametrize("family", ["oci", "docker"])  # an OCI index, a Docker manifest list
def test_platform_is_picked_from_an_index(tmp_path, family: str) -> None:
    images = {f"linux/{arch}": platform_image(arch) for arch in ("amd64", "arm64", "arm/v7")}
    source = write_multiplatform_layout(str(tmp_path / "multi"), images, "example.com/multi:1", family)
    for platform, image in images.items():
        work = str(tmp_path / platform.replace("/", "-"))
        os.makedirs(work)
        export(work, sources=[source], images=["example.com/multi:1"], platform=platform)
        saved = json.loads(read_member(result(work), "manifest.json"))
        assert saved[0]["Config"] == image.image_id.split(":")[1] + ".json"
    work = str(tmp_path / "missing")
    os.makedirs(work)
    run = snakemake(
        work, configfile=write_config(work, sources=[source], images=["example.com/multi:1"], platform="linux/s390x")
    )
    assert run.returncode != 0
    assert (
        "index has no manifest for platform linux/s390x (it has: linux/amd64, linux/arm/v7, linux/arm64)" in run.output
    )


@pytest.mark.engines
def test_all_platforms_keep_the_index(tmp_path) -> None:
    images = {f"linux/{arch}": platform_image(arch) for arch in ("amd64", "arm64", "arm/v7")}
    source = write_multiplatform_layout(str(tmp_path / "multi"), images, "example.com/multi:1")
    work = str(tmp_path / "work")
    os.makedirs(work)
    config = {"sources": [source], "images": ["example.com/multi:1"], "format": "oci", "platform": "linux/arm64"}
    export(work, **config, platforms="all")
    archive = result(work)
    entries = members(archive)
    (entry,) = json.loads(read_member(archive, "index.json"))["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert entry["annotations"]["io.containerd.image.name"] == "example.com/multi:1"
    index = json.loads(entries["blobs/sha256/" + entry["digest"].split(":")[1]][2])
    found = {}
    for child in index["manifests"]:
        manifest = json.loads(entries["blobs/sha256/" + child["digest"].split(":")[1]][2])
        platform = "/".join(
            filter(None, (child["platform"]["os"], child["platform"]["architecture"], child["platform"].get("variant")))
        )
        found[platform] = manifest["config"]["digest"]
        for layer in manifest["layers"]:
            assert "blobs/sha256/" + layer["digest"].split(":")[1] in entries
    assert found == {platform: image.image_id for platform, image in images.items()}
    # manifest.json (what Docker loads) names the chosen platform only
    saved = json.loads(read_member(archive, "manifest.json"))
    assert [item["Config"] for item in saved] == ["blobs/sha256/" + images["linux/arm64"].image_id.split(":")[1]]
    assert containerd_names(archive) == index_names(archive)

    # `chosen` (the default) keeps one platform: no index, the arm64 manifest
    single = str(tmp_path / "single")
    os.makedirs(single)
    export(single, **config)
    (entry,) = json.loads(read_member(result(single), "index.json"))["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


ATTESTATION = "attestation-manifest"


def kept_index(archive: str) -> dict:
    entries = members(archive)
    (entry,) = json.loads(read_member(archive, "index.json"))["manifests"]
    return json.loads(entries["blobs/sha256/" + entry["digest"].split(":")[1]][2])


@pytest.mark.engines
def test_attestations_are_kept_with_all_platforms(tmp_path) -> None:
    """BuildKit's attestation manifests ride along with `platforms: all`, as the source holds
    them, each pointed at our manifest of its platform; `attestations: drop` leaves them out."""
    images = {f"linux/{arch}": platform_image(arch) for arch in ("amd64", "arm64")}
    source = write_multiplatform_layout(str(tmp_path / "multi"), images, "example.com/multi:1", attestations=True)

    def source_blob(digest: str) -> bytes:
        with open(os.path.join(source, "blobs", "sha256", digest.split(":")[1]), "rb") as handle:
            return handle.read()

    with open(os.path.join(source, "index.json")) as handle:
        (top,) = json.load(handle)["manifests"]
    made = [c for c in json.loads(source_blob(top["digest"]))["manifests"] if c["platform"]["os"] == "unknown"]
    work = str(tmp_path / "work")
    os.makedirs(work)
    config = {"sources": [source], "images": ["example.com/multi:1"], "format": "oci", "platforms": "all"}
    export(work, **config)
    archive = result(work)
    entries = members(archive)
    children = kept_index(archive)["manifests"]
    platforms = [c for c in children if c["platform"]["os"] == "linux"]
    kept = [c for c in children if (c.get("annotations") or {}).get("vnd.docker.reference.type") == ATTESTATION]
    assert children == platforms + kept and len(kept) == len(made) == 2
    for attestation, platform, original in zip(kept, platforms, made, strict=True):
        assert attestation["annotations"]["vnd.docker.reference.digest"] == platform["digest"]  # our manifest
        assert attestation["platform"] == {"architecture": "unknown", "os": "unknown"}
        assert (attestation["digest"], attestation["size"]) == (original["digest"], original["size"])
        manifest = entries["blobs/sha256/" + attestation["digest"].split(":")[1]][2]
        assert manifest == source_blob(original["digest"])  # the bytes as the source holds them
        document = json.loads(manifest)
        for blob in [document["config"], *document["layers"]]:
            assert entries["blobs/sha256/" + blob["digest"].split(":")[1]][2] == source_blob(blob["digest"])
    # containerd takes every platform and attestation in
    require("containerd")
    daemon = Containerd()
    try:
        daemon.ctr("images", "import", "--all-platforms", archive)
        stored = daemon.ctr("content", "ls", "-q").split()
        assert all(a["digest"] in stored for a in kept)
        assert daemon.images() == index_names(archive)
    finally:
        daemon.stop()

    dropped = str(tmp_path / "dropped")
    os.makedirs(dropped)
    export(dropped, **config, attestations="drop")
    assert [c["platform"]["os"] for c in kept_index(result(dropped))["manifests"]] == ["linux", "linux"]
    assert not any(b"in-toto" in data for *_, data in members(result(dropped)).values())

    # dropped, they are never opened: a source missing their manifests still exports
    for attestation in made:
        os.remove(os.path.join(source, "blobs", "sha256", attestation["digest"].split(":")[1]))
    missing = str(tmp_path / "missing")
    os.makedirs(missing)
    export(missing, **config, attestations="drop")
    assert sha256_file(result(missing)) == sha256_file(result(dropped))
    run = snakemake(missing, configfile=write_config(missing, **config, attestations="keep"))
    assert run.returncode != 0 and made[0]["digest"].split(":")[1] in run.output


FOREIGN_URL = "https://example.invalid/base.tar.gz"


def foreign_source(tmp_path, omit: bool) -> str:
    return write_oci_layout(
        str(tmp_path / f"foreign-{omit}"),
        [LayoutEntry(SIMPLE, ["example.com/win:1"], foreign={0: [FOREIGN_URL]}, omit_foreign=omit)],
    )


def manifest_blob(archive: str) -> dict:
    (entry,) = json.loads(read_member(archive, "index.json"))["manifests"]
    return json.loads(read_member(archive, "blobs/sha256/" + entry["digest"].split(":")[1]))


@pytest.mark.workflow
def test_foreign_layer_with_bytes(tmp_path) -> None:
    source = foreign_source(tmp_path, omit=False)
    for layers in ("uncompressed", "keep"):
        work = str(tmp_path / layers)
        os.makedirs(work)
        export(work, sources=[source], images=["example.com/win:1"], format="oci", layers=layers)
        saved = json.loads(read_member(result(work), "manifest.json"))
        (origin,) = saved[0]["LayerSources"].values()
        assert origin["urls"] == [FOREIGN_URL] and origin["mediaType"].endswith("nondistributable.v1.tar+gzip")
        first = manifest_blob(result(work))["layers"][0]
        if layers == "keep":  # still non-distributable, with its URLs, and its bytes
            assert first["urls"] == [FOREIGN_URL] and first["mediaType"] == origin["mediaType"]
        else:  # we hold the bytes: a plain layer
            assert first["mediaType"] == LAYER_TAR and "urls" not in first
        assert "blobs/sha256/" + first["digest"].split(":")[1] in members(result(work))


@pytest.mark.workflow
def test_foreign_layer_without_bytes(tmp_path) -> None:
    source = foreign_source(tmp_path, omit=True)
    work = str(tmp_path / "work")
    os.makedirs(work)
    base = {"sources": [source], "images": ["example.com/win:1"]}
    run = snakemake(work, configfile=write_config(work, **base, format="oci"))
    assert run.returncode != 0
    assert f"is foreign (non-distributable, served from {FOREIGN_URL}) and the source does not hold it" in run.output
    run = snakemake(work, configfile=write_config(work, **base, foreign_layers="skip"))
    assert run.returncode != 0 and "format docker needs every layer's bytes" in run.output
    export(work, **base, format="oci", foreign_layers="skip")
    first = manifest_blob(result(work))["layers"][0]
    assert first["urls"] == [FOREIGN_URL] and first["mediaType"].endswith("nondistributable.v1.tar+gzip")
    assert "blobs/sha256/" + first["digest"].split(":")[1] not in members(result(work))


@pytest.mark.workflow
def test_kept_blobs_get_the_media_type_their_bytes_have(tmp_path) -> None:
    """skopeo --preserve-digests can label plain tar as tar+gzip; strict readers fail on it."""
    source = write_oci_layout(str(tmp_path / "layout"), [LayoutEntry(SIMPLE, ["example.com/mislabeled:1"])])
    with open(os.path.join(source, "index.json")) as handle:
        index = json.load(handle)
    with open(os.path.join(source, "blobs", "sha256", index["manifests"][0]["digest"].split(":")[1])) as handle:
        manifest = json.load(handle)
    gzipped = manifest["layers"][0]
    assert gzipped["mediaType"].endswith("+gzip")
    plain = SIMPLE.layers[0]  # the same layer, stored uncompressed under the gzip label
    with open(os.path.join(source, "blobs", "sha256", hashlib.sha256(plain).hexdigest()), "wb") as handle:
        handle.write(plain)
    gzipped.update(digest="sha256:" + hashlib.sha256(plain).hexdigest(), size=len(plain))
    data = json.dumps(manifest).encode()
    with open(os.path.join(source, "blobs", "sha256", hashlib.sha256(data).hexdigest()), "wb") as handle:
        handle.write(data)
    index["manifests"][0].update(digest="sha256:" + hashlib.sha256(data).hexdigest(), size=len(data))
    with open(os.path.join(source, "index.json"), "w") as handle:
        json.dump(index, handle)
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[source], images=["example.com/mislabeled:1"], format="oci", layers="keep")
    layers = manifest_blob(result(work))["layers"]
    assert layers[0]["mediaType"] == LAYER_TAR  # what the bytes are
    assert layers[0]["digest"] == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert all(layer["mediaType"].endswith("+gzip") for layer in layers[1:])  # the others really are gzip
