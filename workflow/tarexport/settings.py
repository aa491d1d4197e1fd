"""The validated configuration, with paths resolved against the working directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import yaml

from .errors import TarexportError
from .sources.blobs import SourceKind
from .sources.loading import SourceSpec
from .sources.registry_http import RegistrySettings
from .sources.storage import url_scheme

# a registry source's keys that name files (resolved against the working directory)
REGISTRY_FILE_KEYS = ("ca_file", "cert_file", "key_file")


@dataclass(frozen=True)
class Settings:
    output: str
    format: str
    layers: str
    compression: str
    compressor_versions: str
    side_files: tuple[str, ...]
    lockfile: str  # "" for none
    lock_mode: str
    build_dir: str
    platform: str
    platforms: str
    attestations: str
    foreign_layers: str
    max_layer_expansion: int | None
    max_layer_mib: int
    keep_free_mib: int
    verify_layers: str
    link_layers: bool
    parallel_downloads: int
    sources: list[SourceSpec]
    images: list[str]
    effective: dict[str, Any]  # the configuration with its defaults, as given (for provenance)


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key")
    if error.validator == "oneOf":
        return "must be a path, a mapping with `path` (and optional `type`, `repository`), or a registry"
    return error.message


def _refuse_url(path: str) -> None:
    """A source path that is a URL that no storage plugin fetches here, in one line before any job."""
    scheme = url_scheme(path)
    if scheme in ("http", "https"):
        raise TarexportError("is a URL: a registry source is {type: registry, url: ...}", source=path)
    raise TarexportError(
        f"is a {scheme}:// URL, and sources are read when the plan is made: run the workflow with"
        " Snakemake's storage plugin for it, or copy it to a file system the jobs share",
        source=path,
    )


def load_settings(
    config: dict[str, Any], schema_path: str, workdir: str, fetch: Callable[[str], str] | None = None
) -> Settings:
    """The configuration, validated, with its defaults. `fetch`: a source given as a storage
    URL -> its local copy (sources/storage.py), when the workflow runs with storage plugins."""
    with open(schema_path, encoding="utf-8") as handle:
        schema = yaml.safe_load(handle)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        first = errors[0]
        raise TarexportError(f"config key {_key_path(first)}: {_message(first)}")
    defaults = {key: spec["default"] for key, spec in schema["properties"].items() if "default" in spec}
    merged = {**defaults, **config}
    if merged["format"] == "docker" and merged["layers"] != "uncompressed":
        raise TarexportError(
            "config key layers: `keep` needs format: oci (format docker stores uncompressed layer.tar)"
        )

    def resolve(path: str) -> str:
        return os.path.normpath(os.path.join(workdir, os.path.expanduser(path)))

    sources = []
    for item in merged["sources"]:
        if isinstance(item, str):
            item = {"path": item}
        if item.get("type") == "registry":
            files = {key: resolve(item[key]) for key in REGISTRY_FILE_KEYS if item.get(key)}
            fields = {k: v for k, v in item.items() if k not in ("type", *files)}
            registry = RegistrySettings(**fields, **files)
            sources.append(SourceSpec(registry.url or "registry", "", SourceKind.REGISTRY, registry=registry))
            continue
        path, storage_url = item["path"], ""
        if url_scheme(path):
            if fetch is None or url_scheme(path) in ("http", "https"):
                _refuse_url(path)
            storage_url, path = path, fetch(path)  # type: ignore[misc]
        sources.append(
            SourceSpec(
                path=storage_url or path,
                resolved=resolve(path),
                type=SourceKind(item["type"]) if item.get("type") else None,
                repository=item.get("repository", ""),
                storage_url=storage_url,
            )
        )
    return Settings(
        output=merged["output"],
        format=merged["format"],
        layers=merged["layers"],
        compression=merged["compression"],
        compressor_versions=merged["compressor_versions"],
        side_files=tuple(merged["side_files"]),
        lockfile=merged["lockfile"] or "",
        lock_mode=merged["lock_mode"],
        build_dir=merged["build_dir"].rstrip("/") or ".",
        platform=merged["platform"],
        platforms=merged["platforms"],
        attestations=merged["attestations"],
        foreign_layers=merged["foreign_layers"],
        max_layer_expansion=merged["max_layer_expansion"],
        max_layer_mib=merged["max_layer_mib"],
        keep_free_mib=merged["keep_free_mib"],
        verify_layers=merged["verify_layers"],
        link_layers=merged["link_layers"],
        parallel_downloads=merged["parallel_downloads"],
        sources=sources,
        images=list(merged["images"]),
        effective=merged,
    )
