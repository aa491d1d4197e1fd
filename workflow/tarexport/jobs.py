"""The small jobs of the docker format, each reading and writing only its declared files."""

from __future__ import annotations

import os
import zlib
from typing import Any

from . import buildpaths
from .digests import sha256_digest
from .errors import TarexportError, located
from .fileio import Writeback, atomic_output, write_atomically
from .formats import docker_legacy, oci
from .formats.docker_legacy import VERSION_BYTES, config_diff_ids, v1_layers
from .gojson import decode_v1_image
from .layers import verify_layer_file
from .sources.base import BlobRef
from .sources.containers import open_container
from .tarball import DOCKER_20, DOCKER_25, CompressingSink, DirectSink, Sink, write_tar


def copy_config(recipe: dict[str, Any], output: str, image: str = "") -> None:
    blob = BlobRef.from_json(recipe["blob"])
    container = open_container(blob.source_kind, blob.source_path, recipe["label"])
    try:
        data = container.read_small(blob.member, kind="config")
    except TarexportError as exc:
        raise located(exc, image=image, member=blob.member) from None
    actual = sha256_digest(data)
    if actual != recipe["image_id"]:
        raise TarexportError(
            f"config has digest {actual}, expected image ID {recipe['image_id']}",
            image=image,
            source=recipe["label"],
            member=blob.member,
        )
    write_atomically(output, data)


def write_v1_dir(recipe: dict[str, Any], json_path: str, version_path: str) -> None:
    """A v1 directory's json and VERSION: the top one from the config, lower ones from the chain."""
    if "config" in recipe:
        with open(recipe["config"], "rb") as handle:
            config = handle.read()
        layer = v1_layers(decode_v1_image(config, recipe["config"]), config_diff_ids(config))[-1]
    else:
        layer = v1_layers(None, recipe["diff_ids"], recipe["os"])[-1]
    if layer.v1_id != recipe["v1_id"]:
        raise TarexportError(f"v1 ID {layer.v1_id} differs from the plan's {recipe['v1_id']}; run the workflow again")
    write_atomically(json_path, layer.json_bytes)
    write_atomically(version_path, VERSION_BYTES)


def write_oci_manifest(recipe: dict[str, Any], output: str) -> None:
    """An image's OCI manifest; sizes are those of the finished build files."""
    config_path = recipe["config"]
    config = oci.Descriptor(
        oci.CONFIG_TYPE, "sha256:" + os.path.basename(config_path)[: -len(".json")], os.path.getsize(config_path)
    )
    layers = [
        oci.Descriptor(
            layer["media_type"],
            layer["digest"],
            # a left-out foreign layer has no file: its recorded size stands
            os.path.getsize(layer["path"]) if layer["path"] else layer["size"],
            tuple(layer["urls"]),
        )
        for layer in recipe["layers"]
    ]
    write_atomically(output, oci.manifest_bytes(config, layers))


def _descriptor_of(path: str, media_type: str) -> oci.Descriptor:
    with open(path, "rb") as handle:
        data = handle.read()
    return oci.Descriptor(media_type, sha256_digest(data), len(data))


def write_oci_index(entries: list[tuple[str, str, str, str]], output: str) -> None:
    """index.json from the finished manifests and indexes: (file, media type, full name, tag)."""
    index = [oci.IndexEntry(_descriptor_of(path, media_type), name, tag) for path, media_type, name, tag in entries]
    write_atomically(output, oci.index_bytes(index))


def write_oci_image_index(platforms: list[tuple[str, dict[str, Any]]], output: str) -> None:
    """A multi-platform index over our manifests: (manifest file, platform) per platform."""
    children = [(_descriptor_of(path, oci.MANIFEST_TYPE), platform) for path, platform in platforms]
    write_atomically(output, oci.image_index_bytes(children))


COMPRESSORS = {
    # Fixed levels, no name or time in the gzip header: the same tar gives the same bytes.
    "gzip": lambda: zlib.compressobj(6, zlib.DEFLATED, 31),
    "zstd": lambda: __import__("zstandard").ZstdCompressor(level=3, threads=0).compressobj(),
}


def assemble(
    build_dir: str, output: str, fmt: str = "docker", compression: str = "none", full_verify: bool = False
) -> None:
    if fmt == "docker":
        entries, style = docker_legacy.archive_entries(build_dir), DOCKER_20
    else:
        entries, style = oci.archive_entries(build_dir), DOCKER_25
    for entry in entries:
        if entry.path and not os.path.isfile(entry.path):
            raise TarexportError(f"build file {entry.path} is missing; run the workflow again")
        digest = buildpaths.stored_layer_digest(entry.path)
        if digest:
            verify_layer_file(entry.path, digest, full_verify)
        image_id = buildpaths.stored_config_digest(entry.path)
        if image_id:  # small: always re-hashed
            with open(entry.path, "rb") as handle:
                if sha256_digest(handle.read()) != image_id:
                    raise TarexportError(
                        f"stored config {entry.path} changed after it was made; delete it and run again"
                    )
    with atomic_output(output, durable=True) as out:
        if compression != "none":
            sink: Sink = CompressingSink(out, COMPRESSORS[compression](), Writeback(out.fileno()))
        else:
            sink = DirectSink.open(out) or Sink(out, Writeback(out.fileno()))
        write_tar(entries, sink, style)
