"""What a job is told, typed once: the planner writes each recipe with `to_text`, the job
reads it back with `from_json`, and neither spells the other's keys.

NamedTuples and json only: every layer job imports this, and dataclasses alone cost a job
about 6 ms. The texts are stable (sorted keys, no spaces): Snakemake compares a tracked
recipe by its text, and the plan digest is made from them.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .sources.blobs import BlobRef

# Bumped when the archive's bytes change for the same plan: it is part of the plan digest,
# so an archive made by an earlier version is removed and made again. (Build files are
# named by their content; the profile drops Snakemake's params and code triggers.)
RECIPE_VERSION = 1


def recipe_json(value: Any) -> str:
    """A stable JSON text for a job recipe (Snakemake compares params by repr)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def document_bytes(value: Any) -> bytes:
    """A JSON document people read and diff (the lock file, the provenance statement): two-space
    indents, UTF-8 as it is, a final newline; keys in the order given."""
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


class LayerRecipe(NamedTuple):
    """What a layer job must produce (tracked): the layer with this diff_id."""

    diff_id: str
    v: int = RECIPE_VERSION

    def to_text(self) -> str:
        return recipe_json(self._asdict())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerRecipe:
        return cls(data["diff_id"], data.get("v", RECIPE_VERSION))


class LayerSource(NamedTuple):
    """Where and how a layer job reads its blob (untracked: the bytes are verified)."""

    blob: BlobRef
    label: str  # the source as configured, for messages
    max_expansion: int | None
    max_bytes: int | None
    keep_free: int
    link: bool

    def to_text(self) -> str:
        return recipe_json({**self._asdict(), "blob": self.blob.to_json()})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerSource:
        return cls(
            BlobRef.from_json(data["blob"]),
            data["label"],
            data.get("max_expansion"),
            data.get("max_bytes"),
            data.get("keep_free", 0),
            data.get("link", False),
        )


class LayerRemake(NamedTuple):
    """What a layer job was given: its recipe and source (JSON texts), the images it serves
    (for messages), and whether it keeps the blob compressed (rule layer_blob)."""

    recipe: str
    source: str
    context: str
    keep: bool


def remakes_json(remakes: dict[str, LayerRemake]) -> str:
    """The assembly's plan file of repairs (repair.py): stored layer paths relative to the
    build directory -> what their jobs were given."""
    return recipe_json({path: remake._asdict() for path, remake in remakes.items()})


class ManifestLayer(NamedTuple):
    """One layer of an OCI manifest job: its build file ("" for a foreign layer left out)."""

    path: str
    digest: str
    media_type: str
    size: int  # the recorded size of a layer left out; -1: the build file's
    urls: list[str]


class ManifestRecipe(NamedTuple):
    """An OCI manifest job: the image's config file and its layers, in order."""

    config: str
    layers: list[ManifestLayer]
    v: int = RECIPE_VERSION

    def to_text(self) -> str:
        return recipe_json({"v": self.v, "config": self.config, "layers": [lay._asdict() for lay in self.layers]})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManifestRecipe:
        layers = [ManifestLayer(**layer) for layer in data["layers"]]
        return cls(data["config"], layers, data.get("v", RECIPE_VERSION))


class PlatformManifest(NamedTuple):
    """One entry of a multi-platform index job: our manifest file and its platform."""

    path: str
    platform: dict[str, Any]


class AttestationManifest(NamedTuple):
    """An attestation manifest a multi-platform index job lists after its platforms: the
    file holding its bytes, its entry in the source index, and our manifest it describes."""

    path: str
    descriptor: dict[str, Any]
    describes: str  # our manifest file of the platform image it is about


def platforms_text(platforms: list[PlatformManifest], attestations: list[AttestationManifest] | None = None) -> str:
    listed = [list(entry) for entry in platforms]
    if not attestations:  # the recipe as it was before attestations were kept
        return recipe_json(listed)
    return recipe_json({"platforms": listed, "attestations": [list(entry) for entry in attestations]})


def platforms_from_json(data: Any) -> tuple[list[PlatformManifest], list[AttestationManifest]]:
    if isinstance(data, list):
        data = {"platforms": data}
    platforms = [PlatformManifest(path, platform) for path, platform in data["platforms"]]
    return platforms, [AttestationManifest(*entry) for entry in data.get("attestations", [])]


class IndexEntry(NamedTuple):
    """One index.json entry: the manifest or index file it names, with its names."""

    path: str
    media_type: str
    full_name: str  # "" for an untagged image
    tag: str


def index_entries_text(entries: list[IndexEntry]) -> str:
    return recipe_json([list(entry) for entry in entries])


def index_entries_from_json(data: list[list[str]]) -> list[IndexEntry]:
    return [IndexEntry(*entry) for entry in data]
