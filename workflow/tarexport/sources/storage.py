"""Sources given as storage URLs (`s3://bucket/images/app.tar`): a docker-save archive in
object storage, fetched through Snakemake's storage plugin when the plan is made.

Planning reads a source while the Snakefile is parsed, before Snakemake stages any file, so
the workflow hands in a function giving a URL's storage object (Snakemake's), and the local
copy is made here, where Snakemake itself would put it. It is kept dated as the object: a
later parse, and Snakemake staging it for a layer job (rules/layers.smk), find it current
and do not fetch it again; an object replaced since is fetched anew.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from ..errors import TarexportError

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://")


def url_scheme(path: str) -> str:
    """`s3` for `s3://bucket/key`; "" for a path."""
    found = _SCHEME.match(path)
    return found.group(1) if found else ""


def fetch_source(url: str, storage_object_of: Callable[[str], Any]) -> str:
    """The local copy of the archive at `url` (a path relative to the work directory)."""
    try:
        stored = storage_object_of(url)
        if not stored.exists():
            raise TarexportError("does not exist in storage", source=url)
        local = str(stored.local_path())
        is_dir = getattr(stored, "is_dir", None)  # (not in every plugin)
        if is_dir is not None and is_dir():
            raise TarexportError(
                "is a directory in storage: only an archive file (docker save) is fetched from storage;"
                " give its URL, or a path on a file system the jobs share",
                source=url,
            )
        size, mtime = stored.size(), stored.mtime()
        if not _is_copy_of(local, size, mtime):
            os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
            stored.retrieve_object()
            os.utime(local, (mtime, mtime))
    except TarexportError:
        raise
    except Exception as exc:  # the plugin's own (WorkflowError, botocore's): its first line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TarexportError(
            f"cannot be fetched from storage ({reason}); check the URL and the storage settings"
            " given to Snakemake (--storage-<provider>-...)",
            source=url,
        ) from None
    return local


def _is_copy_of(local: str, size: int, mtime: float) -> bool:
    try:
        status = os.stat(local)
    except OSError:
        return False
    return status.st_size == size and int(status.st_mtime) == int(mtime)
