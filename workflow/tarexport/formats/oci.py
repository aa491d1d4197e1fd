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
from typing import Any, NamedTuple

from .. import buildpaths
from ..descriptors import ATTESTATION_MANIFEST, CONTAINERD_NAME, OCI_REF_NAME, REFERENCE_TYPE, blob_member
from ..digests import hex_of, sha256_digest
from ..dockerconfig import decode_v1_image
from ..errors import TarexportError
from ..gojson import encode_string, encode_value
from ..mediatypes import MediaType, is_foreign_layer
from ..tarball import Entry, sort_key
from .docker_legacy import file_mtime
from .saveindex import parse_manifest_json

LAYOUT_BYTES = b'{"imageLayoutVersion": "1.0.0"}'


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()

    def encode(self, annotations: dict[str, str] | None = None, platform: dict[str, Any] | None = None) -> str:
        # ocispec.Descriptor field order: mediaType, digest, size, urls, annotations, data, platform
        text = '{"mediaType":' + encode_string(self.media_type) + ',"digest":' + encode_string(self.digest)
        text += f',"size":{self.size}'
        if self.urls:
            text += ',"urls":' + encode_value(list(self.urls))
        if annotations:
            text += ',"annotations":' + encode_value(annotations)
        if platform is not None:
            text += ',"platform":' + encode_platform(platform)
        return text + "}"


def encode_platform(platform: dict[str, Any]) -> str:
    """ocispec.Platform: architecture, os, os.version, os.features, variant (the last three omitempty)."""
    text = '{"architecture":' + encode_string(str(platform.get("architecture", "")))
    text += ',"os":' + encode_string(str(platform.get("os", "")))
    if platform.get("os.version"):
        text += ',"os.version":' + encode_string(str(platform["os.version"]))
    features = platform.get("os.features")
    if isinstance(features, list) and features:
        text += ',"os.features":' + encode_value([str(f) for f in features])
    if platform.get("variant"):
        text += ',"variant":' + encode_string(str(platform["variant"]))
    return text + "}"


class IndexChild(NamedTuple):
    descriptor: Descriptor
    platform: dict[str, Any]
    annotations: dict[str, str] | None = None


def image_index_bytes(children: list[IndexChild]) -> bytes:
    """A multi-platform image index over our manifests (and kept attestation manifests)."""
    return _index_of([c.descriptor.encode(annotations=c.annotations, platform=c.platform) for c in children])


def _index_of(encoded_descriptors: list[str]) -> bytes:
    """An OCI index as json.Marshal(ocispec.Index) writes it, around descriptors already encoded."""
    items = ",".join(encoded_descriptors)
    return ('{"schemaVersion":2,"mediaType":"' + MediaType.OCI_INDEX + '","manifests":[' + items + "]}").encode()


def manifest_bytes(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """An OCI image manifest as json.Marshal(ocispec.Manifest) writes it."""
    return (
        '{"schemaVersion":2,"mediaType":"'
        + MediaType.OCI_MANIFEST
        + '","config":'
        + config.encode()
        + ',"layers":['
        + ",".join(layer.encode() for layer in layers)
        + "]}"
    ).encode()


@dataclass(frozen=True)
class IndexEntry:
    manifest: Descriptor  # an image manifest, or a multi-platform index
    full_name: str  # "" for an untagged image
    tag: str


def index_bytes(entries: list[IndexEntry]) -> bytes:
    items = []
    for entry in entries:
        annotations = {CONTAINERD_NAME: entry.full_name, OCI_REF_NAME: entry.tag} if entry.full_name else None
        items.append(entry.manifest.encode(annotations))
    return _index_of(items)


def layer_build_file(build_dir: str, descriptor: Descriptor) -> str:
    """Uncompressed layers live by diff_id; kept blobs by their own digest. A kept blob whose
    bytes are plain tar (its source labelled it compressed) is described as plain tar but
    stays where it was kept: the same bytes, so either file serves."""
    layer, blob = (
        buildpaths.layer(build_dir, hex_of(descriptor.digest)),
        buildpaths.blob(build_dir, hex_of(descriptor.digest)),
    )
    if descriptor.media_type in (MediaType.OCI_LAYER, MediaType.OCI_FOREIGN_LAYER):
        return blob if not os.path.exists(layer) and os.path.exists(blob) else layer
    return blob


def _descriptors(document: dict[str, Any]) -> tuple[Descriptor, list[Descriptor]]:
    """Config and layer descriptors of a manifest this module wrote."""

    def descriptor(item: dict[str, Any]) -> Descriptor:
        return Descriptor(str(item["mediaType"]), str(item["digest"]), int(item["size"]), tuple(item.get("urls") or ()))

    return descriptor(document["config"]), [descriptor(layer) for layer in document["layers"]]


def archive_entries(build_dir: str, document_files: list[str]) -> list[Entry]:
    """The archive's entries, found by walking from index.json through the build directory.

    `document_files` are the manifests and indexes the plan made (relative to build_dir):
    only those are read (a shared build directory holds other configurations' too). Blobs
    are written once each; layers and configs are stamped with the `created` of the first
    image using them (as Docker stamps blobs with their image's), the rest with 0.
    """
    documents: dict[str, tuple[str, bytes]] = {}  # digest -> file and bytes, our manifests and indexes
    for name in document_files:
        path = os.path.join(build_dir, name)
        with open(path, "rb") as handle:
            data = handle.read()
        documents[sha256_digest(data)] = (path, data)
    blobs: dict[str, Entry] = {}

    def add(digest: str, path: str, mtime: int, check: str = "") -> None:
        name = blob_member(digest)
        blobs.setdefault(name, Entry(name, "file", mtime, path=path, check=(check, digest) if check else None))

    def walk(descriptor: dict[str, Any]) -> None:
        found = documents.get(descriptor["digest"])
        if found is None:
            raise TarexportError(f"build file for {descriptor['digest']} is missing; run the workflow again")
        path, data = found
        add(descriptor["digest"], path, 0, "document")  # as read above: checked again as written
        document = json.loads(data)
        if descriptor["mediaType"] == MediaType.OCI_INDEX:
            for child in document["manifests"]:
                walk(child)
            return
        config, layers = _descriptors(document)
        if (descriptor.get("annotations") or {}).get(REFERENCE_TYPE) == ATTESTATION_MANIFEST:
            for blob in (config, *layers):  # kept as the source holds them, and checked as layers are
                add(blob.digest, buildpaths.blob(build_dir, hex_of(blob.digest)), 0, "layer")
            return
        config_file = buildpaths.config(build_dir, hex_of(config.digest))
        with open(config_file, "rb") as handle:
            created = file_mtime(decode_v1_image(handle.read(), config_file).values["created"].unix_seconds())
        add(config.digest, config_file, created, "config")
        for layer in layers:
            layer_file = layer_build_file(build_dir, layer)
            if is_foreign_layer(layer.media_type) and not os.path.exists(layer_file):
                continue  # a foreign layer left out (`foreign_layers: skip`): loaders fetch it from its URLs
            add(layer.digest, layer_file, created, "layer")

    with open(buildpaths.oci_index(build_dir), "rb") as handle:
        for descriptor in json.loads(handle.read())["manifests"]:
            walk(descriptor)
    with open(buildpaths.manifest(build_dir, "oci"), "rb") as handle:
        tagged = any(entry.repo_tags for entry in parse_manifest_json(handle.read()))
    out = [Entry("blobs", "dir", 0), Entry("blobs/sha256", "dir", 0), *blobs.values()]
    out.append(Entry("index.json", "file", 0, path=buildpaths.oci_index(build_dir)))
    out.append(Entry("manifest.json", "file", 0, path=buildpaths.manifest(build_dir, "oci")))
    out.append(Entry("oci-layout", "file", 0, data=LAYOUT_BYTES))
    if tagged:
        out.append(Entry("repositories", "file", 0, path=buildpaths.repositories(build_dir, "oci")))
    return sorted(out, key=sort_key)
