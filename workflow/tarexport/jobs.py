"""The jobs after the layers, of both formats: an image's OCI manifest, a multi-platform
index, the OCI index.json, and the assembly of the archive. Each reads and writes only its
declared files; the layer jobs are in layers.py and linklayer.py."""

from __future__ import annotations

import os
from collections.abc import Callable

from .compressors import COMPRESSORS
from .descriptors import REFERENCE_DIGEST
from .digests import sha256_digest
from .errors import TarexportError
from .fileio import Writeback, atomic_output, write_atomically
from .formats import docker_legacy, oci
from .inflate import compression_of
from .layerfiles import StoredLayerChanged, verify_layer_file
from .mediatypes import MediaType, is_foreign_layer, layer_compression, oci_layer
from .progress import ProgressLine
from .recipes import AttestationManifest, IndexEntry, ManifestRecipe, PlatformManifest
from .repair import StoredLayerRepair
from .tarball import DOCKER_20, DOCKER_25, Entry, TarStyle, write_tar
from .tarsinks import CompressingSink, DirectSink, Sink


def write_oci_manifest(recipe: ManifestRecipe, output: str, build_dir: str) -> None:
    """An image's OCI manifest; sizes are those of the finished build files (the recipe names
    them relative to `build_dir`)."""
    config_path = os.path.join(build_dir, recipe.config)
    config = oci.Descriptor(
        MediaType.OCI_CONFIG, "sha256:" + os.path.basename(config_path)[: -len(".json")], os.path.getsize(config_path)
    )
    paths = [os.path.join(build_dir, layer.path) if layer.path else "" for layer in recipe.layers]
    layers = [
        oci.Descriptor(
            _media_type_of(path, layer.media_type),
            layer.digest,
            # a left-out foreign layer has no file: its recorded size stands
            os.path.getsize(path) if path else layer.size,
            tuple(layer.urls),
        )
        for layer, path in zip(recipe.layers, paths, strict=True)
    ]
    write_atomically(output, oci.manifest_bytes(config, layers))


def _media_type_of(path: str, declared: str) -> str:
    """A compressed blob stored as the source held it (`layers: keep`) gets the media type its
    bytes have: a source may label plain tar as gzip (skopeo --preserve-digests layouts do),
    and strict readers fail on such a label."""
    if not path or layer_compression(declared) in ("", "none"):
        return declared
    with open(path, "rb") as handle:
        kind = compression_of(handle.read(4))
    return oci_layer("none" if kind == "tar" else kind, foreign=is_foreign_layer(declared))


def _descriptor_of(path: str, media_type: str) -> oci.Descriptor:
    with open(path, "rb") as handle:
        data = handle.read()
    return oci.Descriptor(media_type, sha256_digest(data), len(data))


def write_oci_index(entries: list[IndexEntry], output: str, build_dir: str) -> None:
    """index.json from the finished manifests and indexes, one entry per planned entry."""
    index = [
        oci.IndexEntry(_descriptor_of(os.path.join(build_dir, e.path), e.media_type), e.full_name, e.tag)
        for e in entries
    ]
    write_atomically(output, oci.index_bytes(index))


def write_oci_image_index(
    platforms: list[PlatformManifest], attestations: list[AttestationManifest], output: str, build_dir: str
) -> None:
    """A multi-platform index over our manifests, one per platform in the source's order,
    then the attestation manifests kept, each pointed at our manifest of its platform."""

    def descriptor(path: str, media_type: str) -> oci.Descriptor:
        return _descriptor_of(os.path.join(build_dir, path), media_type)

    children = [oci.IndexChild(descriptor(p.path, MediaType.OCI_MANIFEST), p.platform) for p in platforms]
    for attestation in attestations:
        source = attestation.descriptor
        annotations = dict(source.get("annotations") or {})
        annotations[REFERENCE_DIGEST] = descriptor(attestation.describes, MediaType.OCI_MANIFEST).digest
        media_type = source.get("mediaType") or MediaType.OCI_MANIFEST
        children.append(oci.IndexChild(descriptor(attestation.path, media_type), source["platform"], annotations))
    write_atomically(output, oci.image_index_bytes(children))


# format -> (its archive's entries, read from the build directory; how its tar is written)
ARCHIVES: dict[str, tuple[Callable[[str, list[str]], list[Entry]], TarStyle]] = {
    "docker": (docker_legacy.archive_entries, DOCKER_20),
    "oci": (oci.archive_entries, DOCKER_25),
}


def assemble(
    build_dir: str,
    output: str,
    fmt: str = "docker",
    compression: str = "none",
    full_verify: bool = False,
    documents: list[str] | None = None,
    progress_interval: float = 5.0,
    repair: StoredLayerRepair | None = None,
) -> str:
    """The archive from the build directory; `documents`: the format's own metadata files
    the plan made (OCI manifests and indexes, relative to build_dir). Says how far it is
    every `progress_interval` seconds (a 2 GB gzip archive takes about 40 s); returns the
    archive's sha256. Every stored file the archive takes is hashed as it is written and
    must have its digest; stored layers that fail (before writing, against their records,
    or while written) are made again by `repair`, when it knows them, and the archive is
    written again from them. `full_verify`: each stored layer is also hashed whole before
    writing starts."""
    read_entries, style = ARCHIVES[fmt]
    entries = read_entries(build_dir, documents or [])
    for entry in entries:
        if entry.path and not os.path.isfile(entry.path):
            raise TarexportError(f"build file {entry.path} is missing; run the workflow again")
    try:
        return _write_archive(entries, style, output, compression, full_verify, progress_interval)
    except DamagedStoredFiles as damaged:
        repairable = [(path, error) for path, error in damaged.found if isinstance(error, StoredLayerChanged)]
        if repair is None or len(repairable) < len(damaged.found) or not all(repair.knows(p) for p, _ in repairable):
            raise damaged.found_error() from None
        for path, error in dict(repairable).items():  # a layer two images share: made once
            repair.remake(path, error.finding)
    try:
        return _write_archive(entries, style, output, compression, full_verify, progress_interval)
    except DamagedStoredFiles as damaged:  # changed again meanwhile: nothing more to try
        raise damaged.found_error() from None


def _write_archive(
    entries: list[Entry], style: TarStyle, output: str, compression: str, full_verify: bool, interval: float
) -> str:
    # Before writing, the stored layers against their records (cheap: sampled blocks and
    # sizes), so that a damaged one is made again before gigabytes are written. Then every
    # checked entry is hashed from the bytes written (on a thread beside the writer: hashing
    # releases the GIL), and the archive is published only if each has its digest.
    _check_stored_files(entries, full_verify)
    target = atomic_output(output, durable=True)
    with target as out:
        if compression != "none":
            sink: Sink = CompressingSink(out, COMPRESSORS[compression].new(), Writeback(out.fileno()))
        else:
            sink = DirectSink.open(out) or Sink(out, Writeback(out.fileno()), readback=target.temporary)
        total = sum(
            len(entry.data) if entry.data is not None else os.path.getsize(entry.path)
            for entry in entries
            if entry.kind == "file"
        )
        with ProgressLine(f"writing {output}", lambda: sink.written, total, interval):
            write_tar(entries, sink, style)
        _check_written(entries, sink.entry_digests())
        return sink.sha256()


class DamagedStoredFiles(Exception):
    """Stored files that failed their checks: (path, why) each, in the archive's order."""

    def __init__(self, found: list[tuple[str, TarexportError]]):
        super().__init__(str(found[0][1]))
        self.found = found

    def found_error(self) -> TarexportError:
        return self.found[0][1]


def _check_stored_files(entries: list[Entry], full_verify: bool) -> None:
    """Stored layers against their records: size, and sampled blocks where the record holds
    them (a small layer's whole hash is left to the writing, which hashes every byte); with
    `full_verify`, every layer hashed whole against its digest too. Every entry is checked,
    so that all the damaged ones are known at once."""
    found: list[tuple[str, TarexportError]] = []
    for entry in entries:
        if entry.check is None or entry.check[0] != "layer":
            continue
        try:
            verify_layer_file(entry.path, entry.check[1], full_verify, sampled_only=True)
        except TarexportError as exc:
            found.append((entry.path, exc))
    if found:
        raise DamagedStoredFiles(found)


def _check_written(entries: list[Entry], written: dict[str, str]) -> None:
    """Each checked entry's data, as written into the archive, against the digest it must
    have: a stored file damaged anywhere (or rewritten together with its record) is found
    here, whatever the check before writing saw."""
    found: list[tuple[str, TarexportError]] = []
    for entry in entries:
        if entry.check is None:
            continue
        kind, digest = entry.check
        if written.get(entry.name) == digest:
            continue
        if kind == "layer":  # worded as the record check's finding: either way it changed
            error: TarexportError = StoredLayerChanged(f"stored layer {entry.path} changed after it was made")
        elif kind == "config":
            error = TarexportError(f"stored config {entry.path} changed after it was made; delete it and run again")
        else:
            error = TarexportError(f"build file {entry.path} changed while the archive was written; run again")
        found.append((entry.path, error))
    if found:
        raise DamagedStoredFiles(found)
