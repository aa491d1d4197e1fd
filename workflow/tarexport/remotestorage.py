"""What the workflow does itself with objects in Snakemake's remote storage, around the jobs:
put back stored layers the assembly made again, remove an archive made from another plan,
and say what was written. Snakemake's storage objects are handed in (`storage_object_of`,
a build or output path -> its object: exists(), size(), local_path(), retrieve_object(),
store_object(), remove()), so this module imports nothing of Snakemake.

The plan record (fileio.write_plan_record) is an object too, beside the archive's: its
first line says which plan the archive was made from, its second ends with the archive's
size, its third is the archive's sha256.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from .sidefiles import SUFFIXES, side_paths

StorageObjectOf = Callable[[str], Any]
_T = TypeVar("_T")


def _storage_step(what: str, otherwise: Any) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """These run in Snakemake's hooks, around the jobs: storage that fails there (a network
    error, a permission) is one line saying what was not done, not a traceback, and the
    run's own outcome stands."""

    def wrap(step: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(step)
        def guarded(*args: Any) -> _T:
            try:
                return step(*args)
            except Exception as exc:  # the plugin's own errors (WorkflowError, botocore's)
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                print(f"tarexport: could not {what} ({reason})", file=sys.stderr)
                return otherwise  # type: ignore[no-any-return]

        return guarded

    return wrap


@_storage_step("put the layers made again back into storage; a later run makes them again", None)
def put_back(repaired_dir: str, build_dir: str, storage_object_of: StorageObjectOf) -> None:
    """Upload what the assembly made again (left in `repaired_dir`, relative to the build
    directory: repair.py) over the damaged objects, saying which. No directory (nothing
    was made again, or no remote storage): nothing to do."""
    if not repaired_dir or not os.path.isdir(repaired_dir):
        return
    for directory, _, names in sorted(os.walk(repaired_dir)):
        for name in sorted(names):
            made = os.path.join(directory, name)
            stored = os.path.join(build_dir, os.path.relpath(made, repaired_dir))
            target = storage_object_of(stored)
            local = str(target.local_path())
            os.makedirs(os.path.dirname(local), exist_ok=True)
            os.replace(made, local)
            target.store_object()
            os.remove(local)
            print(f"tarexport: put {stored}, made again, back into storage", file=sys.stderr)
    shutil.rmtree(repaired_dir, ignore_errors=True)


def _recorded(record: str, storage_object_of: StorageObjectOf) -> tuple[str, int, str] | None:
    """(plan digest, archive size, sha256) from the record object, if there is one."""
    stored = storage_object_of(record)
    if not stored.exists():
        return None
    local = str(stored.local_path())
    os.makedirs(os.path.dirname(local), exist_ok=True)
    stored.retrieve_object()
    try:
        with open(local, encoding="utf-8") as handle:
            lines = [*handle.read().splitlines(), "", "", ""]
    finally:
        os.remove(local)
    size = lines[1].rpartition(":")[2]
    return lines[0], int(size) if size.isdigit() else -1, lines[2]


@_storage_step("look in storage for an archive of another configuration", False)
def remove_stale_stored_output(output: str, record: str, plan_digest: str, storage_object_of: StorageObjectOf) -> bool:
    """The counterpart of fileio.remove_stale_output for objects: remove the archive object,
    its side files and its record when the record says it was made from another plan, and
    the archive object still has the recorded size (an object someone put there since is
    left alone). True if removed."""
    recorded = _recorded(record, storage_object_of)
    archive = storage_object_of(output)
    if recorded is None or not archive.exists():
        return False
    recorded_plan, recorded_size, _ = recorded
    if recorded_plan == plan_digest or archive.size() != recorded_size:
        return False
    archive.remove()
    for path in [record, *side_paths(output, tuple(SUFFIXES)).values()]:
        stored = storage_object_of(path)
        if stored.exists():
            stored.remove()
    return True


@_storage_step("read the archive's record in storage", None)
def written_archive(
    output: str, record: str, plan_digest: str, since: float, storage_object_of: StorageObjectOf
) -> tuple[int, str] | None:
    """The archive object's size and sha256, when its record was stored at or after `since`
    (by this run; objects are dated in whole seconds) and says the archive was made from
    this plan."""
    stored = storage_object_of(record)
    if not stored.exists() or stored.mtime() < int(since):
        return None
    recorded = _recorded(record, storage_object_of)
    if recorded is None or recorded[0] != plan_digest or not recorded[2]:
        return None
    return recorded[1], recorded[2]
