"""The legacy `docker save` layout (Docker 1.10-24, moby image/tarexport/save.go).

Functions from image data to the bytes of each small file (pure), and from the finished
build directory to the table of archive entries (which reads manifest.json and the
configs there, as a loader would).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .. import buildpaths
from ..descriptors import ForeignSource
from ..digests import chain_ids, hex_of
from ..dockerconfig import V1Image, decode_v1_image
from ..gojson import RawJSON, encode_string, encode_value, go_field, load_pairs
from ..gotime import UNIX_EPOCH
from ..tarball import Entry, sort_key
from .saveindex import ManifestEntry, parse_manifest_json

VERSION_BYTES = b"1.0"


@dataclass(frozen=True)
class V1Layer:
    """One `<v1id>/` directory of an image: its ID and the `json` file's bytes."""

    v1_id: str  # hex
    json_bytes: bytes
    os_name: str  # in json_bytes, not in the ID


def _lower_v1_image() -> V1Image:
    # Docker saves lower layers with only `created` at the Unix epoch (pre-1.9 compat).
    image = V1Image()
    image.values["created"] = UNIX_EPOCH
    return image


def create_v1_id(image: V1Image, chain_id: str, parent_v1_id: str) -> str:
    """image/v1 CreateID: sha256 of the V1Image re-marshalled as a sorted map."""
    fields = dict(image.encoded_fields({"id": ""}))
    fields["layer_id"] = encode_string(chain_id)
    if parent_v1_id:
        fields["parent"] = encode_string("sha256:" + parent_v1_id)
    text = encode_value({k: RawJSON(v) for k, v in fields.items()})
    return hashlib.sha256(text.encode()).hexdigest()


def v1_layers(config: V1Image | None, diff_ids: list[str], os_name: str = "") -> list[V1Layer]:
    """Every v1 directory of an image, bottom to top, as Docker 20.10 writes them.

    Without a config, every layer is a lower one: enough for the directories below the top.
    """
    layers: list[V1Layer] = []
    parent = ""
    chains = chain_ids(diff_ids)
    if config is not None:
        os_name = config.values["os"]
    for index, chain_id in enumerate(chains):
        image = config if config is not None and index == len(chains) - 1 else _lower_v1_image()
        v1_id = create_v1_id(image, chain_id, parent)
        # Docker sets `os` after computing the ID, so lower layers carry it unhashed.
        overrides: dict[str, Any] = {"id": v1_id, "os": os_name}
        if parent:
            overrides["parent"] = parent
        layers.append(V1Layer(v1_id, image.encode(overrides).encode(), os_name))
        parent = v1_id
    return layers


def index_entries(
    images: list[tuple[str, list[str] | None, list[str], dict[str, ForeignSource], str]],
) -> list[ManifestEntry]:
    """manifest.json entries from (image ID hex, familiar tags, v1 IDs, foreign layers, Parent
    image ID or ""), in request order."""
    return [
        ManifestEntry(
            f"{image_hex}.json", tags, [f"{v1_id}/layer.tar" for v1_id in v1_ids], v1_ids[-1], foreign, parent
        )
        for image_hex, tags, v1_ids, foreign, parent in images
    ]


def config_diff_ids(config_bytes: bytes) -> list[str]:
    """As planning read them (sources/metadata.diff_ids_of) and Docker does: Go's key matching."""
    return list(go_field(go_field(load_pairs(config_bytes, "config"), "rootfs"), "diff_ids"))


# Docker's system.Chtimes sets times outside [epoch, time.Unix(0, 1<<63-1)] to the epoch.
_CHTIMES_MAX = (2**63 - 1) // 10**9


def file_mtime(created_unix: int) -> int:
    """The mtime Docker gives files stamped with an image's `created`."""
    return created_unix if 0 <= created_unix <= _CHTIMES_MAX else 0


def archive_entries(build_dir: str, document_files: list[str]) -> list[Entry]:
    """The archive's entries, derived from the finished build directory.

    Reads manifest.json and the configs as a loader would, so the assembly needs no
    other recipe (`document_files`, the OCI format's manifests, are none here): the first
    v1 directory (in manifest order) holding a diff gets the file, later ones a relative
    symlink to it, as Docker writes shared layers.
    """
    with open(buildpaths.manifest(build_dir, "docker"), "rb") as handle:
        manifest_bytes = handle.read()
    entries = parse_manifest_json(manifest_bytes)
    out: list[Entry] = []
    written_dirs: set[str] = set()
    diff_home: dict[str, str] = {}
    for entry in entries:
        config_hex = entry.config.removesuffix(".json")
        config_path = buildpaths.config(build_dir, config_hex)
        with open(config_path, "rb") as handle:
            config_bytes = handle.read()
        v1_image = decode_v1_image(config_bytes, config_path)
        created = file_mtime(v1_image.values["created"].unix_seconds())
        os_name = v1_image.values["os"]
        out.append(Entry(entry.config, "file", created, path=config_path, check=("config", "sha256:" + config_hex)))
        v1_ids = [layer.split("/", 1)[0] for layer in entry.layers]
        for v1_id, diff_id in zip(v1_ids, config_diff_ids(config_bytes), strict=True):
            if v1_id in written_dirs:
                continue
            written_dirs.add(v1_id)
            out.append(Entry(v1_id, "dir", created))
            out.append(Entry(f"{v1_id}/VERSION", "file", created, path=buildpaths.v1_version(build_dir, v1_id)))
            out.append(Entry(f"{v1_id}/json", "file", created, path=buildpaths.v1_json(build_dir, v1_id, os_name)))
            home = diff_home.setdefault(diff_id, v1_id)
            if home == v1_id:
                layer_path = buildpaths.layer(build_dir, hex_of(diff_id))
                out.append(Entry(f"{v1_id}/layer.tar", "file", created, path=layer_path, check=("layer", diff_id)))
            else:
                out.append(Entry(f"{v1_id}/layer.tar", "symlink", created, target=f"../{home}/layer.tar"))
    out.append(Entry("manifest.json", "file", 0, data=manifest_bytes))
    if any(entry.repo_tags for entry in entries):
        with open(buildpaths.repositories(build_dir, "docker"), "rb") as handle:
            out.append(Entry("repositories", "file", 0, data=handle.read()))
    return sorted(out, key=sort_key)
