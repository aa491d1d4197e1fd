"""The deterministic tar writer: knows entries and bytes, nothing of images.

Headers are USTAR as Go's archive/tar writes them for `docker save` (NUL-terminated
octal fields, owner 0:0), entries in the order given, and the archive ends with two
zero blocks and no record padding. Docker 20.10 puts file-type bits in the mode and
names the owner `root`; Docker 25+ does neither (`TarStyle`). Uncompressed output
gets file data copied by the kernel; compressed output streams it through the compressor.
"""

from __future__ import annotations

import fcntl
import mmap
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

from .errors import TarexportError
from .fileio import Writeback

BLOCK = 512
CHUNK = 1 << 20
COPY_WINDOW = 16 << 20
DIR_MODE = 0o040755
FILE_MODE = 0o100644
SYMLINK_MODE = 0o120777


@dataclass(frozen=True)
class TarStyle:
    type_bits: bool  # mode carries S_IFDIR/S_IFREG/S_IFLNK, as Docker 20.10 writes
    owner_name: str  # uname and gname


DOCKER_20 = TarStyle(type_bits=True, owner_name="root")
DOCKER_25 = TarStyle(type_bits=False, owner_name="")


@dataclass(frozen=True)
class Entry:
    name: str  # without trailing slash
    kind: str  # "dir", "file" or "symlink"
    mtime: int
    path: str = ""  # file data from this path
    data: bytes | None = None  # or these bytes
    target: str = ""  # symlink target
    # Not for the writer: what the file at `path` must be, checked before the archive is
    # published. "layer" (a stored layer, against its record and digest) or "config"
    # (re-hashed), with the digest it is stored by.
    check: tuple[str, str] | None = None


def _octal(value: int, width: int) -> bytes:
    digits = format(value, "o")
    if len(digits) > width - 1:
        raise TarexportError(f"tar field value {value} does not fit in {width - 1} octal digits")
    return digits.rjust(width - 1, "0").encode() + b"\0"


def _text(value: str, width: int, what: str) -> bytes:
    raw = value.encode()
    if len(raw) > width:
        raise TarexportError(f"tar {what} {value!r} is longer than {width} bytes")
    return raw.ljust(width, b"\0")


def _split_name(name: str) -> tuple[str, str]:
    if len(name.encode()) <= 100:
        return "", name
    # USTAR keeps longer names as prefix "/" name, split at a slash.
    for index in range(len(name) - 1, 0, -1):
        if name[index] == "/" and len(name[:index].encode()) <= 155 and len(name[index + 1 :].encode()) <= 100:
            return name[:index], name[index + 1 :]
    raise TarexportError(f"tar member name {name!r} is too long for USTAR")


_OCTAL_12_MAX = 8**11 - 1  # 11 octal digits: sizes to 8 GiB, mtimes to the year 2242


def _checksummed(block: bytes) -> bytes:
    block = block.ljust(BLOCK, b"\0")
    return block[:148] + format(sum(block), "06o").encode() + b"\0 " + block[156:]


def pax_record(key: str, value: str) -> bytes:
    """`<length> key=value\n`, the length counting its own digits (Go's formatPAXRecord)."""
    body = f" {key}={value}\n".encode()
    size = len(body) + len(str(len(body)))
    if len(str(size)) + len(body) != size:  # adding the digits added a digit
        size = len(str(size)) + len(body)
    return str(size).encode() + body


def _pax_header(name: str, records: dict[str, str]) -> bytes:
    """The extended header Go's tar writer puts before an entry whose numbers do not fit
    USTAR (a layer over 8 GiB, a `created` after 2242): name `dir/PaxHeaders.0/base`,
    zero mode, ids and mtime, no owner names, records sorted by key."""
    data = b"".join(pax_record(key, records[key]) for key in sorted(records))
    if name.endswith("/"):  # Go: path.Join(path.Split(name)) puts it inside the directory
        directory, base = name.rstrip("/"), ""
    else:
        directory, _, base = name.rpartition("/")
    pax_name = "/".join(part for part in (directory, "PaxHeaders.0", base) if part)[:100]
    fields = [
        _text(pax_name, 100, "name"),
        _octal(0, 8),  # mode
        _octal(0, 8),  # uid
        _octal(0, 8),  # gid
        _octal(len(data), 12),
        _octal(0, 12),  # mtime
        b" " * 8,
        b"x",
        b"\0" * 100,
        b"ustar\x0000",
    ]
    return _checksummed(b"".join(fields)) + data + b"\0" * (-len(data) % BLOCK)


def header(
    name: str, mode: int, size: int, mtime: int, typeflag: bytes, linkname: str = "", style: TarStyle = DOCKER_20
) -> bytes:
    prefix, short = _split_name(name)
    if not style.type_bits:
        mode &= 0o7777
    # What USTAR cannot hold goes into a PAX record, the field left zero (Go's writer)
    records = {}
    if not 0 <= mtime <= _OCTAL_12_MAX:
        records["mtime"], mtime = str(mtime), 0
    if size > _OCTAL_12_MAX:
        records["size"], size = str(size), 0
    if records and len(name.encode()) > 100:  # in PAX form the whole name is a record too
        records["path"], prefix, short = name, "", name.encode()[:100].decode(errors="ignore")
    fields = [
        _text(short, 100, "name"),
        _octal(mode, 8),
        _octal(0, 8),  # uid
        _octal(0, 8),  # gid
        _octal(size, 12),
        _octal(mtime, 12),
        b" " * 8,  # checksum placeholder
        typeflag,
        _text(linkname, 100, "link target"),
        b"ustar\x0000",
        _text(style.owner_name, 32, "user"),
        _text(style.owner_name, 32, "group"),
        _octal(0, 8),  # devmajor
        _octal(0, 8),  # devminor
        _text(prefix, 155, "name prefix"),
    ]
    block = _checksummed(b"".join(fields))
    return _pax_header(name, records) + block if records else block


class Sink:
    """Where archive bytes go: a file, with the data of other files copied by the kernel.

    With `writeback`, the disk writes of a durable file start as each window is written.
    """

    def __init__(self, out: BinaryIO, writeback: Writeback | None = None):
        self.out = out
        self.writeback = writeback

    def write(self, data: bytes) -> None:
        self.out.write(data)

    def copy_file(self, path: str, size: int) -> None:
        self.out.flush()
        out_fd = self.out.fileno()
        position = self.out.tell()
        with open(path, "rb") as source:
            offset = 0
            while offset < size:
                # in windows, so that the disk writes of the last one start meanwhile
                sent = os.sendfile(out_fd, source.fileno(), offset, min(size - offset, COPY_WINDOW))
                if sent == 0:
                    raise TarexportError(f"{path} shrank while being archived")
                offset += sent
                if self.writeback:
                    self.writeback.advance(position + offset)
        # sendfile moved the descriptor's offset; keep the buffered writer in step
        self.out.seek(0, os.SEEK_END)

    def close(self) -> None:
        self.out.flush()


class DirectSink(Sink):
    """Archive bytes straight to the disk (O_DIRECT), through one aligned buffer.

    For the uncompressed archive, which is fsynced anyway: written through the page cache,
    every byte costs a fresh cache page and then a flush; written directly, neither. On a
    2 GB export right after other big writes, the export job took 1.4-1.5 s (0.4 s of CPU)
    against 2.8-5.5 s (2.2-4.9 s of CPU) through the cache. (A second buffer written by a
    thread meanwhile measured no faster: 1.40 s against 1.37 s.) `open` gives None where
    the file system refuses O_DIRECT, and the caller uses Sink.
    """

    BUFFER = 8 << 20  # a multiple of any logical block size
    ALIGN = 4096

    def __init__(self, out: BinaryIO):
        super().__init__(out)
        self.descriptor = out.fileno()
        self.buffer = mmap.mmap(-1, self.BUFFER)  # page-aligned, as O_DIRECT needs
        self.view = memoryview(self.buffer)
        self.filled = 0
        self.written = 0

    @classmethod
    def open(cls, out: BinaryIO) -> DirectSink | None:
        descriptor = out.fileno()
        direct = getattr(os, "O_DIRECT", 0)
        if not direct or out.tell() % cls.ALIGN:
            return None
        try:
            fcntl.fcntl(descriptor, fcntl.F_SETFL, fcntl.fcntl(descriptor, fcntl.F_GETFL) | direct)
        except OSError:
            return None
        return cls(out)

    def _added(self, count: int) -> None:
        """`count` more bytes are in the buffer; a full buffer goes to the disk."""
        self.filled += count
        if self.filled == self.BUFFER:
            self._drain(self.BUFFER)

    def _drain(self, length: int) -> None:
        done = 0
        while done < length:
            done += os.write(self.descriptor, self.view[done:length])
        self.written += length
        self.filled = 0

    def write(self, data: bytes) -> None:
        data = memoryview(data)
        while data:
            count = min(len(data), self.BUFFER - self.filled)
            self.view[self.filled : self.filled + count] = data[:count]
            data = data[count:]
            self._added(count)

    def copy_file(self, path: str, size: int) -> None:
        with open(path, "rb", buffering=0) as source:
            left = size
            while left > 0:
                count = source.readinto(self.view[self.filled : self.filled + min(left, self.BUFFER - self.filled)])
                if not count:
                    raise TarexportError(f"{path} shrank while being archived")
                left -= count
                self._added(count)

    def close(self) -> None:
        size = self.written + self.filled
        padded = -self.filled % self.ALIGN  # the last write, too, must be whole blocks
        self.view[self.filled : self.filled + padded] = bytes(padded)
        self._drain(self.filled + padded)
        os.ftruncate(self.descriptor, size)
        os.lseek(self.descriptor, size, os.SEEK_SET)
        self.view.release()
        self.buffer.close()


class CompressingSink(Sink):
    """Archive bytes through a compressor (an object with compress() and flush())."""

    def __init__(self, out: BinaryIO, compressor: Any, writeback: Writeback | None = None):
        super().__init__(out, writeback)
        self.compressor = compressor

    def write(self, data: bytes) -> None:
        self.out.write(self.compressor.compress(data))
        if self.writeback:
            self.writeback.advance(self.out.tell())

    def copy_file(self, path: str, size: int) -> None:
        with open(path, "rb") as source:
            left = size
            while left > 0:
                chunk = source.read(min(left, CHUNK))
                if not chunk:
                    raise TarexportError(f"{path} shrank while being archived")
                left -= len(chunk)
                self.write(chunk)

    def close(self) -> None:
        self.out.write(self.compressor.flush())
        self.out.flush()


def write_tar(entries: list[Entry], sink: Sink, style: TarStyle = DOCKER_20) -> None:
    """Write entries in the given order, then the end-of-archive marker."""
    for entry in entries:
        if entry.kind == "dir":
            sink.write(header(entry.name + "/", DIR_MODE, 0, entry.mtime, b"5", style=style))
        elif entry.kind == "symlink":
            sink.write(header(entry.name, SYMLINK_MODE, 0, entry.mtime, b"2", entry.target, style=style))
        elif entry.data is not None:
            sink.write(header(entry.name, FILE_MODE, len(entry.data), entry.mtime, b"0", style=style))
            sink.write(entry.data + b"\0" * (-len(entry.data) % BLOCK))
        else:
            size = os.stat(entry.path).st_size
            sink.write(header(entry.name, FILE_MODE, size, entry.mtime, b"0", style=style))
            sink.copy_file(entry.path, size)
            sink.write(b"\0" * (-size % BLOCK))
    sink.write(b"\0" * (2 * BLOCK))
    sink.close()


def sort_key(entry: Entry) -> list[str]:
    """Order of a directory walk: siblings sorted, a directory right before its contents."""
    return entry.name.split("/")
