"""Reading a source's metadata files (index.json, manifests, configs, manifest.json) as
Docker and skopeo read them: any source kind uses these, none owns them."""

from __future__ import annotations

import json
from typing import Any

from ..digests import check_digest
from ..errors import TarexportError, located
from ..gojson import JSONObject, go_field, go_text, load_pairs, refuse_fold_twins


def parse_json(data: bytes, what: str, source: str, member: str, expected: type = dict) -> Any:
    """Parse a metadata file; anything but valid JSON of the expected type is an error."""
    try:
        value = json.loads(go_text(data), object_pairs_hook=refuse_fold_twins)  # lenient with bad UTF-8, as Docker is
    except (ValueError, RecursionError) as exc:
        raise TarexportError(f"{what} is not valid JSON ({exc})", source=source, member=member) from None
    except TarexportError as exc:
        raise TarexportError(f"{what} {exc}", source=source, member=member) from None
    if not isinstance(value, expected):
        kind = "a JSON object" if expected is dict else "a JSON list"
        raise TarexportError(f"{what} is not {kind}", source=source, member=member)
    return value


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
