"""Source kinds, and the one table from a kind to the container a job reads it through.

A recipe names a blob by kind and location (`BlobRef`); `open_blob` turns them back into
bytes. Jobs import only their own kind's module (ssl and http cost a layer job's start:
a registry's module is never imported by a job reading a layout), so the table names a
module and a class. A new kind is one module with a `Container` subclass (whose `at` and
`describe` read its location) and one row here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, BinaryIO

from ..errors import TarexportError
from .blobs import BlobRef, SourceKind

if TYPE_CHECKING:
    from .containers import Container


_CONTAINERS: dict[SourceKind, tuple[str, str]] = {
    SourceKind.OCI_LAYOUT: (".containers", "DirectoryContainer"),
    SourceKind.DOCKER_ARCHIVE: (".containers", "TarContainer"),
    SourceKind.REGISTRY: (".registry", "RegistryContainer"),
}


def container_class(kind: str) -> type[Container]:
    module, name = _CONTAINERS[SourceKind(kind)]
    return getattr(importlib.import_module(module, __package__), name)  # type: ignore[no-any-return]


def open_container(kind: str, location: str, label: str) -> Container:
    """A job's way back to its source, from the kind and location in its recipe."""
    return container_class(kind).at(location, label)


def describe_location(kind: str, location: str) -> str:
    """The location for messages (a registry's is settings and repository: its URL)."""
    return container_class(kind).describe(location)


def open_blob(blob: BlobRef, label: str) -> tuple[BinaryIO, int]:
    """A stream of a blob's bytes and its size. A tar member whose place was found when
    planning is read from there, without indexing the archive again (the job then checks
    its digest, so a changed archive is caught)."""
    if blob.source_kind == SourceKind.DOCKER_ARCHIVE and blob.offset >= 0:
        from .containers import open_section

        try:
            return open_section(blob.source_path, blob.offset, blob.size), blob.size
        except FileNotFoundError:
            raise TarexportError("archive is missing", source=label, member=blob.member) from None
        except OSError as exc:
            raise TarexportError(f"cannot read ({exc.strerror})", source=label, member=blob.member) from exc
    return open_container(blob.source_kind, blob.source_path, label).open(blob.member)
