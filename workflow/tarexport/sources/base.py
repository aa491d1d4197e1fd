"""What every source yields: images with their config, layers and names.

A source knows where bytes are; it knows nothing of formats or of the plan.
Blob locations are plain data (`BlobRef`) so a Snakemake job in another process
can open the same bytes from its recipe alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..descriptors import ForeignSource
from ..reference import Reference
from .blobs import MAX_METADATA_BYTES, BlobRef  # noqa: F401 - re-exported for the sources


@dataclass(frozen=True)
class LayerRef:
    diff_id: str
    blob: BlobRef
    compression: str = ""  # "none", "gzip" or "zstd" from the media type; "" when not recorded
    foreign: ForeignSource | None = None


@dataclass
class SourceImage:
    """One image found in a source."""

    image_id: str  # sha256 of the config bytes
    config: bytes
    config_blob: BlobRef
    layers: list[LayerRef]
    source: str  # the source as the user named it, for messages
    tags: list[Reference] = field(default_factory=list)
    manifest_digests: set[str] = field(default_factory=set)  # every manifest or index naming it
    manifest_digest: str = ""  # its own manifest (the first seen); none in a legacy docker-save archive
    digest_refs: list[Reference] = field(default_factory=list)  # names given as `repo@digest`
    # docker-save sources: the image ID its manifest.json entry names as Parent (daemon-local
    # build history that `docker load` keeps and its next save writes again)
    parent: str = ""
    _tag_set: set[Reference] = field(default_factory=set, repr=False, compare=False)
    _digest_ref_set: set[Reference] = field(default_factory=set, repr=False, compare=False)

    def add_tag(self, ref: Reference) -> None:
        """Add a tag once, keeping first-seen order (a set beside the list: an image may
        have tens of thousands of tags)."""
        if not self._tag_set and self.tags:
            self._tag_set.update(self.tags)
        if ref not in self._tag_set:
            self._tag_set.add(ref)
            self.tags.append(ref)

    def add_digest_ref(self, ref: Reference) -> None:
        if not self._digest_ref_set and self.digest_refs:
            self._digest_ref_set.update(self.digest_refs)
        if ref not in self._digest_ref_set:
            self._digest_ref_set.add(ref)
            self.digest_refs.append(ref)

    def names(self) -> set[str]:
        """Repository names the image is known under."""
        return {ref.name for ref in self.tags} | {ref.name for ref in self.digest_refs}


@dataclass(frozen=True)
class SourceAttestation:
    """An attestation manifest of a multi-platform index (BuildKit's SBOM and provenance),
    kept as the source holds it: its manifest's bytes, and its config and layers as blobs."""

    descriptor: dict[str, Any]  # its entry in the source index
    manifest: bytes
    describes: str  # the image ID of the platform image it is about
    blobs: list[LayerRef]  # config, then layers (diff_id "": blobs, not layer tars)


@dataclass
class SourceIndex:
    """A multi-platform index in a source, kept whole with `platforms: all`."""

    digest: str
    source: str
    platforms: list[tuple[dict[str, Any], str]]  # (platform descriptor, image ID), in index order
    names: list[Reference]
    attestations: list[SourceAttestation] = field(default_factory=list)  # in index order
