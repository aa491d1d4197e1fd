"""Reading a source's metadata files (index.json, manifests, configs, manifest.json) as
Docker and skopeo read them: any source kind uses these, none owns them."""

from __future__ import annotations

from typing import Any

from ..digests import check_digest
from ..errors import TarexportError, located
from ..gojson import (
    BYTES,
    INT64,
    STRING,
    STRING_MAP,
    STRINGS,
    GoShape,
    JSONObject,
    go_field,
    go_loads,
    go_typed,
    load_pairs,
    refuse_fold_twins,
)

# The Go types loaders decode these files into (opencontainers/image-spec specs-go/v1, with
# Docker's distribution.Descriptor and schema2 platform, whose extra fields are typed too):
# a field of the wrong JSON type fails the whole file in Go, so it is refused here.
PLATFORM: GoShape = {
    "architecture": STRING,
    "os": STRING,
    "os.version": STRING,
    "os.features": STRINGS,
    "variant": STRING,
    "features": STRINGS,
}
DESCRIPTOR: GoShape = {
    "mediaType": STRING,
    "digest": STRING,
    "size": INT64,
    "urls": STRINGS,
    "annotations": STRING_MAP,
    "data": BYTES,
    "platform": PLATFORM,
    "artifactType": STRING,
}
OCI_INDEX: GoShape = {
    "schemaVersion": INT64,
    "mediaType": STRING,
    "artifactType": STRING,
    "manifests": ("list", DESCRIPTOR),
    "subject": DESCRIPTOR,
    "annotations": STRING_MAP,
}
# a manifest blob may be an index or an image manifest: its fields are read as either
OCI_DOCUMENT: GoShape = {**OCI_INDEX, "config": DESCRIPTOR, "layers": ("list", DESCRIPTOR)}
# `docker save`'s manifest.json (moby image/tarexport manifestItem)
DOCKER_MANIFEST: GoShape = (
    "list",
    {
        "Config": STRING,
        "RepoTags": STRINGS,
        "Layers": STRINGS,
        "Parent": STRING,
        "LayerSources": ("map", DESCRIPTOR),
    },
)
OCI_LAYOUT: GoShape = {"imageLayoutVersion": STRING}
# the only version containerd's importer takes (image-spec ImageLayoutVersion)
OCI_LAYOUT_VERSION = "1.0.0"


def parse_json(
    data: bytes, what: str, source: str, member: str, expected: type = dict, shape: GoShape | None = None
) -> Any:
    """Parse a metadata file as Go does (gojson.go_loads): anything but valid JSON of the
    expected type is an error, and so is, with a shape, a value Go cannot decode into it
    (its keys then come back as Go matches them: `Size` is `size`)."""
    try:
        value = go_loads(data, refuse_fold_twins)
    except (ValueError, RecursionError) as exc:
        raise TarexportError(f"{what} is not valid JSON ({exc})", source=source, member=member) from None
    except TarexportError as exc:
        raise TarexportError(f"{what} {exc}", source=source, member=member) from None
    if not isinstance(value, expected):
        kind = "a JSON object" if expected is dict else "a JSON list"
        raise TarexportError(f"{what} is not {kind}", source=source, member=member)
    if shape is not None:
        try:
            value = go_typed(value, shape, "")
        except ValueError as exc:
            raise TarexportError(f"{what}: {exc}", source=source, member=member) from None
    return value


def check_layout_file(data: bytes, source: str) -> None:
    """An `oci-layout` file as loaders read it: JSON whose imageLayoutVersion is 1.0.0
    (containerd refuses any other; garbage fails to decode)."""
    layout = parse_json(data, "oci-layout", source, "oci-layout", shape=OCI_LAYOUT)
    if layout.get("imageLayoutVersion") != OCI_LAYOUT_VERSION:
        raise TarexportError(
            f"imageLayoutVersion is not {OCI_LAYOUT_VERSION}, the only version loaders take",
            source=source,
            member="oci-layout",
        )


def diff_ids_of(config: bytes, source: str, member: str) -> list[str]:
    """A config's rootfs.diff_ids as Docker reads them: configs are decoded with Go's rules
    (`RootFS` after `rootfs` is the one Go keeps), not refused for such twins."""
    try:
        document = load_pairs(config, "config")
    except TarexportError as error:
        raise located(error, source=source, member=member) from None
    if not isinstance(document, JSONObject):
        raise TarexportError("config is not a JSON object", source=source, member=member)
    diff_ids = go_field(go_field(document, "rootfs"), "diff_ids")
    if not isinstance(diff_ids, list):
        raise TarexportError("config has no rootfs.diff_ids list", source=source, member=member)
    try:
        return [check_digest(d, "diff_id") for d in diff_ids]
    except TarexportError as error:
        raise located(error, source=source, member=member) from None
