"""Materialize one layer: read its blob, decompress, verify both digests, store by diff_id."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from .errors import TarexportError, located
from .fileio import atomic_link, atomic_output
from .layerfiles import is_tar_start, write_record
from .sources.blobs import BlobRef, SourceKind
from .sources.kinds import open_blob

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compression_of(head: bytes) -> str:
    """ "gzip", "zstd" or "tar", from a blob's first bytes (not from what its source calls it)."""
    return "gzip" if head.startswith(GZIP_MAGIC) else "zstd" if head.startswith(ZSTD_MAGIC) else "tar"


def _chunks(stream: BinaryIO) -> Iterator[memoryview]:
    """The stream in pieces, read into one reused buffer: a new buffer per read costs the
    kernel fresh pages each time (measured: up to 3x slower for a 900 MB layer). A piece is
    valid until the next is read."""
    view = memoryview(bytearray(CHUNK))
    while count := stream.readinto(view):  # type: ignore[attr-defined]
        yield view[:count]


PIECE = 256 << 10  # most output one inflate call may give


# Input given to one inflate call, at most; for a member that ends inside it, zlib copies
# the rest out as unused_data, so the window starts near the last member's size:
# many small members then cost time in proportion to their bytes, not to the chunk's.
MAX_WINDOW = 256 << 10
MIN_WINDOW = 256
FREE_GZIP_MEMBERS = 1024  # members that need not give output (as FREE_ZSTD_STEPS)


def _decompress(chunks: Iterator[bytes], new_decompressor: Callable[[], Any], kind: str) -> Iterator[bytes]:
    """Decompress concatenated members (Go's gzip reader reads every one); detect truncation.

    At most PIECE bytes per call (zlib's max_length), so memory stays small whatever a
    chunk expands to, and the output buffers stay below the size glibc maps and unmaps
    anew each time (measured: inflating 900 MB took 1.3 s less system time). Each member
    costs a new decompressor: past FREE_GZIP_MEMBERS, each must have given 512 bytes (one
    tar record), so a
    stream of empty members (20 bytes each) is refused rather than walked for minutes.
    """
    decompressor = new_decompressor()
    started = False
    members = produced = 0
    window = MAX_WINDOW
    member_start = 0  # input bytes before the current member, over all chunks
    consumed = 0
    pending_output = False
    for chunk in chunks:
        view = memoryview(chunk)
        offset = 0
        while offset < len(view) or (started and not decompressor.eof and pending_output):
            given = view[offset : offset + window]
            started = True
            piece = decompressor.decompress(given, PIECE)
            produced += len(piece)
            yield piece
            if decompressor.eof:
                used = len(given) - len(decompressor.unused_data)
                offset += used
                consumed += used
                members += 1
                if members > FREE_GZIP_MEMBERS + produced // 512:
                    raise ValueError(f"{members} {kind} members gave only {produced} bytes")
                window = min(MAX_WINDOW, max(MIN_WINDOW, 2 * (consumed - member_start)))
                member_start = consumed
                decompressor = new_decompressor()
                started = False
                pending_output = False
            else:
                used = len(given) - len(decompressor.unconsumed_tail)
                offset += used
                consumed += used
                window = min(MAX_WINDOW, 2 * window)
                pending_output = len(piece) == PIECE  # a full piece: more may be pending
    if started and not decompressor.eof:
        raise EOFError(f"{kind} stream is truncated")


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:  # python-isal inflates about twice as fast as zlib, with the same interface
        from isal import isal_zlib as inflate
    except ImportError:
        inflate = zlib  # type: ignore[assignment]
    return _decompress(chunks, lambda: inflate.decompressobj(wbits=31), "gzip")


def _unzstd(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Concatenated zstd frames, at most PIECE bytes at a time.

    python-zstandard's decompressobj has no max_length: one call inflates all it is given,
    and a 1 MiB chunk of a zstd bomb can hold gigabytes. Its stream_reader is bounded but
    ends quietly at a truncated frame, so the frames are also walked (ZstdFrames).
    Walking costs a Python step per block or frame: a stream of empty ones would cost
    time without giving bytes, so past a few, each step must have given 1 KiB. A chunk
    is walked once the decoder has used it up (before the buffer it is in is reused),
    so that the bytes it gave are counted.
    """
    import zstandard

    frames = ZstdFrames()
    produced = 0
    last: bytes | memoryview = b""

    class Source:  # what stream_reader reads from: the chunks, each walked on the way
        def read(self, size: int = -1) -> bytes | memoryview:
            nonlocal last
            frames.feed(last)
            if frames.steps > FREE_ZSTD_STEPS + produced // 1024:
                raise ValueError(f"{frames.steps} zstd blocks and frames gave only {produced} bytes")
            last = next(chunks, b"")
            return last

    reader = zstandard.ZstdDecompressor().stream_reader(Source(), read_across_frames=True)
    while piece := reader.read(PIECE):
        produced += len(piece)
        yield piece
    if not frames.complete:
        raise EOFError("zstd stream is truncated")


FREE_ZSTD_STEPS = 1024  # blocks and frames that need not give output (empty last blocks)


class ZstdFrames:
    """Walks zstd frames by their headers (RFC 8878), skipping block contents, to tell
    whether the stream ended at the end of a frame."""

    MAGIC = 0xFD2FB528
    SKIPPABLE = 0x184D2A50  # to 0x184D2A5F

    def __init__(self) -> None:
        self.held = b""  # bytes of a header not complete yet
        self.skip = 0  # content bytes to pass over
        self.want, self.step = 4, self._magic
        self.checksum = False
        self.steps = 0  # frames and blocks seen

    @property
    def complete(self) -> bool:
        return self.step == self._magic and not self.held and not self.skip

    def feed(self, chunk: bytes | memoryview) -> None:
        position, end = 0, len(chunk)
        while position < end:
            if self.skip:
                passed = min(self.skip, end - position)
                self.skip -= passed
                position += passed
                continue
            take = min(self.want - len(self.held), end - position)
            self.held += bytes(chunk[position : position + take])
            position += take
            if len(self.held) == self.want:
                field, self.held = self.held, b""
                self.step(int.from_bytes(field, "little"))

    def _magic(self, value: int) -> None:
        self.steps += 1
        if value == self.MAGIC:
            self.want, self.step = 1, self._descriptor
        elif value & 0xFFFFFFF0 == self.SKIPPABLE:
            self.want, self.step = 4, self._skippable
        else:
            raise ValueError("not a zstd frame")

    def _skippable(self, size: int) -> None:
        self.skip, self.want, self.step = size, 4, self._magic

    def _descriptor(self, value: int) -> None:
        single_segment = value >> 5 & 1
        self.checksum = bool(value >> 2 & 1)
        content_size = (1 if single_segment else 0, 2, 4, 8)[value >> 6]
        self.skip = (0 if single_segment else 1) + (0, 1, 2, 4)[value & 3] + content_size
        self.want, self.step = 3, self._block

    def _block(self, value: int) -> None:
        self.steps += 1
        kind, size = value >> 1 & 3, value >> 3
        if kind == 3:
            raise ValueError("reserved zstd block type")
        self.skip = 1 if kind == 1 else size  # an RLE block holds one byte
        if value & 1:  # the last block of its frame
            self.skip += 4 if self.checksum else 0
            self.want, self.step = 4, self._magic


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

                data = {"gzip": _gunzip, "zstd": _unzstd}.get(kind, lambda c: c)(blob_chunks())
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
                if actual != diff_id:
                    raise TarexportError(f"uncompressed layer has digest {actual}, expected diff_id {diff_id}", **where)
                if not is_tar_start(first):
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
