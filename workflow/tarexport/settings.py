"""The validated configuration, with paths resolved against the working directory."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
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
    return _shown_path(error.absolute_path)


def _shown_path(parts: Iterable[Any]) -> str:
    """Where in the configuration, as `sources[2].url`; a key that is not a plain name (it
    may be a megabyte of text, or hold a newline) is shown shortened, escaped."""
    path = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            path += f"[{part}]"
            continue
        key = part if isinstance(part, str) and _PLAIN_KEY.fullmatch(part) else _shown_key(part)
        path += f".{key}" if path else key
    return path or "(top level)"


def _shown_key(key: Any) -> str:
    text = key if isinstance(key, str) else str(key) if isinstance(key, (int, float, type(None))) else "(a key)"
    return repr(text[:_SHOWN_CHARS] + "...") if len(text) > _SHOWN_CHARS else repr(text)


def _quoted(value: Any) -> bool:
    """Whether an error line may show this value as it is: a short scalar or an empty list or
    mapping. jsonschema's messages quote the whole value, which may be megabytes long."""
    if value is None or isinstance(value, (bool, float)):
        return True
    if isinstance(value, int):
        return abs(value) < 10**18
    if isinstance(value, str):
        return len(value) <= _SHOWN_CHARS and value.isprintable()
    return isinstance(value, (list, dict)) and not value


def _kind(value: Any) -> str:
    """What a value is, in the schema's words, for a line that does not quote it."""
    names = {str: "a string", list: "a list", dict: "a mapping", int: "a number", float: "a number"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), "a value")


def _message(error: jsonschema.ValidationError) -> str:
    """What is wrong, never quoting more than a short scalar of the configuration."""
    rule, expected = error.validator, error.validator_value
    if rule == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        unknown = [key for key in error.instance if key not in known]
        shown = ", ".join(repr(key) if _quoted(key) else _shown_key(key) for key in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        return f"unknown key ({shown}{more} {'was' if len(unknown) == 1 else 'were'} unexpected)"
    if rule == "oneOf":
        return "must be a path, a mapping with `path` (and optional `type`, `repository`), or a registry"
    if rule == "uniqueItems":
        return "lists one item twice"
    if _quoted(error.instance) or rule == "required":
        return error.message  # the value is short (or a key the schema names): jsonschema's words
    if rule == "type":
        return f"{_kind(error.instance)} is not of type {expected!r}"
    if rule in ("enum", "const"):
        return f"{_kind(error.instance)} is not one of {expected if rule == 'enum' else [expected]!r}"
    if rule == "pattern":
        return f"does not match {expected!r}"
    if rule in ("minLength", "maxLength"):
        return f"must be {'at least' if rule == 'minLength' else 'at most'} {expected} characters long"
    if rule in ("minItems", "maxItems"):
        return f"must hold {'at least' if rule == 'minItems' else 'at most'} {expected} items"
    return f"breaks the schema's {rule} rule"


# A configuration is a few dozen settings and at most some thousands of images and sources.
# YAML aliases let a file of a few hundred bytes stand for a billion values (`b: [*a, *a,
# ...]`, `c: [*b, *b, ...]`): PyYAML shares the aliased objects, but jsonschema walks every
# use and quotes whole values in its messages, and Snakemake turns the whole configuration
# into JSON text for its run header. So the configuration is measured first, every alias
# counted at each use, and refused at the first bound passed: time and memory stay bounded
# whatever the aliases expand to. The bounds keep the schema check under about a second.
CONFIG_MAX_VALUES = 50_000  # lists, mappings, keys and scalars
CONFIG_MAX_DEPTH = 16  # the schema nests three levels
CONFIG_MAX_TEXT = 8 << 20  # characters of all strings and keys
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:/@-]{1,64}")
_SHOWN_CHARS = 40


def check_config_size(config: Any) -> None:
    """Refuse a configuration past the bounds above, in one line naming the top-level key where
    a bound was passed; it stops there, so a value of any logical size costs at most the
    bounds' work."""
    values = text = 0
    pending: list[tuple[Any, tuple[Any, ...]]] = [(config, ())]
    while pending:
        value, path = pending.pop()
        values += 1
        if isinstance(value, str):
            text += len(value)
        if values > CONFIG_MAX_VALUES or text > CONFIG_MAX_TEXT:
            what = (
                f"{CONFIG_MAX_VALUES} values" if values > CONFIG_MAX_VALUES else f"{CONFIG_MAX_TEXT >> 20} MiB of text"
            )
            raise TarexportError(
                f"config key {_shown_path(path[:1])}: more than {what} in the configuration (a YAML alias counts"
                " at each use); list fewer, without aliases"
            )
        if len(path) >= CONFIG_MAX_DEPTH and isinstance(value, (dict, list, tuple, set, frozenset)) and value:
            raise TarexportError(
                f"config key {_shown_path(path[:1])}: nested deeper than {CONFIG_MAX_DEPTH} levels, which no setting is"
            )
        if isinstance(value, dict):
            for key, item in value.items():
                values += 1
                text += len(key) if isinstance(key, str) else 0
                pending.append((item, (*path, key)))
        elif isinstance(value, (list, tuple, set, frozenset)):
            pending.extend((item, (*path, index)) for index, item in enumerate(value))


def _canonical(value: Any) -> Any:
    """A hashable stand-in equal for values JSON Schema calls equal (1 and 1.0; not 1 and true)."""
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, list):
        return ("list", tuple(map(_canonical, value)))
    if isinstance(value, dict):
        return ("mapping", frozenset((key, _canonical(item)) for key, item in value.items()))
    return (type(value).__name__, value if isinstance(value, str) else repr(value))


def _unique_items(
    validator: jsonschema.protocols.Validator, unique: bool, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """uniqueItems in linear time: jsonschema's compares every pair when items do not sort
    (numbers and one string: half a minute for 10,000 items)."""
    if unique and validator.is_type(instance, "array") and len(set(map(_canonical, instance))) < len(instance):
        yield jsonschema.ValidationError("lists one item twice")


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"uniqueItems": _unique_items})


def _first_error(config: dict[str, Any], schema: dict[str, Any]) -> jsonschema.ValidationError | None:
    """The first schema error by key path (the same one whatever order jsonschema finds
    them in), keeping one error at a time however many there are."""
    errors = _Validator(schema).iter_errors(config)
    return min(errors, key=lambda error: (list(map(str, error.absolute_path)), error.message), default=None)


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
    check_config_size(config)
    first = _first_error(config, schema)
    if first is not None:
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
