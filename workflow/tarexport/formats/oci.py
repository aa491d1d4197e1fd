"""The archive Docker 25+ writes: an OCI image layout plus manifest.json and repositories.

One blob per digest (layers, configs, manifests), no symlinks. index.json has one
entry per tag, named for containerd (`io.containerd.image.name`, the full reference)
and for OCI tools (`org.opencontainers.image.ref.name`, the tag); an untagged image gets
one entry without names. JSON is written as Go's json.Marshal writes these structs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .. import buildpaths
from ..digests import hex_of, sha256_digest
from ..gojson import decode_v1_image, encode_string, encode_value, go_text
from ..tarball import Entry, sort_key
from .docker_legacy import file_mtime
from .saveindex import parse_manifest_json

LAYOUT_BYTES = b'{"imageLayoutVersion": "1.0.0"}'
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_TYPES = {"none": LAYER_TAR, "gzip": LAYER_TAR + "+gzip", "zstd": LAYER_TAR + "+zstd"}
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def encode(self, annotations: dict[str, str] | None = None) -> str:
        # ocispec.Descriptor field order: mediaType, digest, size, urls, annotations, ...
        text = (
            f'{{"mediaType":{encode_string(self.media_type)},"digest":{encode_string(self.digest)},"size":{self.size}'
        )
        if annotations:
            text += ',"annotations":' + encode_value(annotations)
        return text + "}"


def manifest_bytes(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """An OCI image manifest as json.Marshal(ocispec.Manifest) writes it."""
    return (
        '{"schemaVersion":2,"mediaType":"'
        + MANIFEST_TYPE
        + '","config":'
        + config.encode()
        + ',"layers":['
        + ",".join(layer.encode() for layer in layers)
        + "]}"
    ).encode()


@dataclass(frozen=True)
class IndexEntry:
    manifest: Descriptor
    full_name: str  # "" for an untagged image
    tag: str


def index_bytes(entries: list[IndexEntry]) -> bytes:
    items = []
    for entry in entries:
        annotations = {CONTAINERD_NAME: entry.full_name, OCI_REF_NAME: entry.tag} if entry.full_name else None
        items.append(entry.manifest.encode(annotations))
    return ('{"schemaVersion":2,"mediaType":"' + INDEX_TYPE + '","manifests":[' + ",".join(items) + "]}").encode()


def blob_path(digest: str) -> str:
    return f"blobs/sha256/{hex_of(digest)}"


def layer_build_file(build_dir: str, descriptor: Descriptor) -> str:
    """Uncompressed layers live by diff_id; kept compressed blobs by their own digest."""
    if descriptor.media_type == LAYER_TAR:
        return buildpaths.layer(build_dir, hex_of(descriptor.digest))
    return buildpaths.blob(build_dir, hex_of(descriptor.digest))


def parse_manifest(data: bytes) -> tuple[Descriptor, list[Descriptor]]:
    """Config and layer descriptors of a manifest this module wrote."""
    document = json.loads(go_text(data))

    def descriptor(item: dict[str, object]) -> Descriptor:
        return Descriptor(str(item["mediaType"]), str(item["digest"]), int(item["size"]))  # type: ignore[call-overload]

    return descriptor(document["config"]), [descriptor(layer) for layer in document["layers"]]


def archive_entries(build_dir: str) -> list[Entry]:
    """The archive's entries from the build directory, images in manifest.json order.

    A blob shared by several images is written once, stamped with the `created` of the
    first image using it (Docker stamps blobs with their image's `created`).
    """
    with open(buildpaths.manifest(build_dir, "oci"), "rb") as handle:
        saved = parse_manifest_json(handle.read())
    blobs: dict[str, Entry] = {}
    for entry in saved:
        image_hex = entry.config.rsplit("/", 1)[1]
        manifest_file = buildpaths.oci_manifest(build_dir, image_hex)
        with open(manifest_file, "rb") as handle:
            manifest = handle.read()
        config, layers = parse_manifest(manifest)
        config_file = buildpaths.config(build_dir, hex_of(config.digest))
        with open(config_file, "rb") as handle:
            created = file_mtime(decode_v1_image(handle.read(), config_file).values["created"].unix_seconds())
        found = [(sha256_digest(manifest), manifest_file, 0), (config.digest, config_file, created)]
        found += [(layer.digest, layer_build_file(build_dir, layer), created) for layer in layers]
        for digest, path, mtime in found:
            name = blob_path(digest)
            blobs.setdefault(name, Entry(name, "file", mtime, path=path))
    directory = buildpaths.format_dir(build_dir, "oci")
    out = [Entry("blobs", "dir", 0), Entry("blobs/sha256", "dir", 0), *blobs.values()]
    out.append(Entry("index.json", "file", 0, path=buildpaths.oci_index(build_dir)))
    out.append(Entry("manifest.json", "file", 0, path=buildpaths.manifest(build_dir, "oci")))
    out.append(Entry("oci-layout", "file", 0, data=LAYOUT_BYTES))
    if any(entry.repo_tags for entry in saved):
        out.append(Entry("repositories", "file", 0, path=os.path.join(directory, "repositories")))
    return sorted(out, key=sort_key)
