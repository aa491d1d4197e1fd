"""Images of a `docker save` archive read through its manifest.json (any Docker version)."""

from __future__ import annotations

import re

from ..descriptors import BLOB_MEMBER_FORM, ForeignSource, digest_of_blob_member
from ..digests import check_digest, is_digest, sha256_digest
from ..errors import TarexportError, located
from ..mediatypes import is_foreign_layer
from ..reference import parse_normalized
from .base import BlobRef, LayerRef, SourceImage
from .containers import TarContainer, clean_member
from .metadata import DOCKER_MANIFEST, diff_ids_of, parse_json


def images_from_manifest(container: TarContainer) -> list[SourceImage]:
    source = container.label
    manifest = parse_json(
        container.read_small("manifest.json"), "manifest.json", source, "manifest.json", list, DOCKER_MANIFEST
    )
    images: dict[str, SourceImage] = {}
    for item in manifest:
        if not isinstance(item, dict):
            raise TarexportError("manifest.json entry is not an object", source=source, member="manifest.json")
        config_member = item.get("Config")
        if not isinstance(config_member, str):
            raise TarexportError("manifest.json entry has no Config", source=source, member="manifest.json")
        config_member = _member(config_member, source)
        config = container.read_small(config_member)
        image_id = sha256_digest(config)
        claimed = _named_digest(config_member)
        if claimed and claimed != image_id:
            raise TarexportError(
                f"config is named by digest {claimed} but its content has digest {image_id}",
                source=source,
                member=config_member,
            )
        diff_ids = diff_ids_of(config, source, config_member)
        layer_members = item.get("Layers")
        if not isinstance(layer_members, list) or not all(isinstance(m, str) for m in layer_members):
            raise TarexportError("manifest.json entry has no Layers list", source=source, member=config_member)
        if len(layer_members) != len(diff_ids):
            raise TarexportError(
                f"Layers lists {len(layer_members)} files but the config has {len(diff_ids)} diff_ids",
                source=source,
                member="manifest.json",
            )
        layer_sources = item.get("LayerSources") or {}
        if not isinstance(layer_sources, dict):
            raise TarexportError("LayerSources is not an object", source=source, member="manifest.json")
        layers = []
        for member, diff_id in zip(layer_members, diff_ids, strict=True):
            member = _member(member, source)
            # Docker 25+ names layers by blob digest; the legacy layout records none.
            digest = digest_of_blob_member(member)
            blob = BlobRef(container.kind, container.path, member, digest, -1)
            foreign = _if_non_distributable(
                _foreign_source(layer_sources.get(diff_id), container.exists(member), source)
            )
            layers.append(LayerRef(diff_id, blob, foreign=foreign))
        config_ref = BlobRef(container.kind, container.path, config_member, image_id, len(config))
        image = images.setdefault(image_id, SourceImage(image_id, config, config_ref, layers, source))
        image.parent = image.parent or _parent(item, source)
        repo_tags = item.get("RepoTags") or []
        if not isinstance(repo_tags, list):
            raise TarexportError("RepoTags is not a list", source=source, member="manifest.json")
        for tag_text in repo_tags:
            if not isinstance(tag_text, str):
                raise TarexportError("RepoTags holds a non-string", source=source, member="manifest.json")
            try:
                ref = parse_normalized(tag_text)
            except TarexportError as error:
                raise located(error, source=source, member="manifest.json") from None
            if not ref.tag or ref.digest:
                raise TarexportError(
                    f"RepoTags entry {tag_text!r} is not name:tag", source=source, member="manifest.json"
                )
            image.add_tag(ref)
    return list(images.values())


def _parent(item: dict[str, object], source: str) -> str:
    """The entry's Parent image ID, or "". Docker's loader drops a Parent that names no image
    of the archive, so one that cannot name any (not an image ID) is dropped here too."""
    parent = item.get("Parent")
    if parent is not None and not isinstance(parent, str):  # Docker's loader fails on it too
        raise TarexportError("Parent is not a string", source=source, member="manifest.json")
    return parent if is_digest(parent) else ""


_CONFIG_NAME_RE = re.compile(r"(?:^|/)([0-9a-f]{64})(?:\.json)?\Z")


def _named_digest(member: str) -> str:
    """The digest a config's file name claims (`<64 hex>.json` as Docker 20.10 writes it,
    `blobs/sha256/<64 hex>` as Docker 25+ does), or "" for any other name (`config.json`)."""
    found = _CONFIG_NAME_RE.search(member)
    return "sha256:" + found.group(1) if found else ""


def _member(path: str, source: str) -> str:
    """A path from manifest.json: inside the archive, and a real digest where one is named."""
    member = clean_member(path, source)
    for name in (path, member):  # as written, and as it resolves (./blobs/..., x/../blobs/...)
        if name.startswith("blobs/") and not digest_of_blob_member(name):
            raise TarexportError(f"is not {BLOB_MEMBER_FORM}", source=source, member=path)
    return member


def _foreign_source(descriptor: object, present: bool, source: str) -> ForeignSource | None:
    """A LayerSources entry: the foreign layer's official descriptor."""
    if descriptor is None:
        return None
    if not isinstance(descriptor, dict):
        raise TarexportError("LayerSources entry is not an object", source=source, member="manifest.json")
    urls = descriptor.get("urls") or []
    size = descriptor.get("size") or 0  # null or absent: Go leaves the zero value
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls) or not isinstance(size, int):
        raise TarexportError("LayerSources entry has invalid urls or size", source=source, member="manifest.json")
    digest = check_digest(descriptor.get("digest"), "LayerSources digest")
    return ForeignSource(str(descriptor.get("mediaType", "")), size, digest, tuple(urls), present)


def _if_non_distributable(entry: ForeignSource | None) -> ForeignSource | None:
    """A LayerSources entry names a foreign layer only with a non-distributable media type.

    Docker 25 writes an entry for every layer (the OCI layer type and the layer's own
    digest); Docker 20.10 and 25 on Linux drop every entry when they load an archive, and
    only a Windows engine keeps one, which it records from a registry only for a foreign
    layer (moby distribution/pull_v2_windows.go). An entry of any other type describes no
    foreign layer, so it is not carried over, and the layer is an ordinary one.
    """
    return entry if entry is not None and is_foreign_layer(entry.media_type) else None
