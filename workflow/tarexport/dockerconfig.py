"""Docker 20.10's image config structs, decoded and written back with Go's rules
(gojson.py): what `docker save` reads from a config to write the v1 `json` files, and the
`history` it keeps. The field tables are Docker's struct declarations, in their order."""

from __future__ import annotations

from typing import Any

from .errors import TarexportError
from .gojson import Field, GoStruct, JSONObject, go_equal_fold, load_pairs, struct_kind


class HealthConfig(GoStruct):
    """api/types/container.HealthConfig (Docker 20.10)."""

    FIELDS = (
        Field("Test", "strings", omitempty=True),
        Field("Interval", "int", omitempty=True),
        Field("Timeout", "int", omitempty=True),
        Field("StartPeriod", "int", omitempty=True),
        Field("Retries", "int", omitempty=True),
    )


class ContainerConfig(GoStruct):
    """api/types/container.Config (Docker 20.10)."""

    FIELDS = (
        Field("Hostname", "string"),
        Field("Domainname", "string"),
        Field("User", "string"),
        Field("AttachStdin", "bool"),
        Field("AttachStdout", "bool"),
        Field("AttachStderr", "bool"),
        Field("ExposedPorts", "setmap", omitempty=True),
        Field("Tty", "bool"),
        Field("OpenStdin", "bool"),
        Field("StdinOnce", "bool"),
        Field("Env", "strings"),
        Field("Cmd", "strslice"),
        Field("Healthcheck", "health", omitempty=True),
        Field("ArgsEscaped", "bool", omitempty=True),
        Field("Image", "string"),
        Field("Volumes", "setmap"),
        Field("WorkingDir", "string"),
        Field("Entrypoint", "strslice"),
        Field("NetworkDisabled", "bool", omitempty=True),
        Field("MacAddress", "string", omitempty=True),
        Field("OnBuild", "strings"),
        Field("Labels", "stringmap"),
        Field("StopSignal", "string", omitempty=True),
        Field("StopTimeout", "intptr", omitempty=True),
        Field("Shell", "strslice", omitempty=True),
    )


class V1Image(GoStruct):
    """image.V1Image (Docker 20.10): the v1 fields of an image config."""

    # Docker decodes configs into image.Image, whose own `parent` field shadows V1Image's.
    SHADOWED = frozenset({"parent"})
    FIELDS = (
        Field("id", "string", omitempty=True),
        Field("parent", "string", omitempty=True),
        Field("comment", "string", omitempty=True),
        Field("created", "time"),
        Field("container", "string", omitempty=True),
        Field("container_config", "struct", omitempty=True),
        Field("docker_version", "string", omitempty=True),
        Field("author", "string", omitempty=True),
        Field("config", "configptr", omitempty=True),
        Field("architecture", "string", omitempty=True),
        Field("variant", "string", omitempty=True),
        Field("os", "string", omitempty=True),
        Field("Size", "int", omitempty=True),
    )


class History(GoStruct):
    """image.History (Docker 20.10): one entry of a config's `history`."""

    FIELDS = (
        Field("created", "timeptr", omitempty=True),
        Field("author", "string", omitempty=True),
        Field("created_by", "string", omitempty=True),
        Field("comment", "string", omitempty=True),
        Field("empty_layer", "bool", omitempty=True),
    )


def decode_history(config_bytes: bytes) -> list[dict[str, Any]]:
    """A config's `history` as Docker's image.Image holds it: each entry's field values
    (Go's key matching; the last matching key wins). ValueError where Go's decoder fails."""
    pairs = load_pairs(config_bytes, "config")
    if not isinstance(pairs, JSONObject):
        raise ValueError("config is not a JSON object")
    raw: Any = None
    for key, value in pairs:
        if go_equal_fold(key, "history"):
            raw = value
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("history must be a list")
    return [History().values if entry is None else History.decode(entry, "history").values for entry in raw]


struct_kind("health", HealthConfig, pointer=True)
struct_kind("configptr", ContainerConfig, pointer=True)
struct_kind("struct", ContainerConfig, pointer=False)


def decode_v1_image(config_bytes: bytes, what: str) -> V1Image:
    """Decode an image config into V1Image as Docker's image.NewFromJSON does."""
    pairs = load_pairs(config_bytes, what)
    try:
        return V1Image.decode(pairs, "")
    except ValueError as exc:
        raise TarexportError(f"{what}: {exc}") from None
