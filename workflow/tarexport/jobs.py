"""The small jobs of the docker format, each reading and writing only its declared files."""

from __future__ import annotations

import os
from typing import Any

from .digests import sha256_digest
from .errors import TarexportError
from .fileio import atomic_output, write_atomically
from .formats.docker_legacy import VERSION_BYTES, archive_entries, config_diff_ids, v1_layers
from .gojson import decode_v1_image
from .sources import BlobRef, open_container
from .tarball import write_tar


def copy_config(recipe: dict[str, Any], output: str, image: str = "") -> None:
    blob = BlobRef.from_json(recipe["blob"])
    container = open_container(blob.source_kind, blob.source_path, recipe["label"])
    try:
        data = container.read_small(blob.member)
    except TarexportError as exc:
        raise TarexportError(str(exc), image=image) from None
    actual = sha256_digest(data)
    if actual != recipe["image_id"]:
        raise TarexportError(
            f"config has digest {actual}, expected image ID {recipe['image_id']}",
            image=image,
            source=recipe["label"],
            member=blob.member,
        )
    write_atomically(output, data)


def write_v1_dir(recipe: dict[str, Any], json_path: str, version_path: str) -> None:
    """A v1 directory's json and VERSION: the top one from the config, lower ones from the chain."""
    if "config" in recipe:
        with open(recipe["config"], "rb") as handle:
            config = handle.read()
        layer = v1_layers(decode_v1_image(config, recipe["config"]), config_diff_ids(config))[-1]
    else:
        layer = v1_layers(None, recipe["diff_ids"], recipe["os"])[-1]
    if layer.v1_id != recipe["v1_id"]:
        raise TarexportError(f"v1 ID {layer.v1_id} differs from the plan's {recipe['v1_id']}; run the workflow again")
    write_atomically(json_path, layer.json_bytes)
    write_atomically(version_path, VERSION_BYTES)


def assemble(build_dir: str, output: str) -> None:
    entries = archive_entries(build_dir)
    for entry in entries:
        if entry.path and not os.path.isfile(entry.path):
            raise TarexportError(f"build file {entry.path} is missing; run the workflow again")
    with atomic_output(output) as out:
        write_tar(entries, out)
