"""Reading whole sources while planning: which kind a source is, and every image it holds."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import TarexportError, located
from ..reference import Reference
from .base import BlobRef, LayerRef, SourceImage
from .blobs import SourceKind
from .containers import DirectoryContainer, TarContainer, starts_like_tar
from .docker_archive import images_from_manifest
from .oci_layout import LayoutContents, LayoutReader, images_from_layout

if TYPE_CHECKING:  # imported when used: ssl and http cost every layer job's start
    from .registry_http import RegistrySettings

__all__ = ["BlobRef", "SourceImage", "SourceSpec", "load_images"]


@dataclass(frozen=True)
class SourceSpec:
    path: str  # as configured, for messages (a registry's URL)
    resolved: str  # absolute
    type: SourceKind | None = None  # None: told by what is at the path
    repository: str = ""
    registry: RegistrySettings | None = None  # for type registry; url "" serves hosts no other source does
    storage_url: str = ""  # fetched from storage (sources/storage.py): `resolved` is its local copy

    @property
    def kind(self) -> SourceKind:
        return SourceKind.REGISTRY if self.registry is not None else self.type or detect_kind(self)


@dataclass(frozen=True)
class Wanted:
    """What planning asks of a source, whatever its kind."""

    platform: str
    all_platforms: bool
    names: list[Reference]  # a registry, which cannot be listed, is asked for these
    cache_dir: str  # where a registry's verified manifests and configs are kept
    attestations: bool = True  # a kept index's attestation manifests, read (or left unopened)


def detect_kind(spec: SourceSpec) -> SourceKind:
    if os.path.isdir(spec.resolved):
        return SourceKind.OCI_LAYOUT
    if os.path.isfile(spec.resolved):
        if starts_like_tar(spec.resolved):
            return SourceKind.DOCKER_ARCHIVE
        raise TarexportError(
            "is neither an OCI layout directory nor an uncompressed docker-save tar archive", source=spec.path
        )
    raise TarexportError("does not exist", source=spec.path)


def load_images(
    spec: SourceSpec,
    platform: str,
    all_platforms: bool = False,
    wanted: list[Reference] | None = None,
    cache_dir: str = "",
    attestations: bool = True,
) -> LayoutContents:
    """Every image a source holds, with its names (and, with all_platforms, its indexes).

    A registry cannot be listed: it yields the `wanted` names on its host."""
    try:
        return _READERS[spec.kind](spec, Wanted(platform, all_platforms, wanted or [], cache_dir, attestations))
    except TarexportError as error:
        raise located(error, source=spec.path) from None


def _registry_images(spec: SourceSpec, want: Wanted) -> LayoutContents:
    from .registry import RegistryContainer  # ssl and http: only where a registry is read

    settings, label = spec.registry, spec.path
    assert settings is not None

    contents = LayoutContents([], [])
    by_repository: dict[str, list[Reference]] = {}
    for ref in want.names:
        domain, _, path = ref.name.partition("/")
        if domain == settings.host:
            by_repository.setdefault(path, []).append(ref)
    for repository, refs in by_repository.items():
        container = RegistryContainer(settings, repository, label, want.cache_dir)
        reader = LayoutReader(container, want.platform, want.all_platforms, want.attestations)
        for ref in refs:
            try:
                if ref.digest:
                    reader.add_target({"digest": ref.digest}, [ref], depth=0)
                    continue
                for tag in [ref.tag] if ref.tag else container.tags():
                    reader.add_target(container.resolve_tag(tag), [Reference(ref.name, tag)], depth=0)
            except TarexportError as error:
                raise located(error, image=str(ref)) from None
        for image in reader.images.values():  # the config job reads the copy made while planning
            image.config_blob = container.cached_copy(image.config_blob)
        contents.images += reader.images.values()
        contents.indexes += reader.indexes
    return contents


def _layout_images(spec: SourceSpec, want: Wanted) -> LayoutContents:
    if not os.path.isdir(spec.resolved):
        raise TarexportError("is not a directory (type: oci-layout)", source=spec.path)
    container = DirectoryContainer(spec.resolved, spec.path)
    return images_from_layout(container, spec.repository, want.platform, want.all_platforms, want.attestations)


def _archive_images(spec: SourceSpec, want: Wanted) -> LayoutContents:
    """A docker-save archive: a Docker 25+ one holds an OCI layout too; both list in manifest.json."""
    if not os.path.isfile(spec.resolved):
        raise TarexportError("is not a file (type: docker-archive)", source=spec.path)
    container = TarContainer(spec.resolved, spec.path)
    contents = LayoutContents([], [])
    if container.exists("oci-layout") and container.exists("index.json"):
        listed = container.exists("manifest.json")  # then images may be listed there alone
        contents = images_from_layout(
            container, spec.repository, want.platform, want.all_platforms, want.attestations, listed
        )
    images = contents.images
    if container.exists("manifest.json"):
        by_id = {image.image_id: image for image in images}
        for image in images_from_manifest(container):
            known = by_id.get(image.image_id)
            if known is None:
                images.append(image)
                by_id[image.image_id] = image
            else:
                for tag in image.tags:
                    known.add_tag(tag)
                known.parent = known.parent or image.parent
    elif not images:
        raise TarexportError(
            "has neither manifest.json nor an OCI index.json; not a docker-save archive", source=spec.path
        )
    for image in images:
        image.layers = [_placed(layer, container) for layer in image.layers]
    return contents


def _placed(layer: LayerRef, container: TarContainer) -> LayerRef:
    """The layer with where its member's data starts in the archive, so that its job reads
    from there without indexing the archive again (legacy and Docker 25+ saves alike). Not
    when the member is missing, sparse, or not the manifest's size: the job then reports it."""
    blob = layer.blob
    if blob.source_path != container.path:
        return layer
    try:
        offset, size = container.span(blob.member)
    except TarexportError:  # missing, or sparse
        return layer
    if blob.size not in (-1, size):
        return layer
    return dataclasses.replace(layer, blob=blob._replace(size=size, offset=offset))


# How planning reads each kind of source whole (jobs read single blobs: kinds.open_blob).
_READERS: dict[SourceKind, Callable[[SourceSpec, Wanted], LayoutContents]] = {
    SourceKind.OCI_LAYOUT: _layout_images,
    SourceKind.DOCKER_ARCHIVE: _archive_images,
    SourceKind.REGISTRY: _registry_images,
}
