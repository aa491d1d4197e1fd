"""Inflating a layer blob in bounded pieces: gzip (every member, as Go's reader) and zstd
(every frame), whatever a chunk expands to, with truncation detected and streams of empty
members, blocks or frames refused. What the bytes are is told by their first bytes."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Any

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compression_of(head: bytes) -> str:
    """ "gzip", "zstd" or "tar", from a blob's first bytes (not from what its source calls it)."""
    return "gzip" if head.startswith(GZIP_MAGIC) else "zstd" if head.startswith(ZSTD_MAGIC) else "tar"


PIECE = 256 << 10  # most output one inflate call may give


# Input given to one inflate call, at most; for a member that ends inside it, zlib copies
# the rest out as unused_data, so the window starts near the last member's size:
# many small members then cost time in proportion to their bytes, not to the chunk's.
MAX_WINDOW = 256 << 10
MIN_WINDOW = 256
FREE_GZIP_MEMBERS = 1024  # members that need not give output (as FREE_ZSTD_STEPS)


def decompress(chunks: Iterator[bytes], new_decompressor: Callable[[], Any], kind: str) -> Iterator[bytes]:
    """Decompress concatenated members (Go's gzip reader reads every one); detect truncation.

    At most PIECE bytes per call (zlib's max_length), so memory stays small whatever a
    chunk expands to, and the output buffers stay below the size glibc maps and unmaps
    anew each time (measured: inflating 900 MB took 1.3 s less system time). Each member
    costs a new decompressor: past FREE_GZIP_MEMBERS, each must have given 512 bytes (one
    tar record), so a stream of empty members (20 bytes each) is refused rather than
    walked for minutes.
    """
    decompressor = new_decompressor()
    started = False
    members = produced = 0
    window = MAX_WINDOW
    member_bytes = 0  # input the current member has taken so far, over all chunks
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
                members += 1
                if members > FREE_GZIP_MEMBERS + produced // 512:
                    raise ValueError(f"{members} {kind} members gave only {produced} bytes")
                window = min(MAX_WINDOW, max(MIN_WINDOW, 2 * (member_bytes + used)))
                member_bytes = 0
                decompressor = new_decompressor()
                started = False
                pending_output = False
            else:
                used = len(given) - len(decompressor.unconsumed_tail)
                offset += used
                member_bytes += used
                window = min(MAX_WINDOW, 2 * window)
                pending_output = len(piece) == PIECE  # a full piece: more may be pending
    if started and not decompressor.eof:
        raise EOFError(f"{kind} stream is truncated")


def gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:  # python-isal inflates about twice as fast as zlib, with the same interface
        from isal import isal_zlib as inflate
    except ImportError:
        inflate = zlib  # type: ignore[assignment]
    return decompress(chunks, lambda: inflate.decompressobj(wbits=31), "gzip")


def unzstd(chunks: Iterator[bytes]) -> Iterator[bytes]:
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


# compression (as compression_of tells it) -> how to inflate a stream of chunks
INFLATERS: dict[str, Callable[[Iterator[bytes]], Iterator[bytes]]] = {"gzip": gunzip, "zstd": unzstd}
