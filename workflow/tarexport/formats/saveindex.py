"""manifest.json and repositories, the index files every `docker save` archive has.

Both are written by json.NewEncoder(...).Encode in moby: compact, HTML-escaped, with a
trailing newline. The formats differ only in the paths and in what a tag maps to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..gojson import encode_string, encode_value


@dataclass(frozen=True)
class ManifestEntry:
    config: str  # archive path of the config
    repo_tags: list[str] | None  # familiar names; None for an image saved by ID
    layers: list[str]  # archive paths of the layer files, bottom to top
    top: str  # what `repositories` maps the image's tags to


def manifest_json(entries: list[ManifestEntry]) -> bytes:
    items = [
        '{"Config":'
        + encode_string(entry.config)
        + ',"RepoTags":'
        + encode_value(entry.repo_tags)
        + ',"Layers":'
        + encode_value(entry.layers)
        + "}"
        for entry in entries
    ]
    return ("[" + ",".join(items) + "]\n").encode()


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
    return [ManifestEntry(item["Config"], item["RepoTags"], list(item["Layers"]), "") for item in json.loads(data)]
