"""Writing files so that a reader never sees a partial one.

Layer jobs import this, and each of them is a new process: nothing but os here (tempfile,
glob, typing and contextlib cost a small job about 12 ms).
"""

from __future__ import annotations

import contextlib
import os

from .errors import TarexportError

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import BinaryIO

PART_SUFFIX = ".part"


class atomic_output:  # used like the function it replaced: `with atomic_output(path) as out`
    """Write beside `path`, then rename over it; on any failure remove the temporary.

    `durable` (the archive): fsync before the rename, so that not even a power cut leaves
    a partial file at `path`. Build files skip it: flushing every layer to disk cost more
    than the copy itself, and every stored file an archive takes is hashed as it is
    written into the archive and must have its digest (jobs.py).
    """

    def __init__(self, path: str, durable: bool = False):
        self.path, self.durable = path, durable
        self.temporary = _temporary_beside(path)
        try:
            # mode fixed whatever the umask: set by fchmod below
            descriptor = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise TarexportError(f"cannot write {path} ({exc.strerror or exc})") from exc
        self.handle: BinaryIO = open(descriptor, "wb")  # noqa: SIM115 - closed in __exit__

    def __enter__(self) -> BinaryIO:
        return self.handle

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> bool:
        failure = error  # the body's, or our own below
        try:
            if failure is None:
                self.handle.flush()
                os.fchmod(self.handle.fileno(), 0o644)
                if self.durable:
                    os.fsync(self.handle.fileno())
        except BaseException as exc:
            failure = exc
        finally:
            try:
                self.handle.close()
            except OSError as exc:  # flushing what a failed body left buffered
                failure = failure or exc
        return _finish(self.temporary, self.path, failure, error)


class atomic_link:  # the counterpart of atomic_output for a file stored as it is
    """A hard link to an open file, made beside `path` and renamed over it on success.

    Made with `attempt`, which gives None where a link is impossible or unwise: another
    file system, or a file we neither own nor may write (Snakemake touches each output
    after its job, which needs one or the other). The caller then copies.
    """

    def __init__(self, temporary: str, path: str):
        self.temporary, self.path = temporary, path

    @classmethod
    def attempt(cls, source: BinaryIO, path: str) -> atomic_link | None:
        """Link the open file `source` (by its name, then checked to be the very file open:
        a source renamed meanwhile is not linked)."""
        try:
            name, opened = source.name, os.fstat(source.fileno())
            if not isinstance(name, str) or (opened.st_uid != os.geteuid() and not os.access(name, os.W_OK)):
                return None
        except (OSError, AttributeError, ValueError):
            return None
        temporary = _temporary_beside(path)
        try:
            os.link(name, temporary, follow_symlinks=False)
        except OSError:  # another file system, links refused
            return None
        try:
            linked = os.stat(temporary, follow_symlinks=False)
            if (opened.st_dev, opened.st_ino) == (linked.st_dev, linked.st_ino):
                return cls(temporary, path)
        except OSError:
            pass
        _unlink_quietly(temporary)
        return None

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> bool:
        return _finish(self.temporary, self.path, error, error)


class Writeback:
    """Disk writes of a durable file, started while it is still being written.

    Each finished window is handed to the disk at once (sync_file_range), and the one
    before it is waited for, so the final fsync has little left to wait for: writing and
    flushing overlap instead of adding up. Off Linux, or without libc, it does nothing.
    """

    WINDOW = 64 << 20
    _WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4

    def __init__(self, descriptor: int):
        self.descriptor = descriptor
        self.started = 0  # bytes handed to the disk
        try:
            import ctypes

            call = ctypes.CDLL(None, use_errno=True).sync_file_range
            call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            self._call = call
        except (ImportError, OSError, AttributeError):  # no ctypes, no libc, not Linux
            self._call = None

    def advance(self, written: int) -> None:
        """The file now holds `written` bytes."""
        if self._call is None:
            return
        while written - self.started >= self.WINDOW:
            self._call(self.descriptor, self.started, self.WINDOW, self._WRITE)
            if self.started >= self.WINDOW:
                previous = self.started - self.WINDOW
                self._call(self.descriptor, previous, self.WINDOW, self._WAIT_BEFORE | self._WRITE | self._WAIT_AFTER)
            self.started += self.WINDOW


def _finish(temporary: str, path: str, failure: BaseException | None, body_error: BaseException | None) -> bool:
    """End of an atomic write: rename the temporary into place if nothing failed; else remove
    it and raise what failed (an OSError as one line). False lets the body's own exception
    go on, as a context manager's __exit__ does."""
    if failure is None:
        try:
            os.replace(temporary, path)
            _unlink_quietly(temporary)  # rename() between two links to one file does nothing
            return False
        except OSError as exc:
            failure = exc
    _unlink_quietly(temporary)
    if isinstance(failure, OSError):
        raise TarexportError(f"cannot write {path} ({failure.strerror or failure})") from failure
    if failure is not body_error:
        raise failure
    return False


# Directory -> the temporaries killed earlier attempts left there, by the file they were
# for: listed once per process and directory. Listing the directory at every write made
# the planner's writes quadratic (8,000 plan files in one directory: 28 s). A leftover
# appearing after the listing could only come from another writer of the same output
# running at once, which Snakemake never does.
_LEFTOVERS: dict[str, dict[str, list[str]]] = {}


def _leftovers_in(directory: str) -> dict[str, list[str]]:
    found = _LEFTOVERS.get(directory)
    if found is None:
        found = {}
        for name in os.listdir(directory):
            if name.startswith(".") and name.endswith(PART_SUFFIX):
                # ".<file>.<pid>.<random>.part": the file's own name may hold dots
                parts = name[1 : -len(PART_SUFFIX)].rsplit(".", 2)
                if len(parts) == 3:
                    found.setdefault(parts[0], []).append(name)
        _LEFTOVERS[directory] = found
    return found


def _temporary_beside(path: str) -> str:
    """A new temporary name beside `path`, after removing those a killed earlier attempt left
    (one job per output at a time, so they are ours)."""
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    try:
        os.makedirs(directory, exist_ok=True)
        for leftover in _leftovers_in(directory).pop(name, ()):
            _unlink_quietly(os.path.join(directory, leftover))
    except OSError as exc:
        raise TarexportError(f"cannot write {path} ({exc.strerror or exc})") from exc
    return os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}{PART_SUFFIX}")


def _unlink_quietly(path: str) -> None:
    # not contextlib.suppress: contextlib is a costly import for a small job
    try:  # noqa: SIM105
        os.unlink(path)
    except FileNotFoundError:
        pass


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


# The modification time of a plan file whose outputs are named by their content (configs,
# v1 directories, attestation manifests): such an output, wherever it exists, holds what the
# plan file holds, so it is never out of date. An old time says so to Snakemake's mtime
# check, also on a fresh CI runner whose outputs come from remote storage.
CONTENT_NAMED_MTIME = 315532800  # 1980-01-01, the earliest time a zip or tar tool expects


def write_content_named(path: str, data: bytes) -> None:
    """A plan file for content-named outputs: written if changed, and dated CONTENT_NAMED_MTIME."""
    write_if_changed(path, data)
    os.utime(path, (CONTENT_NAMED_MTIME, CONTENT_NAMED_MTIME))


def file_identity(path: str) -> str:
    """Which file this is: device, inode and size (not the mtime: Snakemake touches its
    outputs after the job that wrote them)."""
    info = os.stat(path)
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}"


def write_plan_record(
    record: str, plan_digest: str, output: str, sha256: str = "", published: list[str] | None = None
) -> None:
    """Next to the archive: the plan it was made from, which file it is, its sha256, and
    the files published beside it (one per line, removed with it)."""
    lines = [plan_digest, file_identity(output), sha256, *(published or [])]
    write_atomically(record, "".join(line + "\n" for line in lines).encode())


def _read_record(record: str) -> list[str]:
    with open(record, encoding="utf-8") as handle:
        return [*handle.read().splitlines(), "", "", ""]


def recorded_archive(output: str, record: str) -> tuple[int, str] | None:
    """The archive's size and sha256, if the record names this very file (unchanged since)."""
    try:
        _, recorded_file, sha256 = _read_record(record)[:3]
        if sha256 and recorded_file == file_identity(output):
            return os.path.getsize(output), sha256
    except OSError:
        pass
    return None


def remove_stale_output(output: str, record: str, plan_digest: str = "") -> bool:
    """Remove an archive made for another plan (any plan, when `plan_digest` is empty: this
    configuration has none), so that a failed run never leaves an archive that does not
    match the configuration. Only an archive this project wrote, unchanged since (its
    record names the very file), is removed: never a file someone else put there. The
    record goes with it, so that a file later given the same inode is not taken for ours,
    and so do the files the record says were published beside it. True if removed."""
    if not os.path.isfile(output):
        return False
    try:
        recorded_plan, recorded_file, _, *published = _read_record(record)
    except OSError:
        return False
    if (plan_digest and recorded_plan == plan_digest) or recorded_file != file_identity(output):
        return False
    os.unlink(output)
    os.unlink(record)
    for path in filter(None, published):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return True
