"""manifest.json and repositories, the index files every `docker save` archive has.

Both are written by json.NewEncoder(...).Encode in moby: compact, HTML-escaped, with a
trailing newline. The formats differ only in the paths and in what a tag maps to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..descriptors import ForeignSource
from ..dockerconfig import decode_history
from ..errors import TarexportError
from ..gojson import encode_string, encode_value


@dataclass(frozen=True)
class ManifestEntry:
    config: str  # archive path of the config
    repo_tags: list[str] | None  # familiar names; None for an image saved by ID
    layers: list[str]  # archive paths of the layer files, bottom to top
    top: str  # what `repositories` maps the image's tags to
    layer_sources: dict[str, ForeignSource] = field(default_factory=dict)  # diff_id -> foreign layer origin
    parent: str = ""  # the parent image's ID (see parent_link), or ""


def manifest_json(entries: list[ManifestEntry]) -> bytes:
    items = [
        '{"Config":'
        + encode_string(entry.config)
        + ',"RepoTags":'
        + encode_value(entry.repo_tags)
        + ',"Layers":'
        + encode_value(entry.layers)
        + (',"Parent":' + encode_string(entry.parent) if entry.parent else "")
        + _layer_sources(entry.layer_sources)
        + "}"
        for entry in entries
    ]
    return ("[" + ",".join(items) + "]\n").encode()


def _layer_sources(sources: dict[str, ForeignSource]) -> str:
    """LayerSources (omitempty): diff_id -> distribution.Descriptor (mediaType, size, digest, urls)."""
    if not sources:
        return ""
    items = []
    for diff_id in sorted(sources):
        source = sources[diff_id]
        fields = [f'"mediaType":{encode_string(source.media_type)}'] if source.media_type else []
        fields += [f'"size":{source.size}'] if source.size else []
        fields.append(f'"digest":{encode_string(source.digest)}')
        fields += [f'"urls":{encode_value(list(source.urls))}'] if source.urls else []
        items.append(encode_string(diff_id) + ":{" + ",".join(fields) + "}")
    return ',"LayerSources":{' + ",".join(items) + "}"


def repositories_json(entries: list[ManifestEntry]) -> bytes | None:
    """familiar name -> tag -> top; None when nothing is tagged (Docker writes no file)."""
    repos: dict[str, dict[str, str]] = {}
    for entry in entries:
        for tagged in entry.repo_tags or []:
            name, _, tag = tagged.rpartition(":")
            repos.setdefault(name, {})[tag] = entry.top
    if not repos:
        return None
    return (encode_value(repos) + "\n").encode()


def parse_manifest_json(data: bytes) -> list[ManifestEntry]:
    """Read back a manifest.json written by manifest_json()."""
    return [
        ManifestEntry(item["Config"], item["RepoTags"], list(item["Layers"]), "", parent=item.get("Parent", ""))
        for item in json.loads(data)
    ]


def parent_link(child_config: bytes, parent_config: bytes) -> bool:
    """Would `docker load` (20.10) keep this Parent link? Its loader compares only histories:
    both empty, or the child's one entry longer and the parent's entries equal to the child's
    first ones as Go values (a `created` time equal in instant and offset). Layers are not
    compared. A link it refuses fails the whole load, so such a link is never written."""
    try:
        child, parent = decode_history(child_config), decode_history(parent_config)
    except (ValueError, TarexportError):  # Docker could not decode the config either
        return False
    if not child and not parent:
        return True
    return len(child) - len(parent) == 1 and child[: len(parent)] == parent
