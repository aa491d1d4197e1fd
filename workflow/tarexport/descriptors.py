"""What sources and formats both speak of, below either: where a blob of an OCI layout
lives, the annotations that name an image in an index, and a foreign layer's descriptor.

`blob_member` is the one place a digest becomes a path inside a layout (or a Docker 25+
save, or a registry read like a layout); `digest_of_blob_member` the one way back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .digests import hex_of

# containerd's full image name, and the OCI tag, on an index.json entry
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"

# BuildKit's attestation manifests in a multi-platform index: platform unknown/unknown, these
# annotations naming the kind and the platform manifest they describe
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"

_BLOB_MEMBER_RE = re.compile(r"blobs/sha256/([0-9a-f]{64})")
BLOB_MEMBER_FORM = "blobs/sha256/<64 hex>"  # for messages


def blob_member(digest: str) -> str:
    """`sha256:<hex>` -> `blobs/sha256/<hex>` (the digest checked by the caller)."""
    return f"blobs/sha256/{hex_of(digest)}"


def digest_of_blob_member(member: str) -> str:
    """`blobs/sha256/<64 hex>` -> `sha256:<hex>`; "" for any other name."""
    match = _BLOB_MEMBER_RE.fullmatch(member)
    return "sha256:" + match.group(1) if match else ""


@dataclass(frozen=True)
class ForeignSource:
    """Where a foreign (non-distributable) layer officially comes from, as Docker records it."""

    media_type: str
    size: int
    digest: str
    urls: tuple[str, ...]
    present: bool  # the source holds the bytes too
