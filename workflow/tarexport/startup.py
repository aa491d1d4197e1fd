"""What the Snakefile gets when it is parsed: a planned export, or why there is none.

A plan that fails (a typo'd image, a source gone) must still not leave the archive of an
earlier configuration at `output`. Whether this run is a dry run is unknown while the
Snakefile is parsed (Snakemake learns its executor later), so the failure is kept here and
acted on when the target is asked for: by then a dry run is known, and leaves files alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

from . import buildpaths
from .compressors import COMPRESSORS
from .errors import TarexportError, error_line
from .fileio import remove_stale_output
from .pathsafety import check_build_dir, check_lock_path, check_write_paths
from .pipeline import Pipeline
from .plan import build_catalog, make_plan, plan_resolution
from .remotestorage import StorageObjectOf, remove_stale_stored_output
from .settings import Settings, check_config_size, load_settings
from .sidefiles import side_paths
from .sources.storage import fetch_source


@dataclass(frozen=True)
class FailedPlan:
    """No export for this configuration. `stale_output` is set only once the write paths
    passed their checks: an output that is a source is never removed."""

    message: str
    stale_output: str = ""
    plan_record: str = ""

    def refuse(self, dry_run: bool, output_object_of: StorageObjectOf | None = None) -> NoReturn:
        """Remove an archive of another configuration (not in a dry run; an object, under
        remote storage: `output_object_of`), then stop with the one-line error."""
        if self.stale_output and not dry_run:
            if output_object_of is not None:
                removed = remove_stale_stored_output(self.stale_output, self.plan_record, "", output_object_of)
            else:
                removed = remove_stale_output(self.stale_output, self.plan_record, "")
            if removed:
                print(f"tarexport: removed {self.stale_output}: made from another configuration", file=sys.stderr)
        raise SystemExit(self.message)


def checked_settings(
    config: dict[str, Any], schema_path: str, workdir: str, fetch: Callable[[str], str] | None = None
) -> Settings:
    """The configuration, validated, with its write paths checked against its sources."""
    settings = load_settings(config, schema_path, workdir, fetch)
    if settings.lock_mode == "frozen" and not settings.lockfile:
        raise TarexportError("config key lock_mode: frozen needs a lock file to read; set lockfile: PATH")
    local = [(spec.path, spec.resolved) for spec in settings.sources if spec.registry is None]
    check_write_paths(settings.output, settings.build_dir, local, workdir)
    if settings.lockfile:
        check_lock_path(settings.lockfile, settings.output, settings.build_dir, local, workdir)
    written = list(side_paths(settings.output, settings.side_files).values())
    if settings.lockfile and settings.lock_mode == "update":
        written.append(settings.lockfile)
    for path in written:
        check_write_paths(path, settings.build_dir, local, workdir)
    check_build_dir(settings.build_dir, workdir)
    if settings.compression != "none":
        COMPRESSORS[settings.compression].check_version(settings.compressor_versions == "any")
    return settings


def planned(settings: Settings, workdir: str, schema_dir: str) -> Pipeline:
    cache = os.path.join(workdir, buildpaths.registry_cache(settings.build_dir))
    all_platforms = settings.platforms == "all"
    attestations = settings.attestations == "keep"
    if settings.lockfile and settings.lock_mode == "frozen":
        from .lockfile import check_settings, read_lock, registry_requests, resolve_locked

        lock_path = os.path.join(workdir, settings.lockfile)
        lock = read_lock(lock_path, settings.lockfile, os.path.join(schema_dir, "lock.schema.json"))
        check_settings(lock, settings.platform, settings.platforms)
        asked = registry_requests(lock, settings.images, all_platforms)
        catalog = build_catalog(settings.sources, settings.platform, all_platforms, asked, cache, attestations)
        resolved = resolve_locked(catalog, settings.images, lock, settings.layers == "keep")
        return Pipeline(settings, plan_resolution(catalog, *resolved))
    catalog = build_catalog(settings.sources, settings.platform, all_platforms, settings.images, cache, attestations)
    return Pipeline(settings, make_plan(catalog, settings.images))


def prepare(config: dict[str, Any], schema_path: str, workdir: str) -> Pipeline:
    """The planned export; a user mistake raises TarexportError."""
    return planned(checked_settings(config, schema_path, workdir), workdir, os.path.dirname(schema_path))


def refuse_oversized(config: dict[str, Any]) -> None:
    """Stop at once, while the Snakefile is parsed, on a configuration past the size bounds
    (settings.check_config_size): Snakemake itself turns the whole configuration into JSON
    text for its run header before any target is asked for, which a FailedPlan waits for.
    Nothing is removed: the configuration was not read far enough to name an output."""
    try:
        check_config_size(config)
    except TarexportError as error:
        raise SystemExit(error_line(error)) from None


def plan_export(
    config: dict[str, Any],
    schema_path: str,
    workdir: str,
    source_object_of: StorageObjectOf | None = None,
    output_object_of: StorageObjectOf | None = None,
) -> Pipeline | FailedPlan:
    """What the Snakefile runs: the plan with its files written, or the one-line failure
    (with the archive it may remove, once the write paths are known to be safe).
    `source_object_of`: a storage URL's object (Snakemake's), for sources given as URLs;
    `output_object_of`, under remote storage: an output path's object."""
    refuse_oversized(config)
    fetch = None if source_object_of is None else partial(fetch_source, storage_object_of=source_object_of)
    try:
        settings = checked_settings(config, schema_path, workdir, fetch)
    except (TarexportError, OSError) as error:
        return FailedPlan(error_line(error))
    try:
        pipeline = planned(settings, workdir, os.path.dirname(schema_path))
        pipeline.write_plan_files()
    except (TarexportError, OSError) as error:
        return FailedPlan(
            error_line(error),
            stale_output=settings.output,  # relative to the work directory, as Snakemake runs in it
            plan_record=buildpaths.plan_record(settings.build_dir, settings.output, output_object_of is not None),
        )
    return pipeline
