"""The layer job for the common case: an uncompressed blob in an OCI layout directory.

Such a blob is its own layer (its digest is the diff_id): nothing to inflate, so the job
links (or copies) it into the build directory and checks it on the way. At 1000 layers the
job's start is most of its cost, so this module imports only os, and hashlib for large
blobs only (measured per small layer, with its shell: the general `tarexport layer` 33 ms,
this about 16 ms).

    python -S -P -c 'from tarexport.linklayer import main; main()' \
        ROOT MEMBER SIZE DIGEST LINK LABEL CONTEXT OUTPUT

ROOT is the layout's directory, MEMBER the blob's path in it, LINK "1" to hard-link where
the file system allows, LABEL the source as configured and CONTEXT the images using the
layer (both for messages).
"""

from __future__ import annotations

import os
import sys

from .errors import TarexportError
from .fileio import atomic_link, atomic_output
from .layerfiles import CHUNK, is_tar_start, sha256_hasher, write_record

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import BinaryIO


def _nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)


def _open_member(root: str, member: str, label: str) -> tuple[BinaryIO, int]:
    """The member's file, opened without blocking (a FIFO must not hang the job), and its
    size; refused if it resolves outside the layout or is not a regular file."""
    real_root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(real_root, member))
    if not path.startswith(real_root + os.sep):
        raise TarexportError("resolves outside the source (symlink?)", source=label, member=member)
    try:
        stream = open(path, "rb", buffering=0, opener=_nonblocking)  # noqa: SIM115 - returned to the caller
    except FileNotFoundError:
        raise TarexportError("file is missing", source=label, member=member) from None
    except OSError as exc:
        raise TarexportError(f"cannot read ({exc.strerror})", source=label, member=member) from exc
    info = os.fstat(stream.fileno())
    if info.st_mode & 0o170000 != 0o100000:  # S_ISREG, without importing stat
        stream.close()
        raise TarexportError("is not a regular file", source=label, member=member)
    os.set_blocking(stream.fileno(), True)
    return stream, info.st_size


def checked_blob_path(root: str, member: str, size: int) -> str | None:
    """The blob's real path if it is a regular file inside the layout, of the manifest's size,
    starting like a tar: then a small layer's job can be the shell's (link or copy, compare
    sha256sum's answer with the digest). None if anything is off: the Python job then checks
    it again and names what is wrong."""
    try:
        stream, actual_size = _open_member(root, member, "")
        with stream:
            head = stream.read(512)
    except (TarexportError, OSError):
        return None
    return stream.name if actual_size == size and is_tar_start(head) else None


def link_layer(root: str, member: str, size: int, digest: str, link: bool, output: str, label: str, image: str) -> None:
    """Store the blob at `output` (hard-linked where allowed, else copied), after checking
    its size, its digest (which is also its diff_id) and that it is a tar; then its record."""
    where = {"image": image, "source": label, "member": member}
    try:
        stream, actual_size = _open_member(root, member, label)
    except TarexportError as exc:
        raise TarexportError(exc.message, **where) from None
    with stream:
        if actual_size != size:
            raise TarexportError(f"layer blob is {actual_size} bytes, the manifest says {size}", **where)
        linked = atomic_link.attempt(stream, output) if link else None
        with linked or atomic_output(output) as out:
            hasher = sha256_hasher(size)
            view = memoryview(bytearray(CHUNK))
            first = b""
            while count := stream.readinto(view):  # type: ignore[attr-defined]
                piece = view[:count]
                hasher.update(piece)
                if len(first) < 512:
                    first += bytes(piece[: 512 - len(first)])
                if out:
                    out.write(piece)
            actual = "sha256:" + hasher.hexdigest()
            if actual != digest:
                raise TarexportError(f"layer blob has digest {actual}, expected {digest}", **where)
            if not is_tar_start(first):
                raise TarexportError("layer is not a tar archive", **where)
    write_record(output)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 8:
        print("tarexport: usage: linklayer ROOT MEMBER SIZE DIGEST LINK LABEL CONTEXT OUTPUT", file=sys.stderr)
        sys.exit(2)
    root, member, size, digest, link, label, image, output = args
    try:
        link_layer(root, member, int(size), digest, link == "1", output, label, image)
    except TarexportError as exc:
        print(f"tarexport: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # disk full, permissions
        print(f"tarexport: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C reaches every job: Snakemake says it once
        sys.exit(130)
