"""The deterministic tar writer: knows entries and bytes, nothing of images.

Headers are USTAR as Go's archive/tar writes them for `docker save` (mode with
file-type bits, owner root:root, NUL-terminated octal fields), entries in the
order given, and the archive ends with two zero blocks and no record padding.
File data is copied by the kernel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from .errors import TarexportError

BLOCK = 512
DIR_MODE = 0o040755
FILE_MODE = 0o100644
SYMLINK_MODE = 0o120777


@dataclass(frozen=True)
class Entry:
    name: str  # without trailing slash
    kind: str  # "dir", "file" or "symlink"
    mtime: int
    path: str = ""  # file data from this path
    data: bytes | None = None  # or these bytes
    target: str = ""  # symlink target


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


def header(name: str, mode: int, size: int, mtime: int, typeflag: bytes, linkname: str = "") -> bytes:
    prefix, short = _split_name(name)
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
        _text("root", 32, "user"),
        _text("root", 32, "group"),
        _octal(0, 8),  # devmajor
        _octal(0, 8),  # devminor
        _text(prefix, 155, "name prefix"),
    ]
    block = b"".join(fields).ljust(BLOCK, b"\0")
    checksum = sum(block)
    return block[:148] + format(checksum, "06o").encode() + b"\0 " + block[156:]


def _copy_file(path: str, out: BinaryIO, expected_size: int) -> None:
    out.flush()
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        if size != expected_size:
            raise TarexportError(f"{path} changed size while being archived")
        offset = 0
        out_fd = out.fileno()
        while offset < size:
            try:
                sent = os.sendfile(out_fd, source.fileno(), offset, size - offset)
            except OSError as exc:
                raise TarexportError(f"cannot write archive ({exc.strerror or exc})") from None
            if sent == 0:
                raise TarexportError(f"{path} shrank while being archived")
            offset += sent
    # sendfile moves the fd offset; keep the buffered writer in step
    out.seek(0, os.SEEK_END)


def write_tar(entries: list[Entry], out: BinaryIO) -> None:
    """Write entries in the given order, then the end-of-archive marker."""
    for entry in entries:
        if entry.kind == "dir":
            out.write(header(entry.name + "/", DIR_MODE, 0, entry.mtime, b"5"))
        elif entry.kind == "symlink":
            out.write(header(entry.name, SYMLINK_MODE, 0, entry.mtime, b"2", entry.target))
        elif entry.data is not None:
            out.write(header(entry.name, FILE_MODE, len(entry.data), entry.mtime, b"0"))
            out.write(entry.data)
            out.write(b"\0" * (-len(entry.data) % BLOCK))
        else:
            size = os.stat(entry.path).st_size
            out.write(header(entry.name, FILE_MODE, size, entry.mtime, b"0"))
            _copy_file(entry.path, out, size)
            out.write(b"\0" * (-size % BLOCK))
    out.write(b"\0" * (2 * BLOCK))


def sort_key(entry: Entry) -> list[str]:
    """Order of a directory walk: siblings sorted, a directory right before its contents."""
    return entry.name.split("/")
