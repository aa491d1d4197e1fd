"""LayerSources of a docker-save source: only a foreign layer's entry is carried over.

Docker 25 lists every layer there (the OCI layer type and the layer's own digest). Docker
20.10 drops such entries when it loads the archive, so its save writes none (checked
against a Docker 20.10 engine in test_docker_oracle.py); a foreign layer's entry, of a
non-distributable type, is one a Windows engine keeps, and so do we.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from tarexport.startup import prepare
from tests.imagefactory import Image, make_config, make_layer, sha, write_docker25_archive, write_docker_archive
from tests.workflowrun import ROOT

pytestmark = pytest.mark.unit

SCHEMA = os.path.join(ROOT, "schemas", "config.schema.yaml")
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
ORDINARY = [
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.v1.tar",  # as Docker 25 writes every layer's entry
    "application/vnd.oci.image.layer.v1.tar+gzip",
]
NON_DISTRIBUTABLE = [
    FOREIGN,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
]

LAYERS = [make_layer({"base": b"foreign base"}), make_layer({"app": b"ordinary"})]
IMAGE = Image(LAYERS, make_config(LAYERS))


def descriptor(media_type: str, layer: bytes, urls: list[str] | None = None) -> dict[str, object]:
    entry: dict[str, object] = {"mediaType": media_type, "size": len(layer), "digest": sha(layer)}
    return entry | ({"urls": urls} if urls else {})


def exported_manifest(workdir: str, source: str, request: str, fmt: str) -> list[dict[str, object]]:
    """manifest.json as the export writes it (planned in process)."""
    pipeline = prepare({"sources": [source], "images": [request], "format": fmt}, SCHEMA, workdir)
    return json.loads(pipeline.manifest_json)


@pytest.mark.parametrize("fmt", ["docker", "oci"])
@pytest.mark.parametrize("ordinary", ORDINARY)
def test_only_the_foreign_layers_entry_is_carried_over(tmp_path, ordinary: str, fmt: str) -> None:
    foreign = descriptor(FOREIGN, LAYERS[0], ["https://example.invalid/base"])
    listed = {IMAGE.diff_ids[0]: foreign, IMAGE.diff_ids[1]: descriptor(ordinary, LAYERS[1])}
    source = write_docker_archive(str(tmp_path / "save.tar"), [(IMAGE, ["app:1"])], listed)
    (entry,) = exported_manifest(str(tmp_path), source, "app:1", fmt)
    assert entry["LayerSources"] == {IMAGE.diff_ids[0]: foreign}


@pytest.mark.parametrize("non_distributable", NON_DISTRIBUTABLE)
def test_every_non_distributable_type_is_foreign(tmp_path, non_distributable: str) -> None:
    foreign = descriptor(non_distributable, LAYERS[0], ["https://example.invalid/base"])
    source = write_docker_archive(str(tmp_path / "save.tar"), [(IMAGE, ["app:1"])], {IMAGE.diff_ids[0]: foreign})
    (entry,) = exported_manifest(str(tmp_path), source, "app:1", "docker")
    assert entry["LayerSources"] == {IMAGE.diff_ids[0]: foreign}


def test_entries_without_a_foreign_type_are_dropped(tmp_path) -> None:
    """No media type, or one no layer has: nothing says the layer is foreign."""
    listed = {
        IMAGE.diff_ids[0]: {"size": len(LAYERS[0]), "digest": sha(LAYERS[0]), "urls": ["https://example.invalid/a"]},
        IMAGE.diff_ids[1]: descriptor("application/octet-stream", LAYERS[1], ["https://example.invalid/b"]),
    }
    source = write_docker_archive(str(tmp_path / "save.tar"), [(IMAGE, ["app:1"])], listed)
    (entry,) = exported_manifest(str(tmp_path), source, "app:1", "docker")
    assert "LayerSources" not in entry


def docker25_save(path: str, workdir: str) -> str:
    """An archive as Docker 25 saves an untagged image: in manifest.json alone, every layer
    listed in LayerSources with the OCI layer type and its own digest."""
    written = write_docker25_archive(os.path.join(workdir, "plain.tar"), [(IMAGE, [])], workdir)
    with tarfile.open(written) as archive:
        members = [(member, archive.extractfile(member).read()) for member in archive.getmembers() if member.isfile()]  # type: ignore[union-attr]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for member, data in members:
            if member.name == "manifest.json":
                (item,) = json.loads(data)
                item["LayerSources"] = {
                    diff_id: descriptor("application/vnd.oci.image.layer.v1.tar", layer)
                    for diff_id, layer in zip(IMAGE.diff_ids, LAYERS, strict=True)
                }
                data = json.dumps([item]).encode()
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_a_docker25_save_carries_no_layer_sources_over(tmp_path, fmt: str) -> None:
    source = docker25_save(str(tmp_path / "docker25.tar"), str(tmp_path))
    with tarfile.open(source) as archive:
        (listed,) = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert len(listed["LayerSources"]) == 2  # as Docker 25 writes it
    (entry,) = exported_manifest(str(tmp_path), source, IMAGE.image_id, fmt)
    assert "LayerSources" not in entry
