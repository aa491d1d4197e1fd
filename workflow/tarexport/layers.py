"""Materialize one layer: read its blob, decompress, verify both digests, store by diff_id."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from .errors import TarexportError
from .fileio import atomic_output
from .sources import BlobRef, open_container

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def _decompress(chunks: Iterator[bytes], new_decompressor: Callable[[], Any], kind: str) -> Iterator[bytes]:
    """Decompress concatenated frames (Go's gzip reader reads every member); detect truncation."""
    decompressor = new_decompressor()
    started = False
    for chunk in chunks:
        while chunk:
            started = True
            yield decompressor.decompress(chunk)
            if decompressor.eof:
                chunk = decompressor.unused_data
                decompressor = new_decompressor()
                started = False
            else:
                chunk = b""
    if started and not decompressor.eof:
        raise EOFError(f"{kind} stream is truncated")


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    return _decompress(chunks, lambda: zlib.decompressobj(wbits=31), "gzip")


def _unzstd(chunks: Iterator[bytes]) -> Iterator[bytes]:
    import zstandard

    return _decompress(chunks, lambda: zstandard.ZstdDecompressor().decompressobj(), "zstd")


def materialize(
    blob: BlobRef, diff_id: str, output: str, label: str, image: str = "", keep_compressed: bool = False
) -> None:
    """Write the layer to `output`, uncompressed (or as the blob is, with `keep_compressed`),
    after checking the blob's digest and the uncompressed bytes against diff_id."""
    where = {"image": image, "source": label, "member": blob.member}
    container = open_container(blob.source_kind, blob.source_path, label)
    try:
        stream, size = container.open(blob.member)
    except TarexportError as exc:
        raise TarexportError(str(exc), image=image) from None
    if blob.size >= 0 and size != blob.size:
        stream.close()
        raise TarexportError(f"layer blob is {size} bytes, the manifest says {blob.size}", **where)
    blob_hash = hashlib.sha256()
    diff_hash = hashlib.sha256()

    def hashed() -> Iterator[bytes]:
        for chunk in _chunks(stream):
            blob_hash.update(chunk)
            if keep_compressed:
                out.write(chunk)
            yield chunk

    with stream:
        head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
        chunks = hashed()
        if head.startswith(GZIP_MAGIC):
            data = _gunzip(chunks)
        elif head.startswith(ZSTD_MAGIC):
            data = _unzstd(chunks)
        else:
            data = chunks
        try:
            with atomic_output(output) as out:
                for piece in data:
                    diff_hash.update(piece)
                    if not keep_compressed:
                        out.write(piece)
                blob_digest = "sha256:" + blob_hash.hexdigest()
                if blob.digest and blob_digest != blob.digest:
                    raise TarexportError(f"layer blob has digest {blob_digest}, expected {blob.digest}", **where)
                actual = "sha256:" + diff_hash.hexdigest()
                if actual != diff_id:
                    raise TarexportError(f"uncompressed layer has digest {actual}, expected diff_id {diff_id}", **where)
        except TarexportError:
            raise
        except Exception as exc:  # zlib.error, zstandard.ZstdError, EOFError
            kind = "gzip" if head.startswith(GZIP_MAGIC) else "zstd"
            raise TarexportError(f"layer is not valid {kind} ({exc})", **where) from None
