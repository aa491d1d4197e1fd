"""Files published beside the archive, as air-gap releases publish them: `<output>.sha256`
(one line that `sha256sum -c` checks), `<output>.images.txt` (each exported name with
its digest, in request order, as RKE2's images.txt and Rancher's digest lists) and
`<output>.provenance.json` (provenance.py). All are deterministic, written by the export
job after the archive, listed in its plan record and removed with it
(fileio.remove_stale_output).
"""

from __future__ import annotations

import hashlib
import os

from . import buildpaths
from .fileio import write_atomically
from .summary import SummaryImage

# config value -> the suffix its file adds to the archive's name
SUFFIXES = {"sha256": ".sha256", "images": ".images.txt", "provenance": ".provenance.json"}


def side_paths(output: str, kinds: list[str] | tuple[str, ...]) -> dict[str, str]:
    return {kind: output + SUFFIXES[kind] for kind in kinds}


def checksum_line(archive: str, sha256: str) -> str:
    """`sha256sum`'s own format, naming the archive by its file name: checked with
    `sha256sum -c` in the directory the two files are published to."""
    return f"{sha256}  {os.path.basename(archive)}\n"


def image_list(images: list[SummaryImage], digests: list[str]) -> str:
    """`name@digest` per exported name (an untagged image: its digest alone)."""
    lines = []
    for image, digest in zip(images, digests, strict=True):
        lines += [f"{name}@{digest}" for name in image.names] or [digest]
    return "".join(line + "\n" for line in lines)


def image_digests(images: list[SummaryImage], fmt: str, build_dir: str) -> list[str]:
    """What loaders show for each image: its OCI manifest's digest (format oci), else its
    image ID (format docker holds no manifest)."""
    if fmt != "oci":
        return [image.image_id for image in images]
    digests = []
    for image in images:
        with open(buildpaths.oci_manifest(build_dir, image.image_id.removeprefix("sha256:")), "rb") as handle:
            digests.append("sha256:" + hashlib.sha256(handle.read()).hexdigest())
    return digests


def write_side_files(
    paths: dict[str, str],
    archive: str,
    sha256: str,
    images: list[SummaryImage],
    fmt: str,
    build_dir: str,
    provenance_template: str = "",
) -> None:
    if "sha256" in paths:
        write_atomically(paths["sha256"], checksum_line(archive, sha256).encode())
    digests = image_digests(images, fmt, build_dir) if {"images", "provenance"} & set(paths) else []
    if "images" in paths:
        write_atomically(paths["images"], image_list(images, digests).encode())
    if "provenance" in paths:
        from .provenance import statement

        write_atomically(paths["provenance"], statement(provenance_template, archive, sha256, digests))
