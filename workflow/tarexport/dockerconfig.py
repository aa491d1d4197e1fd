"""Docker 20.10's image config structs, decoded and written back with Go's rules
(gojson.py): what `docker save` reads from a config to write the v1 `json` files, and the
`history` it keeps. The field tables are Docker's struct declarations, in their order."""

from __future__ import annotations

from typing import Any

from .errors import TarexportError
from .gojson import GoStruct, JSONObject, fields, go_equal_fold, load_pairs, struct_kind


class HealthConfig(GoStruct):
    """api/types/container.HealthConfig (Docker 20.10)."""

    FIELDS = fields(
        """
        Test        strings omitempty
        Interval    int omitempty
        Timeout     int omitempty
        StartPeriod int omitempty
        Retries     int omitempty
        """
    )


class ContainerConfig(GoStruct):
    """api/types/container.Config (Docker 20.10)."""

    FIELDS = fields(
        """
        Hostname        string
        Domainname      string
        User            string
        AttachStdin     bool
        AttachStdout    bool
        AttachStderr    bool
        ExposedPorts    setmap omitempty
        Tty             bool
        OpenStdin       bool
        StdinOnce       bool
        Env             strings
        Cmd             strslice
        Healthcheck     health omitempty
        ArgsEscaped     bool omitempty
        Image           string
        Volumes         setmap
        WorkingDir      string
        Entrypoint      strslice
        NetworkDisabled bool omitempty
        MacAddress      string omitempty
        OnBuild         strings
        Labels          stringmap
        StopSignal      string omitempty
        StopTimeout     intptr omitempty
        Shell           strslice omitempty
        """
    )


class V1Image(GoStruct):
    """image.V1Image (Docker 20.10): the v1 fields of an image config."""

    # Docker decodes configs into image.Image, whose own `parent` field shadows V1Image's.
    SHADOWED = frozenset({"parent"})
    FIELDS = fields(
        """
        id               string omitempty
        parent           string omitempty
        comment          string omitempty
        created          time
        container        string omitempty
        container_config struct omitempty
        docker_version   string omitempty
        author           string omitempty
        config           configptr omitempty
        architecture     string omitempty
        variant          string omitempty
        os               string omitempty
        Size             int omitempty
        """
    )


class History(GoStruct):
    """image.History (Docker 20.10): one entry of a config's `history`."""

    FIELDS = fields(
        """
        created     timeptr omitempty
        author      string omitempty
        created_by  string omitempty
        comment     string omitempty
        empty_layer bool omitempty
        """
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
