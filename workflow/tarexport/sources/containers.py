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


class _Dir:
    """A directory as `docker load`'s extraction leaves it: its entries by name."""

    __slots__ = ("children",)

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}


class _File:
    """A regular file: the member whose data it holds. Hard links share one _File, as
    they share an inode: a later member of the same name replaces the name, not the file."""

    __slots__ = ("info",)

    def __init__(self, info: tarfile.TarInfo) -> None:
        self.info = info


class _Symlink:
    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target


class _Special:
    """A device or FIFO: present, never readable as a file."""

    __slots__ = ()


_Node = _Dir | _File | _Symlink | _Special


class TarContainer(Container):
    """Members of an uncompressed tar file, indexed by a single header scan.

    The scan leaves the tree `docker load` extracts (moby pkg/archive Unpack, run in a
    chroot of its temporary directory): names are cleaned (`./a//b` is `a/b`); a later
    member replaces what its name held (a directory, with all below it), a directory
    merges into one; a hard link takes the file its target names when the link is met,
    so a later member of the target's name changes neither. What Docker would do
    otherwise than its names say (a member under a symlinked directory, written through
    the link; a name that is absolute or leaves the archive, which the chroot folds back
    into it) is refused, and so is what makes `docker load` fail (a hard link to nothing
    or to a directory, a member under a file, a type it cannot extract). Lookups follow
    symlinks as Docker's safePath does, a last path element only: a symlinked directory
    in a path is refused."""

    def __init__(self, path: str, label: str):
        self.path = os.path.realpath(path)
        self.label = label
        self.kind = SourceKind.DOCKER_ARCHIVE
        self._root = _Dir()
        import tarfile  # here: layer jobs given a planned offset never index the archive

        try:
            with tarfile.open(self.path, "r:", tarinfo=bounded_tarinfo()) as archive:
                for info in archive:
                    self._extract(info)
        except TarexportError as error:
            raise located(error, source=label) from None
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:  # ValueError: garbage sparse maps
            raise TarexportError(f"is not a readable tar archive ({exc})", source=label) from exc

    def _extract(self, info: tarfile.TarInfo) -> None:
        """Place one member as Docker's extraction does (moby pkg/archive createTarFile)."""
        import tarfile

        name = posixpath.normpath(info.name) if info.name else "."  # Go's filepath.Clean
        if name == ".":
            return  # the top directory: Docker skips it whatever its type
        if name.startswith("/") or name == ".." or name.startswith("../"):
            raise TarexportError(
                "member name is absolute or leaves the archive; docker load would extract it elsewhere",
                member=info.name,
            )
        if info.type not in _DOCKER_TYPES:
            raise TarexportError(f"member has tar type {info.type!r}, which docker load cannot extract", member=name)
        *parents, last = name.split("/")
        directory = self._root
        for part in parents:  # missing directories are made, as Docker's MkdirAll makes them
            node = directory.children.setdefault(part, _Dir())
            if isinstance(node, _Symlink):
                raise TarexportError(
                    "member is under a symlink; docker load would write it where the link points", member=name
                )
            if not isinstance(node, _Dir):
                raise TarexportError("member is under a file, not a directory; docker load fails on it", member=name)
            directory = node
        if info.type == tarfile.DIRTYPE:
            if not isinstance(directory.children.get(last), _Dir):
                directory.children[last] = _Dir()
            return
        directory.children.pop(last, None)  # removed first, as Docker does: a link to itself finds nothing
        if info.type == tarfile.LNKTYPE:
            directory.children[last] = self._link_target(info.linkname, name)
        elif info.type == tarfile.SYMTYPE:
            directory.children[last] = _Symlink(info.linkname)
        elif info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
            directory.children[last] = _File(info)
        else:
            directory.children[last] = _Special()

    def _link_target(self, linkname: str, name: str) -> _File | _Symlink | _Special:
        """What a hard link links to when it is met: os.Link takes the node its target names
        then (a symlink itself, not what it points to)."""
        try:
            parts = clean_member(linkname, self.label).split("/")
        except TarexportError as error:
            raise TarexportError(f"hard link's target: {error.message}", member=name) from None
        node: _Node = self._root
        for number, part in enumerate(parts):
            if isinstance(node, _Symlink):
                raise TarexportError("hard link's target is under a symlink; tarexport does not follow it", member=name)
            if not isinstance(node, _Dir) or part not in node.children:
                raise TarexportError(
                    "hard link's target is not in the archive before it; docker load fails on it", member=name
                )
            node = node.children[part]
            if number == len(parts) - 1 and isinstance(node, _Dir):
                raise TarexportError("hard link's target is a directory; docker load fails on it", member=name)
        assert not isinstance(node, _Dir)
        return node

    def _resolve(self, member: str) -> tarfile.TarInfo:
        """The file a path names, as `docker load` finds it after extracting (safePath:
        symlinks are followed within the archive; an absolute one, or one leaving it, is
        refused here, not folded back as Docker's scope would)."""
        pending = clean_member(member, self.label).split("/")[::-1]  # a stack: next part last
        trail = [self._root]  # the directories walked through, for ".."
        hops = 0
        while pending:
            part = pending.pop()
            if part == "..":
                if len(trail) == 1:
                    raise TarexportError("path leaves the source", source=self.label, member=member)
                trail.pop()
                continue
            node = trail[-1].children.get(part)
            if node is None:
                raise TarexportError("is not in the archive", source=self.label, member=member)
            if isinstance(node, _Symlink):
                if pending:
                    raise TarexportError(
                        "a directory in the path is a symlink; tarexport does not follow those",
                        source=self.label,
                        member=member,
                    )
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise TarexportError("symlinks loop or nest too deep", source=self.label, member=member)
                if node.target.startswith("/"):
                    raise TarexportError("symlink points outside the archive", source=self.label, member=member)
                pending = [p for p in node.target.split("/") if p not in ("", ".")][::-1]
                continue
            if pending:
                if not isinstance(node, _Dir):
                    raise TarexportError("is not in the archive", source=self.label, member=member)
                trail.append(node)
                continue
            if not isinstance(node, _File):
                raise TarexportError("is not a regular file", source=self.label, member=member)
            return node.info
        raise TarexportError("is not a regular file", source=self.label, member=member)  # the top directory

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


# Member types Docker's extraction takes: regular files (old and new type flags),
# directories, links, devices and FIFOs. Others (contiguous files, GNU sparse and volume
# headers) fail `docker load`.
_DOCKER_TYPES = frozenset((b"0", b"\x00", b"5", b"1", b"2", b"3", b"4", b"6"))


def open_section(path: str, offset: int, size: int) -> BinaryIO:
    return io.BufferedReader(_Section(path, offset, size), buffer_size=1 << 20)  # type: ignore[return-value]
