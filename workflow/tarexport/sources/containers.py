"""Read members of a source by path: a directory or a tar file, safely.

Paths are resolved inside the container only: absolute paths, `..` that leave
it, and links pointing outside or looping are refused, never followed.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
from typing import TYPE_CHECKING, BinaryIO

from ..errors import TarexportError, located
from .blobs import MAX_METADATA_BYTES, SourceKind

if TYPE_CHECKING:
    import tarfile

MAX_LINK_HOPS = 16


def clean_member(member: str, source: str) -> str:
    """Normalize an in-container path; refuse one that could leave the container."""
    if not member or member.startswith("/") or "\\" in member or "\x00" in member:
        raise TarexportError("path is absolute, empty or malformed", source=source, member=member)
    cleaned = posixpath.normpath(member)
    if cleaned == ".." or cleaned.startswith("../") or cleaned == ".":
        raise TarexportError("path leaves the source", source=source, member=member)
    return cleaned


class Container:
    """A readable set of members."""

    label: str  # the source as the user named it, for messages
    kind: SourceKind
    path: str  # its location, as a recipe carries it: the directory's or archive's absolute path

    @classmethod
    def at(cls, location: str, label: str) -> Container:
        """The container a recipe's location names (see kinds.open_container)."""
        return cls(location, label)  # type: ignore[call-arg]

    @classmethod
    def describe(cls, location: str) -> str:
        """A location for messages."""
        return location

    def exists(self, member: str) -> bool:
        raise NotImplementedError

    def open(self, member: str) -> tuple[BinaryIO, int]:
        """A stream of the member's bytes and its size."""
        raise NotImplementedError

    def read_small(self, member: str, limit: int = MAX_METADATA_BYTES, kind: str = "") -> bytes:
        """A metadata file, whole; `kind` ("manifest", "config") helps sources that serve them apart."""
        stream, size = self.open(member)
        with stream:
            if size > limit:
                raise TarexportError(
                    f"file is {size} bytes, over the {limit}-byte limit for metadata",
                    source=self.label,
                    member=member,
                )
            return stream.read(size)


class DirectoryContainer(Container):
    def __init__(self, root: str, label: str):
        self.root = self.path = os.path.realpath(root)
        self.label = label
        self.kind = SourceKind.OCI_LAYOUT

    def path_of(self, member: str) -> str:
        cleaned = clean_member(member, self.label)
        path = os.path.join(self.root, cleaned)
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise TarexportError("resolves outside the source (symlink?)", source=self.label, member=member)
        return real

    def exists(self, member: str) -> bool:
        return os.path.isfile(self.path_of(member))

    def open(self, member: str) -> tuple[BinaryIO, int]:
        path = self.path_of(member)
        try:
            # O_NONBLOCK: opening a FIFO for reading would wait for a writer forever
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise TarexportError("file is missing", source=self.label, member=member) from None
        except OSError as exc:
            raise TarexportError(f"cannot read ({exc.strerror})", source=self.label, member=member) from exc
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            os.close(descriptor)
            raise TarexportError("is not a regular file", source=self.label, member=member)
        os.set_blocking(descriptor, True)
        raw = io.FileIO(descriptor, "rb")
        raw.name = path  # type: ignore[misc] - as open(path) names it: a stored layer may be linked by name
        return io.BufferedReader(raw), info.st_size


class _Section(io.RawIOBase):
    """A read-only window [offset, offset+size) of a file."""

    def __init__(self, path: str, offset: int, size: int):
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._file.seek(offset)
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._left)]
        count = self._file.readinto(view)
        if not count:
            raise TarexportError("archive is truncated")
        self._left -= count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


# A GNU long name or link, or a PAX record set: real ones are bytes to kilobytes, and
# tarfile reads each whole into memory, so a header claiming gigabytes is refused first.
MAX_TAR_METADATA = 1 << 20
_METADATA_TYPES = (b"L", b"K", b"x", b"g", b"X")  # GNU long name, long link, PAX, PAX global, Solaris
_bounded_tarinfo: type | None = None


def bounded_tarinfo() -> type:
    """tarfile.TarInfo refusing an oversized metadata record before it is read."""
    global _bounded_tarinfo
    if _bounded_tarinfo is None:
        import tarfile

        class BoundedTarInfo(tarfile.TarInfo):
            def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
                if self.type in _METADATA_TYPES and self.size > MAX_TAR_METADATA:
                    raise TarexportError(
                        f"tar metadata record at offset {self.offset} declares {self.size} bytes,"
                        f" over the {MAX_TAR_METADATA}-byte limit"
                    )
                return super()._proc_member(archive)  # type: ignore[misc]

        _bounded_tarinfo = BoundedTarInfo
    return _bounded_tarinfo


def starts_like_tar(path: str) -> bool:
    """Does the file begin with a valid tar header? One block, nothing read beyond it
    (tarfile.is_tarfile reads the first member's metadata records whole)."""
    import tarfile

    with open(path, "rb") as handle:
        block = handle.read(512)
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


class TarContainer(Container):
    """Members of an uncompressed tar file, indexed by a single header scan."""

    def __init__(self, path: str, label: str):
        self.path = os.path.realpath(path)
        self.label = label
        self.kind = SourceKind.DOCKER_ARCHIVE
        self.members: dict[str, tarfile.TarInfo] = {}
        import tarfile  # here: layer jobs given a planned offset never index the archive

        try:
            with tarfile.open(self.path, "r:", tarinfo=bounded_tarinfo()) as archive:
                for info in archive:
                    try:
                        name = clean_member(info.name.rstrip("/") or ".", label)
                    except TarexportError:
                        continue  # unsafe names are never addressable; nothing refers to them safely
                    self.members[name] = info  # later entries win, as when extracting
        except TarexportError as error:
            raise located(error, source=label) from None
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:  # ValueError: garbage sparse maps
            raise TarexportError(f"is not a readable tar archive ({exc})", source=label) from exc

    def _resolve(self, member: str) -> tarfile.TarInfo:
        name = clean_member(member, self.label)
        for _ in range(MAX_LINK_HOPS):
            info = self.members.get(name)
            if info is None:
                raise TarexportError("is not in the archive", source=self.label, member=member)
            if info.issym():
                target = info.linkname
                if target.startswith("/"):
                    raise TarexportError("symlink points outside the archive", source=self.label, member=member)
                name = clean_member(posixpath.join(posixpath.dirname(name), target), self.label)
                continue
            if info.islnk():
                name = clean_member(info.linkname, self.label)
                continue
            if not info.isreg():
                raise TarexportError("is not a regular file", source=self.label, member=member)
            return info
        raise TarexportError("symlinks loop or nest too deep", source=self.label, member=member)

    def exists(self, member: str) -> bool:
        try:
            self._resolve(member)
        except TarexportError:
            return False
        return True

    def span(self, member: str) -> tuple[int, int]:
        """Where a member's data starts in the archive, and its size."""
        info = self._resolve(member)
        if info.sparse:
            raise TarexportError("sparse members are not supported", source=self.label, member=member)
        return info.offset_data, info.size

    def open(self, member: str) -> tuple[BinaryIO, int]:
        offset, size = self.span(member)
        return open_section(self.path, offset, size), size


def open_section(path: str, offset: int, size: int) -> BinaryIO:
    return io.BufferedReader(_Section(path, offset, size), buffer_size=1 << 20)  # type: ignore[return-value]
