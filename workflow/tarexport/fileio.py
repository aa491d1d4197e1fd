"""Writing files so that a reader never sees a partial one."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from .errors import TarexportError


@contextlib.contextmanager
def atomic_output(path: str, durable: bool = False) -> Iterator[BinaryIO]:
    """Write beside `path`, then rename over it; on any failure remove the temporary.

    `durable` (the archive): fsync before the rename, so that not even a power cut leaves
    a partial file at `path`. Build files skip it: flushing every layer to disk cost more
    than the copy itself, and a stored layer is checked against its record (and with
    `verify_layers: full`, its digest) before it goes into an archive.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = "." + os.path.basename(path) + "."
    # Temporaries of a killed earlier attempt: one job per output at a time, so they are ours.
    for stale in glob.glob(os.path.join(glob.escape(directory), glob.escape(prefix) + "*.part")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below
        dir=directory, prefix=prefix, suffix=".part", delete=False
    )
    try:
        with handle:
            yield handle  # type: ignore[misc]
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)  # fixed mode whatever the umask
        os.replace(handle.name, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        if isinstance(exc, OSError):
            raise TarexportError(f"cannot write {path} ({exc.strerror or exc})") from None
        raise


def write_atomically(path: str, data: bytes) -> None:
    with atomic_output(path) as handle:
        handle.write(data)


def write_if_changed(path: str, data: bytes) -> bool:
    """Write unless the file already holds exactly `data`, keeping its mtime (which Snakemake
    compares) when nothing changed. True if written."""
    try:
        with open(path, "rb") as handle:
            if handle.read(len(data) + 1) == data:
                return False
    except OSError:
        pass
    write_atomically(path, data)
    return True


def remove_stale_output(output: str, record: str, plan_digest: str) -> bool:
    """Remove an archive made for another plan (the record next to it says which), so that a
    failed run never leaves an archive that does not match the configuration. True if removed."""
    if not os.path.exists(output):
        return False
    try:
        with open(record, encoding="utf-8") as handle:
            if handle.read().strip() == plan_digest:
                return False
    except OSError:
        pass
    os.unlink(output)
    return True
