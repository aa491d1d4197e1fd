"""Where one blob's bytes are: plain data a job in another process can open again.

Every layer job imports this, so it stays a NamedTuple (no dataclasses, about 6 ms).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

# Index and manifest files are read whole; anything larger is not one.
MAX_METADATA_BYTES = 16 * 1024 * 1024


class SourceKind(StrEnum):
    OCI_LAYOUT = "oci-layout"
    DOCKER_ARCHIVE = "docker-archive"
    REGISTRY = "registry"

    @property
    def downloads(self) -> bool:
        """A job reading this kind uses the network (it counts against parallel_downloads)."""
        return self is SourceKind.REGISTRY


class BlobRef(NamedTuple):
    """Where one blob's bytes are, and what they must hash to."""

    source_kind: str  # a kinds.SourceKind value (a plain string in recipes)
    source_path: str  # absolute path of the layout directory or the archive file; a registry's key
    member: str  # path inside the layout or archive
    digest: str = ""  # expected sha256 of the bytes; "" when the format records none
    size: int = -1  # expected size; -1 when unknown
    # in a tar source: where the member's data starts, found when planning (-1: look it up)
    offset: int = -1

    def to_json(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BlobRef:
        return cls(**data)
