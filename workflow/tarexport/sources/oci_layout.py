"""Images of an OCI image layout (a directory, or the layout inside a Docker 25+ save)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..descriptors import (
    ATTESTATION_MANIFEST,
    CONTAINERD_NAME,
    OCI_REF_NAME,
    REFERENCE_DIGEST,
    REFERENCE_TYPE,
    ForeignSource,
    blob_member,
)
from ..digests import check_digest, sha256_digest
from ..errors import TarexportError, located
from ..mediatypes import is_config, is_foreign_layer, is_index, is_layer, is_manifest, layer_compression
from ..reference import Reference, is_valid_tag, parse_normalized
from .base import BlobRef, LayerRef, SourceAttestation, SourceImage, SourceIndex
from .containers import Container
from .metadata import OCI_DOCUMENT, OCI_INDEX, check_layout_file, diff_ids_of, parse_json

MAX_INDEX_DEPTH = 4


def read_verified(container: Container, descriptor: dict[str, Any], what: str) -> tuple[bytes, BlobRef]:
    """Read a metadata blob and check it against its descriptor's digest and size."""
    digest = check_digest(descriptor.get("digest"), f"{what} digest")
    member = blob_member(digest)
    data = container.read_small(member, kind=what)
    actual = sha256_digest(data)
    if actual != digest:
        raise TarexportError(
            f"{what} content has digest {actual}, expected {digest}", source=container.label, member=member
        )
    size = descriptor.get("size")
    if isinstance(size, int) and not isinstance(size, bool) and size != len(data):
        raise TarexportError(
            f"{what} is {len(data)} bytes, descriptor says {size}", source=container.label, member=member
        )
    return data, BlobRef(container.kind, container.path, member, digest, len(data))


def names_from_annotations(annotations: Any, repository: str) -> list[Reference]:
    """Names of an index.json entry: containerd's full name, else the OCI ref name."""
    if not isinstance(annotations, dict):
        return []
    full = annotations.get(CONTAINERD_NAME)
    if isinstance(full, str) and full:
        return [parse_normalized(full)]
    ref_name = annotations.get(OCI_REF_NAME)
    if not isinstance(ref_name, str) or not ref_name:
        return []
    if repository and is_valid_tag(ref_name):
        return [parse_normalized(f"{repository}:{ref_name}")]
    if "/" in ref_name or ":" in ref_name:
        return [parse_normalized(ref_name)]
    return []  # a bare tag with no repository configured names nothing


def platform_matches(descriptor: dict[str, Any], platform: str) -> bool:
    wanted = platform.split("/")
    found = descriptor.get("platform")
    if not isinstance(found, dict):
        return False
    have = [found.get("os", ""), found.get("architecture", "")]
    if len(wanted) > 2:
        have.append(found.get("variant", ""))
    return have == wanted[: len(have)]


def platform_name(platform: Any) -> str:
    if not isinstance(platform, dict):
        return ""
    return "/".join(str(p) for p in (platform.get("os"), platform.get("architecture"), platform.get("variant")) if p)


@dataclass
class LayoutContents:
    images: list[SourceImage]
    indexes: list[SourceIndex]


def images_from_layout(
    container: Container,
    repository: str,
    platform: str,
    all_platforms: bool = False,
    attestations: bool = True,
    may_be_empty: bool = False,
) -> LayoutContents:
    """The images of a layout. Through a multi-platform index a name gets the image for
    `platform`; with `all_platforms` every platform's image is read and the index recorded.
    `may_be_empty`: an index without a manifests list (null, or none at all) holds no images;
    Docker 25+ saves so an image saved by ID only, listing it in manifest.json alone (Go
    writes an empty slice as null)."""
    source = container.label
    if not container.exists("oci-layout"):
        raise TarexportError("has no oci-layout file; not an OCI image layout", source=source)
    check_layout_file(container.read_small("oci-layout"), source)
    index = parse_json(container.read_small("index.json"), "index.json", source, "index.json", shape=OCI_INDEX)
    manifests = index.get("manifests")
    if manifests is None and may_be_empty:
        return LayoutContents([], [])
    if not isinstance(manifests, list):
        raise TarexportError("index.json has no manifests list", source=source, member="index.json")
    reader = LayoutReader(container, platform, all_platforms, attestations)
    for entry in manifests:
        if not isinstance(entry, dict):
            raise TarexportError("index.json entry is not an object", source=source, member="index.json")
        try:
            names = names_from_annotations(entry.get("annotations"), repository)
            check_digest(entry.get("digest"), "manifest digest")
        except TarexportError as error:
            raise located(error, source=source, member="index.json") from None
        reader.add_target(entry, names, depth=0)
    return LayoutContents(list(reader.images.values()), reader.indexes)


@dataclass
class LayoutReader:
    container: Container  # its label names the source in messages
    platform: str
    all_platforms: bool
    attestations: bool = True  # read a kept index's attestation manifests (else left unopened)
    images: dict[str, SourceImage] = field(default_factory=dict)
    indexes: list[SourceIndex] = field(default_factory=list)
    # descriptor (digest, media type, size) -> (image ID, the index kept or None): each
    # manifest and index is read once, however many tags or parent indexes name it
    # (30,000 tags of one image; indexes nested 40 wide and 4 deep)
    _read: dict[tuple[Any, Any, Any], tuple[str, SourceIndex | None]] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.container.label

    def add_target(self, descriptor: dict[str, Any], names: list[Reference], depth: int) -> str:
        """Add the image a descriptor names (through indexes); return its image ID."""
        key = (descriptor.get("digest"), descriptor.get("mediaType"), descriptor.get("size"))
        if key in self._read:
            image_id, index = self._read[key]
            name_image(self.images[image_id], names)
            if index is not None:
                self.indexes.append(dataclasses.replace(index, names=names))
            return image_id
        source = self.source
        media_type = descriptor.get("mediaType")
        data, ref = read_verified(self.container, descriptor, "manifest")
        document = parse_json(data, "manifest", source, ref.member, shape=OCI_DOCUMENT)
        media_type = media_type or document.get("mediaType")
        if is_index(media_type) or (media_type is None and "manifests" in document):
            image_id, index = self._add_index(document, ref, names, depth)
            self._read[key] = (image_id, index)
            return image_id
        if not is_manifest(media_type) and media_type is not None:
            raise TarexportError(f"unsupported manifest media type {media_type!r}", source=source, member=ref.member)
        image_id = _add_manifest(self.container, document, ref, names, self.images)
        self._read[key] = (image_id, None)
        return image_id

    def _add_index(
        self, document: dict[str, Any], ref: BlobRef, names: list[Reference], depth: int
    ) -> tuple[str, SourceIndex | None]:
        source = self.source
        if depth >= MAX_INDEX_DEPTH:
            raise TarexportError("image indexes nest too deep", source=source, member=ref.member)
        children = document.get("manifests")
        if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
            raise TarexportError("image index has no manifests list", source=source, member=ref.member)
        chosen = [c for c in children if platform_matches(c, self.platform)]
        if not chosen:
            have = sorted({platform_name(c.get("platform")) for c in children} - {""})
            raise TarexportError(
                f"index has no manifest for platform {self.platform} (it has: {', '.join(have) or 'none'})",
                image=", ".join(n.familiar() for n in names) or ref.digest,
                source=source,
            )
        image_id = self.add_target(chosen[0], names, depth + 1)
        self.images[image_id].manifest_digests.add(ref.digest)  # `repo@<index digest>` names it too
        if not self.all_platforms:
            return image_id, None
        platforms: list[tuple[dict[str, Any], str]] = []
        by_manifest: dict[str, str] = {}  # platform manifest digest -> image ID
        for child in children:
            name = platform_name(child.get("platform"))
            if not name or "unknown" in name:
                continue  # attestations and the like: not an image to run
            child_id = image_id if child is chosen[0] else self.add_target(child, [], depth + 1)
            platforms.append((child["platform"], child_id))
            by_manifest[str(child.get("digest"))] = child_id
        attestations = [
            self._attestation(child, by_manifest[_annotation(child, REFERENCE_DIGEST)])
            for child in children
            if self.attestations
            and _annotation(child, REFERENCE_TYPE) == ATTESTATION_MANIFEST
            and _annotation(child, REFERENCE_DIGEST) in by_manifest  # about a platform image kept
        ]
        index = SourceIndex(ref.digest, source, platforms, names, attestations)
        self.indexes.append(index)
        return image_id, index

    def _attestation(self, descriptor: dict[str, Any], describes: str) -> SourceAttestation:
        """An attestation manifest, read and checked now; its blobs, read by jobs, as they are."""
        data, ref = read_verified(self.container, descriptor, "manifest")
        document = parse_json(data, "manifest", self.source, ref.member, shape=OCI_DOCUMENT)
        config, layers = document.get("config"), document.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise TarexportError("attestation manifest has no config or layers", source=self.source, member=ref.member)
        if not isinstance(descriptor.get("platform"), dict):
            raise TarexportError("attestation manifest's index entry has no platform", source=self.source)
        blobs = []
        for item in [config, *layers]:
            size = item.get("size") if isinstance(item, dict) else None
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise TarexportError("attestation blob has no valid size", source=self.source, member=ref.member)
            if not isinstance(item.get("mediaType"), str):
                raise TarexportError("attestation blob has no media type", source=self.source, member=ref.member)
            try:
                digest = check_digest(item.get("digest"), "attestation blob digest")
            except TarexportError as error:
                raise located(error, source=self.source, member=ref.member) from None
            blobs.append(LayerRef("", BlobRef(ref.source_kind, ref.source_path, blob_member(digest), digest, size)))
        return SourceAttestation(descriptor, data, describes, blobs)


def _annotation(descriptor: dict[str, Any], key: str) -> str:
    annotations = descriptor.get("annotations")
    value = annotations.get(key) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else ""


def _add_manifest(
    container: Container,
    manifest: dict[str, Any],
    manifest_ref: BlobRef,
    names: list[Reference],
    images: dict[str, SourceImage],
) -> str:
    source, member = container.label, manifest_ref.member
    config_descriptor = manifest.get("config")
    if not isinstance(config_descriptor, dict):
        raise TarexportError("manifest has no config descriptor", source=source, member=member)
    config_type = config_descriptor.get("mediaType")
    if not is_config(config_type):
        raise TarexportError(f"config media type {config_type!r} is not an image config", source=source, member=member)
    config, config_ref = read_verified(container, config_descriptor, "config")
    image_id = config_ref.digest
    diff_ids = diff_ids_of(config, source, config_ref.member)
    layer_descriptors = manifest.get("layers")
    if not isinstance(layer_descriptors, list):
        raise TarexportError("manifest has no layers list", source=source, member=member)
    if len(layer_descriptors) != len(diff_ids):
        raise TarexportError(
            f"manifest lists {len(layer_descriptors)} layers but the config has {len(diff_ids)} diff_ids",
            source=source,
            member=member,
        )
    layers = []
    for descriptor, diff_id in zip(layer_descriptors, diff_ids, strict=True):
        if not isinstance(descriptor, dict):
            raise TarexportError("layer descriptor is not an object", source=source, member=member)
        media_type = descriptor.get("mediaType")
        if not is_layer(media_type):
            raise TarexportError(f"unsupported layer media type {media_type!r}", source=source, member=member)
        try:
            digest = check_digest(descriptor.get("digest"), "layer digest")
        except TarexportError as error:
            raise located(error, source=source, member=member) from None
        size = descriptor.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise TarexportError(f"layer {digest} has no valid size", source=source, member=member)
        blob = BlobRef(manifest_ref.source_kind, manifest_ref.source_path, blob_member(digest), digest, size)
        foreign = None
        if is_foreign_layer(media_type):
            urls = descriptor.get("urls") or []
            if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
                raise TarexportError(f"layer {digest} has invalid urls", source=source, member=member)
            foreign = ForeignSource(media_type, size, digest, tuple(urls), container.exists(blob.member))
        layers.append(LayerRef(diff_id, blob, layer_compression(media_type), foreign))
    image = images.get(image_id)
    if image is None:
        image = SourceImage(image_id, config, config_ref, layers, source)
        images[image_id] = image
    image.manifest_digests.add(manifest_ref.digest)
    image.manifest_digest = image.manifest_digest or manifest_ref.digest
    name_image(image, names)
    return image_id


def name_image(image: SourceImage, names: list[Reference]) -> None:
    for name in names:
        if name.tag:
            image.add_tag(Reference(name.name, name.tag))
        elif name.digest:
            image.add_digest_ref(name)
            image.manifest_digests.add(name.digest)
