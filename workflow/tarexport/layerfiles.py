"""Stored layer files: the tar check, and the record that notices later changes to them.

Imported by every layer job, each a new process: nothing here imports more than os, and
hashlib only for large files (json, re and typing cost a small job about 15 ms of its 30).
"""

from __future__ import annotations

import os

from .errors import TarexportError
from .fileio import write_atomically

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

CHUNK = 1 << 20
BUILTIN_HASH_LIMIT = 1 << 20


def sha256_hasher(size: int) -> Any:
    """SHA-256 for about `size` bytes: the interpreter's own for small inputs (importing
    OpenSSL's costs a job about 3 ms, more than the built-in takes for 512 KiB at about
    250 MB/s), OpenSSL's (about 1.3 GB/s) for larger ones."""
    if size <= BUILTIN_HASH_LIMIT:
        for module in ("_sha2", "_sha256"):  # 3.12 renamed it
            try:
                return __import__(module).sha256()
            except ImportError:
                continue
    import hashlib

    return hashlib.sha256()


def is_tar_start(block: bytes) -> bool:
    """Does a stream start like a tar archive (a header with a valid checksum, or the end marker)?"""
    if len(block) < 512:
        return False
    if block[:512] == b"\0" * 512:
        return True  # an empty layer: just the end-of-archive blocks
    try:
        recorded = int(block[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    header = block[:148] + b" " * 8 + block[156:512]
    return recorded in (sum(header), sum(b - 256 if b > 127 else b for b in header))


def record_path(layer_file: str) -> str:
    return layer_file + ".check"


SAMPLE = 64 << 10
SAMPLES = 16


def fingerprint(layer_file: str) -> str:
    """Size and a hash of sampled blocks (head, tail, 16 spread through): cheap at any size.
    The record's text, as json.dumps wrote it for {"size", "sampled_sha256"} (json is not
    imported here).

    Modification times are no use here: Snakemake touches outputs after a job.
    """
    size = os.path.getsize(layer_file)
    hasher = sha256_hasher(2 * SAMPLE + SAMPLES * 4096)
    with open(layer_file, "rb") as handle:
        offsets = {0, max(size - SAMPLE, 0)} | {size * i // SAMPLES for i in range(1, SAMPLES)}
        for offset in sorted(offsets):
            handle.seek(offset)
            hasher.update(handle.read(SAMPLE if offset in (0, max(size - SAMPLE, 0)) else 4096))
    return f'{{"size": {size}, "sampled_sha256": "{hasher.hexdigest()}"}}'


def write_record(layer_file: str) -> None:
    """Note a finished layer file's fingerprint, so later changes to it are noticed cheaply."""
    write_atomically(record_path(layer_file), fingerprint(layer_file).encode())


def verify_layer_file(layer_file: str, digest: str, full: bool) -> None:
    """Check a stored layer before it goes into an archive: its size and sampled blocks against
    the record made with it, and with `full` its whole content against its digest (its name)."""
    try:
        with open(record_path(layer_file), "rb") as handle:
            record = handle.read().decode()
        if not record.startswith('{"size": ') or not record.endswith('"}'):
            raise ValueError("not a record")
        current = fingerprint(layer_file)
    except (OSError, ValueError):
        raise TarexportError(
            f"stored layer {layer_file} or its record {record_path(layer_file)} is missing or damaged;"
            " delete both and run again"
        ) from None
    if current != record:
        raise TarexportError(f"stored layer {layer_file} changed after it was made; delete it and run again")
    if full:
        hasher = sha256_hasher(os.path.getsize(layer_file))
        with open(layer_file, "rb") as handle:
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
        if "sha256:" + hasher.hexdigest() != digest:
            raise TarexportError(f"stored layer {layer_file} no longer has digest {digest}; delete it and run again")
