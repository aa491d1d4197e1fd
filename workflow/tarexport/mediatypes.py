"""Media types, named once, with the questions sources and formats ask of them.

A source reads any string a file or registry gives (unknown types included), so the
questions take `str`; what tarexport writes is always one of the `MediaType` members.
(go-containerregistry's pkg/v1/types is the model: typed values and yes/no helpers.)
"""

from __future__ import annotations

from enum import StrEnum


class MediaType(StrEnum):
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_FOREIGN_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_FOREIGN_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_FOREIGN_LAYER_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
    DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


_INDEXES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST})
_MANIFESTS = frozenset({MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST})
_CONFIGS = frozenset({MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG})
# layer type -> (compression, foreign)
_LAYERS = {
    MediaType.OCI_LAYER: ("none", False),
    MediaType.OCI_LAYER_GZIP: ("gzip", False),
    MediaType.OCI_LAYER_ZSTD: ("zstd", False),
    MediaType.DOCKER_LAYER: ("none", False),
    MediaType.DOCKER_LAYER_GZIP: ("gzip", False),
    MediaType.DOCKER_LAYER_ZSTD: ("zstd", False),
    MediaType.OCI_FOREIGN_LAYER: ("none", True),
    MediaType.OCI_FOREIGN_LAYER_GZIP: ("gzip", True),
    MediaType.OCI_FOREIGN_LAYER_ZSTD: ("zstd", True),
    MediaType.DOCKER_FOREIGN_LAYER_GZIP: ("gzip", True),
}
_OCI_LAYERS = {
    ("none", False): MediaType.OCI_LAYER,
    ("gzip", False): MediaType.OCI_LAYER_GZIP,
    ("zstd", False): MediaType.OCI_LAYER_ZSTD,
    ("none", True): MediaType.OCI_FOREIGN_LAYER,
    ("gzip", True): MediaType.OCI_FOREIGN_LAYER_GZIP,
    ("zstd", True): MediaType.OCI_FOREIGN_LAYER_ZSTD,
}

# What a registry is asked for by the manifest endpoint: every index and manifest type.
MANIFEST_ACCEPT = ", ".join(
    [MediaType.OCI_INDEX, MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST_LIST, MediaType.DOCKER_MANIFEST]
)


# Each question takes whatever a JSON document held there: a list or an object is no type
# (and must not reach a set lookup, which would raise on it).


def is_index(media_type: object) -> bool:
    """A multi-platform index (OCI) or manifest list (Docker)."""
    return isinstance(media_type, str) and media_type in _INDEXES


def is_manifest(media_type: object) -> bool:
    """One platform's image manifest."""
    return isinstance(media_type, str) and media_type in _MANIFESTS


def is_config(media_type: object) -> bool:
    return isinstance(media_type, str) and media_type in _CONFIGS


def is_layer(media_type: object) -> bool:
    return isinstance(media_type, str) and media_type in _LAYERS


def is_foreign_layer(media_type: object) -> bool:
    """A non-distributable layer: its registry blob may be absent, its `urls` say where it lives."""
    return isinstance(media_type, str) and _LAYERS.get(media_type, ("", False))[1]


def layer_compression(media_type: object) -> str:
    """ "none", "gzip" or "zstd" for a layer type, "" for anything else."""
    return _LAYERS.get(media_type, ("", False))[0] if isinstance(media_type, str) else ""


def oci_layer(compression: str, foreign: bool = False) -> MediaType:
    """The OCI type tarexport writes for a layer stored with `compression`."""
    return _OCI_LAYERS[(compression, foreign)]
