"""What every part of the export's plan shares: the settings, the plan, and each image's
layers as the archive stores them (`OutputLayer`), with how messages name a source.

Built once when the Snakefile is parsed. The rule families (layerjobs.py, the formats in
exportformats.py, the archive in pipeline.py) read it; none of them changes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from . import buildpaths
from .descriptors import ForeignSource
from .digests import hex_of, sha256_digest
from .errors import TarexportError
from .fileio import write_if_changed
from .formats.saveindex import parent_link
from .mediatypes import MediaType, oci_layer
from .plan import Plan, PlannedImage
from .settings import Settings
from .sources.base import BlobRef, LayerRef, SourceAttestation, SourceIndex
from .sources.kinds import describe_location

RECIPE_INLINE_LIMIT = 16 * 1024  # bytes of a job recipe passed on its command line


class Untracked:
    """A job param Snakemake does not compare between runs: message text (which image a
    job serves) and where a content-addressed job reads its bytes.

    Snakemake's params trigger compares only builtin-typed values. A stored layer or config
    is named by its digest and checked against it, so neither the first image using it nor
    the source it came from (a moved layout, a registry's timeout) may re-run its job.

    Given a function, the text is made when first used: Snakemake evaluates every job's
    params while building its DAG, also for jobs that will not run.
    """

    def __init__(self, text: str | Callable[[], str]):
        self._text = text

    def __str__(self) -> str:
        if callable(self._text):
            self._text = self._text()
        return self._text


@dataclass(frozen=True)
class OutputLayer:
    """A layer as the archive stores it."""

    digest: str  # its blob digest in the archive
    media_type: str
    build_file: str  # "" for a foreign layer left out (`foreign_layers: skip`)
    source: LayerRef
    urls: tuple[str, ...] = ()


@dataclass
class ExportContext:
    settings: Settings
    plan: Plan
    # whether the format can describe a foreign layer whose bytes no source holds
    may_leave_out_foreign_layers: bool
    images_by_hex: dict[str, PlannedImage] = field(init=False)
    layers: dict[str, list[OutputLayer]] = field(init=False)  # image hex -> its layers
    uncompressed_layers: dict[str, LayerRef] = field(init=False)  # diff hex -> where to read it
    kept_blobs: dict[str, LayerRef] = field(init=False)  # blob hex -> the layer kept as it is
    _labels: dict[str, str] = field(init=False)  # source path -> the source as configured

    def __post_init__(self) -> None:
        # every image whose blobs go into the archive: the requested ones, then other platforms
        self.images_by_hex = {hex_of(p.image.image_id): p for p in self.plan.images + self.plan.platform_images}
        self._labels = {
            os.path.realpath(spec.resolved): spec.path for spec in self.settings.sources if not spec.registry
        }
        self._storage_urls = {
            os.path.realpath(spec.resolved): spec.storage_url for spec in self.settings.sources if spec.storage_url
        }
        self.layers = {
            h: [self._output_layer(layer) for layer in p.image.layers] for h, p in self.images_by_hex.items()
        }
        # distinct jobs, first provider in request order
        self.uncompressed_layers = {}
        self.kept_blobs = {}
        for layers in self.layers.values():
            for layer in layers:
                if not layer.build_file:
                    continue  # a foreign layer left out
                if layer.media_type == MediaType.OCI_LAYER:
                    self.uncompressed_layers.setdefault(hex_of(layer.digest), self.plan.layers[layer.source.diff_id])
                else:
                    self.kept_blobs.setdefault(hex_of(layer.digest), layer.source)
        # attestation manifests of kept indexes: their blobs kept as the sources hold them
        for attestations in self.attestations.values():
            for attestation in attestations:
                for blob in attestation.blobs:
                    self.kept_blobs.setdefault(hex_of(blob.blob.digest), blob)

    @cached_property
    def attestations(self) -> dict[str, list[SourceAttestation]]:
        """Index hex -> the attestation manifests kept with it (format oci, `platforms: all`)."""
        if self.settings.format != "oci" or self.settings.attestations != "keep":
            return {}
        return {hex_of(index.digest): index.attestations for index in self.plan.tag_indexes.values()}

    @property
    def build_dir(self) -> str:
        return self.settings.build_dir

    @property
    def format(self) -> str:
        return self.settings.format

    def label(self, blob: BlobRef) -> str:
        """The source as configured, for messages."""
        return self._labels.get(blob.source_path) or describe_location(blob.source_kind, blob.source_path)

    def storage_url(self, blob: BlobRef) -> str:
        """The storage URL the blob's source was given as ("" for a path or a registry)."""
        return self._storage_urls.get(blob.source_path, "")

    def config_ids(self) -> list[str]:
        """Every image whose config goes into the archive, by hex ID."""
        return list(self.images_by_hex)

    def kept_index(self, index_hex: str) -> SourceIndex:
        return next(i for i in self.plan.tag_indexes.values() if hex_of(i.digest) == index_hex)

    def passable(self, recipe: str) -> str:
        """The recipe itself, or `@file` holding it when it is too long for a command line:
        the kernel limits one argument (the shell's whole `-c` command) to 128 KiB, which a
        thousand layers or a 1,500-platform index exceed. The file is named by its content."""
        if len(recipe) <= RECIPE_INLINE_LIMIT:
            return recipe
        data = recipe.encode()
        path = buildpaths.plan_file(self.build_dir, f"recipe-{hex_of(sha256_digest(data))}.json")
        write_if_changed(path, data)
        return "@" + path

    def _output_layer(self, layer: LayerRef) -> OutputLayer:
        build = self.build_dir
        foreign = layer.foreign
        if foreign is not None and not foreign.present:
            return self._absent_foreign_layer(layer, foreign)
        if self.settings.layers == "keep" and layer.compression in ("gzip", "zstd") and layer.blob.digest:
            # kept as it is: a foreign layer still non-distributable, with its URLs
            media_type = oci_layer(layer.compression, foreign=foreign is not None)
            return OutputLayer(
                layer.blob.digest,
                media_type,
                buildpaths.blob(build, hex_of(layer.blob.digest)),
                layer,
                foreign.urls if foreign else (),
            )
        diff = layer.diff_id
        return OutputLayer(diff, MediaType.OCI_LAYER, buildpaths.layer(build, hex_of(diff)), layer)

    def _absent_foreign_layer(self, layer: LayerRef, foreign: ForeignSource) -> OutputLayer:
        users = self.plan.layer_users[layer.diff_id]
        where = f"served from {', '.join(foreign.urls)}" if foreign.urls else "with no URL"
        if self.settings.foreign_layers != "skip":
            raise TarexportError(
                f"layer {layer.diff_id} is foreign (non-distributable, {where}) and the source does not hold it;"
                " add a source that does, or set foreign_layers: skip (format oci) to export without its bytes",
                image=users,
                source=self.label(layer.blob),
            )
        if not self.may_leave_out_foreign_layers:
            raise TarexportError(
                f"layer {layer.diff_id} is foreign and missing; format {self.format} needs every layer's bytes",
                image=users,
                source=self.label(layer.blob),
            )
        media_type = oci_layer(layer.compression or "none", foreign=True)
        return OutputLayer(foreign.digest, media_type, "", layer, foreign.urls)


def parents_of(images: list[PlannedImage]) -> dict[str, str]:
    """Image ID -> the Parent its manifest.json entry gets: as `docker load` of its source and
    then `docker save` of the same images would write it. Docker keeps a source's Parent link
    when the parent is in the same archive and the link passes its loader's check, and saves
    it again when the parent is saved with the image."""
    exported = {planned.image.image_id: planned.image for planned in images}
    parents = {}
    for image in exported.values():
        parent = exported.get(image.parent) if image.parent != image.image_id else None
        if parent is not None and parent_link(image.config, parent.config):
            parents[image.image_id] = parent.image_id
    return parents


def layer_sources(planned: PlannedImage) -> dict[str, ForeignSource]:
    """manifest.json's LayerSources: where each foreign layer officially comes from."""
    return {layer.diff_id: layer.foreign for layer in planned.image.layers if layer.foreign is not None}
