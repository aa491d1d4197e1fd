"""Images straight from a registry, through the Distribution (OCI) API v2.

Manifests and configs are read when the plan is made (a tag's digest is looked up on
every run); layer blobs are read by the layer jobs, whose outputs are content-addressed,
so a blob already stored is never downloaded again. Credentials come from environment
variables named in the source or from the Docker/podman auth file, and never appear in a
recipe, a message or the archive.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, BinaryIO, NamedTuple

from ..descriptors import BLOB_MEMBER_FORM, blob_member, digest_of_blob_member
from ..digests import is_digest, sha256_digest
from ..errors import TarexportError
from ..fileio import write_atomically
from ..mediatypes import MANIFEST_ACCEPT, is_index, is_manifest
from ..reference import is_valid_tag
from .base import MAX_METADATA_BYTES, BlobRef
from .blobs import SourceKind
from .containers import Container
from .download import ResumingDownload
from .registry_http import RegistrySettings, RegistryTransport, read_bounded


class RegistryLocation(NamedTuple):
    """Where a job finds a registry blob again: how to reach the registry (names of secrets
    only, never their values) and the repository. Carried in recipes as text."""

    settings: RegistrySettings
    repository: str

    def to_text(self) -> str:
        return json.dumps({"registry": self.settings.to_text(), "repository": self.repository}, sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> RegistryLocation:
        data = json.loads(text)
        return cls(RegistrySettings.from_text(data["registry"]), data["repository"])

    @property
    def url(self) -> str:
        """`<registry URL>/<repository>`, for messages."""
        return self.settings.url + "/" + self.repository


class RegistryContainer(Container):
    """One repository of a registry, read like a layout: members are `blobs/sha256/<hex>`."""

    def __init__(self, settings: RegistrySettings, repository: str, label: str, cache_dir: str = ""):
        self.settings = settings
        self.cache_dir = cache_dir  # verified manifests and configs, by digest: fetched once
        self.repository = repository
        self.label = label
        self.kind = SourceKind.REGISTRY
        # its location, what a job needs to reach it again: settings and repository, no secrets
        self.path = RegistryLocation(settings, repository).to_text()
        self.transport = RegistryTransport(settings, repository, label)

    @classmethod
    def at(cls, location: str, label: str) -> RegistryContainer:
        where = RegistryLocation.from_text(location)
        return cls(where.settings, where.repository, label)

    @classmethod
    def describe(cls, location: str) -> str:
        return RegistryLocation.from_text(location).url

    def cached_copy(self, blob: BlobRef) -> BlobRef:
        """Where the verified copy of a blob read while planning lies: the cache is laid out
        like an OCI layout's blobs, so a job reads it as one, without ssl or http."""
        if not self.cache_dir:
            return blob
        return BlobRef(SourceKind.OCI_LAYOUT, os.path.realpath(self.cache_dir), blob.member, blob.digest, blob.size)

    def _url(self, kind: str, reference: str) -> str:
        return f"{self.settings.url}/v2/{self.repository}/{kind}/{reference}"

    def resolve_tag(self, tag: str) -> dict[str, Any]:
        """The descriptor a tag points at now (asked every run; the content comes from the cache)."""
        request = urllib.request.Request(
            self._url("manifests", tag), method="HEAD", headers={"Accept": MANIFEST_ACCEPT}
        )
        digest, media_type = "", ""
        try:
            with self.transport.send(request) as response:
                digest = response.headers.get("Docker-Content-Digest", "")
                media_type = response.headers.get("Content-Type", "")
        except TarexportError:
            digest = ""
        if not is_digest(digest):
            with self.transport.request(self._url("manifests", tag), MANIFEST_ACCEPT) as response:
                data = read_bounded(response, MAX_METADATA_BYTES, self.settings.timeout, f"manifest {tag}", self.label)
                media_type = response.headers.get("Content-Type", "")
            digest = sha256_digest(data)
            self._store(digest, data)
        descriptor: dict[str, Any] = {"digest": digest}
        media_type = media_type.split(";")[0].strip()
        if is_index(media_type) or is_manifest(media_type):
            descriptor["mediaType"] = media_type
        return descriptor

    def _cached(self, digest: str) -> bytes | None:
        if not self.cache_dir:
            return None
        try:
            with open(self.cache_path(digest), "rb") as handle:
                data = handle.read()
        except OSError:
            return None
        return data if sha256_digest(data) == digest else None

    def _store(self, digest: str, data: bytes) -> None:
        """Cache `data`, which the caller has checked against (or hashed into) `digest`."""
        if self.cache_dir:
            write_atomically(self.cache_path(digest), data)

    def cache_path(self, digest: str) -> str:
        """The cache is laid out like an OCI layout's blobs, so it can be read as one."""
        return os.path.join(self.cache_dir, blob_member(digest))

    def tags(self) -> list[str]:
        """The repository's tags that Docker accepts (others could not be loaded)."""
        what = "the tag list"
        with self.transport.request(f"{self.settings.url}/v2/{self.repository}/tags/list") as response:
            body = read_bounded(response, MAX_METADATA_BYTES, self.settings.timeout, what, self.label)
        try:
            listing = json.loads(body)
        except ValueError:
            listing = None
        tags = listing.get("tags", 0) if isinstance(listing, dict) else 0  # 0: neither list nor null
        if not isinstance(tags, list | None) or not all(isinstance(tag, str) for tag in tags or []):
            raise TarexportError(f"{what} is not a JSON object with a list of tags", source=self.label)
        return [tag for tag in tags or [] if is_valid_tag(tag)]

    def exists(self, member: str) -> bool:
        return bool(digest_of_blob_member(member))

    def _digest_of(self, member: str) -> str:
        digest = digest_of_blob_member(member)
        if not digest:
            raise TarexportError(f"is not {BLOB_MEMBER_FORM}", source=self.label, member=member)
        return digest

    def open(self, member: str) -> tuple[BinaryIO, int]:
        digest = self._digest_of(member)
        url = self._url("blobs", digest)

        def open_at(offset: int) -> Any:
            return self.transport.send(
                urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
            )

        download = ResumingDownload(
            open_at,
            digest,
            self.label,
            self.settings.retries,
            self.settings.progress_interval,
            self.settings.timeout,
        )
        return io.BufferedReader(download, 1 << 20), download.size  # type: ignore[return-value]

    def read_small(self, member: str, limit: int = MAX_METADATA_BYTES, kind: str = "") -> bytes:
        """A manifest (from /manifests/) or config (from /blobs/), from the cache when there."""
        digest = self._digest_of(member)
        cached = self._cached(digest)
        if cached is not None:
            return cached
        endpoint, accept = ("blobs", "") if kind == "config" else ("manifests", MANIFEST_ACCEPT)
        try:
            with self.transport.request(self._url(endpoint, digest), accept) as response:
                data = read_bounded(response, limit, self.settings.timeout, "the metadata", self.label, member)
        except (OSError, http.client.HTTPException) as error:
            raise TarexportError(f"download broke ({error}); run again", source=self.label, member=member) from None
        actual = sha256_digest(data)
        if actual != digest:
            raise TarexportError(
                f"registry served content with digest {actual} for {digest}", source=self.label, member=member
            )
        self._store(digest, data)
        return data
