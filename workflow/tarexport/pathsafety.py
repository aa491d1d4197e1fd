"""Where the export may write, checked before anything is written or removed.

Snakemake removes a job's existing outputs before it runs the job, and the stale-archive
check removes an archive of another configuration: an `output` that is a source would be
deleted before it is read. So the output and the build directory must keep clear of
every local source, and of each other, with symlinks resolved.
"""

from __future__ import annotations

import os
import stat

from . import buildpaths
from .errors import TarexportError
from .sidefiles import SUFFIXES


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def check_write_paths(output: str, build_dir: str, sources: list[tuple[str, str]], workdir: str) -> None:
    """Refuse an output or build directory that is, holds or lies inside a source.

    `sources` are (as configured, absolute path) of the local sources; paths are
    resolved through symlinks, so a link to a source counts as the source.
    """
    for key, path in (("output", output), ("build_dir", build_dir)):
        if "{" in path or "}" in path:
            raise TarexportError(
                f"config key {key}: {path} has a brace, which Snakemake reads as a wildcard; choose a path without"
            )
    real_output = os.path.realpath(os.path.join(workdir, output))
    real_build = os.path.realpath(os.path.join(workdir, build_dir))
    if os.path.isdir(real_output):
        raise TarexportError(f"config key output: {output} is a directory; name the archive file to write")
    if _inside(real_output, real_build):
        raise TarexportError(
            f"config key output: {output} lies inside build_dir {build_dir}; put the archive elsewhere"
        )
    if _inside(real_build, real_output):
        raise TarexportError(f"config key build_dir: {build_dir} lies inside output {output}")
    for configured, path in sources:
        real_source = os.path.realpath(path)
        if _inside(real_output, real_source):
            what = "is" if real_output == real_source else "lies inside"
            raise TarexportError(
                f"config key output: {output} {what} this source, which the export would overwrite;"
                " choose another output",
                source=configured,
            )
        if _inside(real_build, real_source) or _inside(real_source, real_build):
            raise TarexportError(
                f"config key build_dir: {build_dir} and this source overlap (one holds the other);"
                " choose another build_dir",
                source=configured,
            )


def _same_file(first: str, second: str) -> bool:
    """One file by two names (a hard link too), or one path where neither exists yet."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return False


def check_lock_path(lockfile: str, output: str, build_dir: str, sources: list[tuple[str, str]], workdir: str) -> None:
    """Refuse a lock file that is the archive or one of its side files (written by the export,
    removed with a stale archive: the lock would be lost, or read from the archive's bytes),
    that is a source or lies inside one (never the export's to write; nor a lock to trust:
    it arrived with the images), or lies inside build_dir (the export's own files); and one
    that exists as anything but a regular file (a FIFO would hang the read, a device never end)."""
    lock = os.path.join(workdir, lockfile)
    real_lock = os.path.realpath(lock)
    output_path = os.path.join(workdir, output)
    published = [("the output", output_path)]
    published += [(f"the side file {output}{suffix}", output_path + suffix) for suffix in SUFFIXES.values()]
    for what, path in published:
        if _same_file(lock, path):
            raise TarexportError(f"config key lockfile: {lockfile} is {what}; choose another lockfile")
    for configured, path in sources:
        if _inside(real_lock, os.path.realpath(path)) or _same_file(lock, path):
            what = "is" if _same_file(lock, path) else "lies inside"
            raise TarexportError(
                f"config key lockfile: {lockfile} {what} this source; keep the lock beside the configuration",
                source=configured,
            )
    if _inside(real_lock, os.path.realpath(os.path.join(workdir, build_dir))):
        raise TarexportError(
            f"config key lockfile: {lockfile} lies inside build_dir {build_dir}; keep the lock elsewhere"
        )
    if os.path.exists(real_lock) and not stat.S_ISREG(os.stat(real_lock).st_mode):
        raise TarexportError(
            f"config key lockfile: {lockfile} is not a regular file (a directory, FIFO or device); name a file"
        )


def check_build_dir(build_dir: str, workdir: str) -> None:
    """Refuse a build directory whose own directories are symlinks (or not directories).

    The export writes, renames and removes files in them, and never makes a symlink
    there: a `layers` linked elsewhere would be written through, its temporary files
    removed. `build_dir` itself may be a symlink (a cache on a bigger disk); its
    resolved place was checked against the sources.
    """
    root = os.path.realpath(os.path.join(workdir, build_dir))
    for name in buildpaths.DIRECTORIES:
        path = os.path.join(root, name)
        if os.path.islink(path):
            raise TarexportError(
                f"config key build_dir: {os.path.join(build_dir, name)} is a symbolic link; the export writes"
                " and removes files there, so it must be a directory: remove the link"
            )
        if os.path.lexists(path) and not os.path.isdir(path):
            raise TarexportError(f"config key build_dir: {os.path.join(build_dir, name)} is not a directory; remove it")
        if name == "pycache" or not os.path.isdir(path):
            continue
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_symlink():
                    raise TarexportError(
                        f"config key build_dir: {os.path.join(build_dir, name, entry.name)} is a symbolic link,"
                        " which the export never makes; remove it"
                    )
