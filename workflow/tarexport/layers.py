"""Materialize one layer: read its blob, decompress, verify both digests, store by diff_id."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import BinaryIO

from .errors import TarexportError, located
from .fileio import atomic_link, atomic_output
from .inflate import INFLATERS, compression_of
from .layerfiles import is_tar_start, write_record
from .sources.blobs import BlobRef, SourceKind
from .sources.download import name_download
from .sources.kinds import open_blob

CHUNK = 1 << 20


def _chunks(stream: BinaryIO) -> Iterator[memoryview]:
    """The stream in pieces, read into one reused buffer: a new buffer per read costs the
    kernel fresh pages each time (measured: up to 3x slower for a 900 MB layer). A piece is
    valid until the next is read."""
    view = memoryview(bytearray(CHUNK))
    while count := stream.readinto(view):  # type: ignore[attr-defined]
        yield view[:count]


EXPANSION_FLOOR = 64 << 20  # with a ratio limit, small blobs may always expand to this much
SPACE_CHECK_EVERY = 16 << 20


class SpaceGuard:
    """Stops a layer whose uncompressed bytes would fill the disk, as they are written.

    A decompression bomb is refused by what it would cost, not by its ratio: real layers of
    zero-filled or sparse files expand thousands of times (a 500 MB file in 56 KB of zstd),
    and every loader takes them. So: at most `max_bytes` for one layer, and never less than
    `keep_free` left on the output's file system (asked of the kernel every 16 MiB written,
    so concurrent jobs count too; between two checks at most 16 MiB more go down). A ratio
    limit (`max_expansion`) is opt-in. Uncompressed blobs need no guard: a copy takes what
    the blob itself takes.
    """

    def __init__(self, output: str, max_expansion: int | None = None, max_bytes: int | None = None, keep_free: int = 0):
        self.directory = os.path.dirname(os.path.abspath(output))
        self.max_expansion = max_expansion
        self.max_bytes = max_bytes
        self.keep_free = keep_free
        self.next_check = 0

    def check(self, blob_size: int, written: int, writing: bool) -> None:
        """`written` uncompressed bytes so far (`writing`: they land on the disk)."""
        if self.max_expansion and written > max(blob_size * self.max_expansion, EXPANSION_FLOOR):
            raise TarexportError(
                f"layer expands past {self.max_expansion} times its {blob_size} bytes (max_layer_expansion);"
                " raise it, or set it to null, if the layer is genuine"
            )
        if self.max_bytes is not None and written > self.max_bytes:
            raise TarexportError(
                f"layer expands past {self.max_bytes >> 20} MiB (max_layer_mib); raise it if the layer is genuine"
            )
        if writing and self.keep_free and written >= self.next_check:
            self.next_check = written + SPACE_CHECK_EVERY
            info = os.statvfs(self.directory)
            free = info.f_bavail * info.f_frsize
            if free < self.keep_free:
                raise TarexportError(
                    f"layer would leave less than {self.keep_free >> 20} MiB free in {self.directory}"
                    f" ({written >> 20} MiB written, {free >> 20} MiB free); free space there or lower keep_free_mib"
                )


def materialize(
    blob: BlobRef,
    diff_id: str,
    output: str,
    label: str,
    image: str = "",
    keep_compressed: bool = False,
    guard: SpaceGuard | None = None,
    link: bool = True,
) -> None:
    """Write the layer to `output`, uncompressed (or as the blob is, with `keep_compressed`),
    after checking the blob's digest and size, that it is a tar, that `guard` lets it be
    written, and that the uncompressed bytes match diff_id. With
    `link`, a blob stored as it is, from a file of an OCI layout is hard-linked where
    the file system allows, and checked through the link."""
    where = {"image": image, "source": label, "member": blob.member}
    try:
        stream, size = open_blob(blob, label)
    except TarexportError as exc:
        raise located(exc, **where) from None
    images = image if len(image) <= 80 else image[:77] + "..."
    name_download(stream, f"{images}: layer {blob.digest[:19]}" if image else f"layer {blob.digest[:19]}")
    with stream:
        if blob.size >= 0 and size != blob.size:
            raise TarexportError(f"layer blob is {size} bytes, the manifest says {blob.size}", **where)
        try:
            head = stream.peek(4)[:4]  # type: ignore[attr-defined]
        except TarexportError as exc:  # a docker-save archive shrunk since planning
            raise located(exc, **where) from None
        kind = compression_of(head)
        guard = guard or SpaceGuard(output)
        blob_hash = hashlib.sha256()
        # an uncompressed blob is its own diff: hash each byte once
        diff_hash = blob_hash if kind == "tar" else hashlib.sha256()
        # A blob stored as it is, from a file: hard-link it instead of copying (where the
        # file system allows), then check it through the link. Snakemake touches outputs,
        # so the source blob's mtime changes too; its content never does.
        linkable = link and (kind == "tar" or keep_compressed) and blob.source_kind == SourceKind.OCI_LAYOUT
        try:
            with (atomic_link.attempt(stream, output) if linkable else None) or atomic_output(output) as out:

                def blob_chunks() -> Iterator[bytes]:
                    for chunk in _chunks(stream):
                        blob_hash.update(chunk)
                        if keep_compressed and out:
                            out.write(chunk)
                        yield chunk

                data = INFLATERS.get(kind, lambda c: c)(blob_chunks())
                expanded = 0
                first = b""
                for piece in data:
                    if len(first) < 512:
                        first += piece[: 512 - len(first)]
                    expanded += len(piece)
                    guard.check(size, expanded, bool(out) and not keep_compressed)
                    if diff_hash is not blob_hash:
                        diff_hash.update(piece)
                    if not keep_compressed and out:
                        out.write(piece)
                blob_digest = "sha256:" + blob_hash.hexdigest()
                if blob.digest and blob_digest != blob.digest:
                    raise TarexportError(f"layer blob has digest {blob_digest}, expected {blob.digest}", **where)
                actual = "sha256:" + diff_hash.hexdigest()
                if diff_id and actual != diff_id:  # none: a blob that is no layer (an attestation's)
                    raise TarexportError(f"uncompressed layer has digest {actual}, expected diff_id {diff_id}", **where)
                if diff_id and not is_tar_start(first):
                    raise TarexportError("layer is not a tar archive", **where)
        except TarexportError as exc:
            raise located(exc, **where) from None
        except Exception as exc:  # zlib.error, zstandard.ZstdError, EOFError
            # a damaged blob is reported as such: finish hashing it before blaming its format
            for chunk in _chunks(stream):
                blob_hash.update(chunk)
            blob_digest = "sha256:" + blob_hash.hexdigest()
            if blob.digest and blob_digest != blob.digest:
                raise TarexportError(f"layer blob has digest {blob_digest}, expected {blob.digest}", **where) from None
            raise TarexportError(f"layer is not valid {kind} ({exc})", **where) from exc
    write_record(output)


def run_layer_job(recipe_text: str, source_text: str, output: str, context: str = "", keep: bool = False) -> None:
    """A layer job's work from its recipe and source (their JSON texts, as the rules pass them):
    `tarexport layer`, and the assembly making a damaged stored layer again (repair.py)."""
    from .recipes import LayerRecipe, LayerSource

    recipe, source = LayerRecipe.from_json(json.loads(recipe_text)), LayerSource.from_json(json.loads(source_text))
    materialize(
        source.blob,
        recipe.diff_id,
        output,
        source.label,
        context,
        keep_compressed=keep,
        guard=SpaceGuard(output, source.max_expansion, source.max_bytes, source.keep_free),
        link=source.link,
    )
