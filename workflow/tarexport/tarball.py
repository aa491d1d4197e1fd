"""The deterministic tar writer: knows entries and bytes, nothing of images.

Headers are USTAR as Go's archive/tar writes them for `docker save` (NUL-terminated
octal fields, owner 0:0), entries in the order given, and the archive ends with two
zero blocks and no record padding. Docker 20.10 puts file-type bits in the mode and
names the owner `root`; Docker 25+ does neither (`TarStyle`). Where the bytes go is a
`Sink` (tarsinks.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import TarexportError
from .tarsinks import Sink

BLOCK = 512
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
    # What the file at `path` must be: "layer" (a stored layer or kept blob, also checked
    # against its record before writing), "config" or "document" (an OCI manifest or index),
    # with the digest it is stored by. The writer hashes such an entry's data as it writes
    # it (the sink's entry_digests, by entry name); the archive is published only if each
    # has its digest (jobs.py).
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


def write_tar(entries: list[Entry], sink: Sink, style: TarStyle = DOCKER_20) -> None:
    """Write entries in the given order, then the end-of-archive marker. The data of each
    entry with a `check` is hashed as written: `sink.entry_digests()`, keyed by name."""
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
            sink.copy_file(entry.path, size, entry.name if entry.check else "")
            sink.write(b"\0" * (-size % BLOCK))
    sink.write(b"\0" * (2 * BLOCK))
    sink.close()


def sort_key(entry: Entry) -> list[str]:
    """Order of a directory walk: siblings sorted, a directory right before its contents."""
    return entry.name.split("/")
