"""Where the export may write, checked before anything is written or removed.

Snakemake removes a job's existing outputs before it runs the job, and the stale-archive
check removes an archive of another configuration: an `output` that is a source would be
deleted before it is read. So the output and the build directory must keep clear of
every local source, and of each other, with symlinks resolved.
"""

from __future__ import annotations

import os

from .errors import TarexportError


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def check_write_paths(output: str, build_dir: str, sources: list[tuple[str, str]], workdir: str) -> None:
    """Refuse an output or build directory that is, holds or lies inside a source.

    `sources` are (as configured, absolute path) of the local sources; paths are
    resolved through symlinks, so a link to a source counts as the source.
    """
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
