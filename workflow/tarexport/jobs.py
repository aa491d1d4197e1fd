"""The small jobs of the docker format, each reading and writing only its declared files."""

from __future__ import annotations

import os
import zlib
from typing import Any

from . import buildpaths
from .digests import sha256_digest
from .errors import TarexportError
from .fileio import Writeback, atomic_output, write_atomically
from .formats import docker_legacy, oci
from .layerfiles import verify_layer_file
from .tarball import DOCKER_20, DOCKER_25, CompressingSink, DirectSink, Sink, write_tar


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
