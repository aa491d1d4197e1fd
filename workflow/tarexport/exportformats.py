"""The output formats behind one interface: what each adds to the plan (its manifest.json
entries, its small files per image, its plan files, the build files its archive takes, and
its own rules). Planning knows no format; the pipeline asks the one configured.

The bytes of each file are written by formats/docker_legacy.py and formats/oci.py; the
archive's entries are read back from the build directory by the same modules (jobs.py).
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any, ClassVar

from . import buildpaths
from .descriptors import blob_member
from .digests import hex_of, sha256_digest
from .exportcontext import ExportContext, layer_sources, parents_of
from .formats import docker_legacy
from .formats.saveindex import ManifestEntry
from .mediatypes import MediaType
from .recipes import (
    AttestationManifest,
    IndexEntry,
    ManifestLayer,
    ManifestRecipe,
    PlatformManifest,
    index_entries_text,
    platforms_text,
)
from .sources.base import SourceIndex


class ExportFormat:
    name: ClassVar[str]
    # whether the format can describe a foreign layer whose bytes no source holds
    may_leave_out_foreign_layers: ClassVar[bool]
    # rule files of its own, beside the shared ones (workflow/rules/)
    rule_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: ExportContext):
        self.context = context

    def manifest_entries(self) -> list[ManifestEntry]:
        """manifest.json's entries, one per requested image in request order."""
        raise NotImplementedError

    def image_files(self) -> dict[str, list[tuple[str, bytes]]]:
        """Small files an image's job writes beside its config (image hex -> files)."""
        return {}

    def plan_contents(self) -> dict[str, bytes]:
        """Plan files of its own (name -> bytes), beside manifest.json and repositories."""
        return {}

    def documents_made_now(self) -> dict[str, bytes]:
        """Metadata files of the archive whose bytes the plan decides (path -> bytes)."""
        return {}

    def archive_inputs(self) -> list[str]:
        """Build files of its own that the archive takes."""
        return []

    def decides(self) -> Any:
        """What else decides the archive's bytes (a JSON value), for the plan digest."""
        return []

    def documents(self) -> list[str]:
        """Its own metadata files the assembly walks (relative to build_dir)."""
        return []


class DockerExport(ExportFormat):
    """Docker 20.10's `docker save`: a v1 directory per layer, named by its v1 ID."""

    name = "docker"
    may_leave_out_foreign_layers = False

    @cached_property
    def _v1_layers(self) -> dict[str, list[docker_legacy.V1Layer]]:
        """Each requested image's v1 directories, bottom to top (image hex -> layers)."""
        return {
            hex_of(p.image.image_id): docker_legacy.v1_layers(p.config, p.diff_ids) for p in self.context.plan.images
        }

    @cached_property
    def _v1_dirs(self) -> dict[str, tuple[str, docker_legacy.V1Layer]]:
        """v1 ID -> the first image (in request order) writing that directory, and its layer."""
        dirs: dict[str, tuple[str, docker_legacy.V1Layer]] = {}
        for image_hex, layers in self._v1_layers.items():
            for v1 in layers:
                dirs.setdefault(v1.v1_id, (image_hex, v1))
        return dirs

    def manifest_entries(self) -> list[ManifestEntry]:
        images = self.context.plan.images
        parents = parents_of(images)
        return docker_legacy.index_entries(
            [
                (
                    hex_of(p.image.image_id),
                    [t.familiar() for t in p.tags] or None,
                    [v.v1_id for v in self._v1_layers[hex_of(p.image.image_id)]],
                    layer_sources(p),
                    parents.get(p.image.image_id, ""),
                )
                for p in images
            ]
        )

    def image_files(self) -> dict[str, list[tuple[str, bytes]]]:
        """The v1 directories each image is the first in request order to need (a shared
        lower directory has one producer)."""
        build = self.context.build_dir
        files: dict[str, list[tuple[str, bytes]]] = {}
        for v1_id, (image_hex, v1) in self._v1_dirs.items():
            files.setdefault(image_hex, []).extend(
                [
                    (buildpaths.v1_json(build, v1_id, v1.os_name), v1.json_bytes),
                    (buildpaths.v1_version(build, v1_id), docker_legacy.VERSION_BYTES),
                ]
            )
        return files

    def archive_inputs(self) -> list[str]:
        build = self.context.build_dir
        files = []
        for v1_id, (_, v1) in self._v1_dirs.items():
            files += [buildpaths.v1_json(build, v1_id, v1.os_name), buildpaths.v1_version(build, v1_id)]
        return files


class OciExport(ExportFormat):
    """What Docker 25+ saves: an OCI layout (one manifest per image, one index.json entry
    per tag, kept multi-platform indexes) with manifest.json and repositories."""

    name = "oci"
    may_leave_out_foreign_layers = True
    rule_files = ("oci.smk",)

    def manifest_entries(self) -> list[ManifestEntry]:
        images = self.context.plan.images
        parents = parents_of(images)
        return [
            ManifestEntry(
                blob_member(p.image.image_id),
                [t.familiar() for t in p.tags] or None,
                [blob_member(layer.digest) for layer in self.context.layers[hex_of(p.image.image_id)]],
                hex_of(p.diff_ids[-1]),  # Docker 25+ maps tags to the top layer's diff_id
                layer_sources(p),
                parents.get(p.image.image_id, ""),
            )
            for p in images
        ]

    def plan_contents(self) -> dict[str, bytes]:
        entries = [entry._replace(path=self._in_build(entry.path)) for entry in self.index_entries()]
        return {"index-entries.json": index_entries_text(entries).encode()}

    def _in_build(self, path: str) -> str:
        """A build file as recipes name it: relative to the build directory, which each job
        is given (under remote storage, its staged copy); "" stays "" (a layer left out)."""
        return os.path.relpath(path, self.context.build_dir) if path else ""

    def documents_made_now(self) -> dict[str, bytes]:
        """Kept attestation manifests, as the sources hold them (their bytes are known now):
        plan files named by their digest, which rule oci_attestation copies into the build."""
        return {
            attestation_plan_file(self.context.build_dir, hex_of(sha256_digest(attestation.manifest))): (
                attestation.manifest
            )
            for attestations in self.context.attestations.values()
            for attestation in attestations
        }

    def attestation_files(self, index_hex: str) -> list[str]:
        """The build files of the attestation manifests kept with an index."""
        return [
            buildpaths.oci_attestation(self.context.build_dir, hex_of(sha256_digest(attestation.manifest)))
            for attestation in self.context.attestations.get(index_hex, [])
        ]

    @cached_property
    def _document_files(self) -> list[str]:
        """Its manifests (one per image), kept multi-platform indexes and their attestations."""
        build = self.context.build_dir
        files = [buildpaths.oci_manifest(build, h) for h in self.context.config_ids()]
        files += [buildpaths.oci_image_index(build, h) for h in self.image_indexes()]
        return files + [path for h in self.image_indexes() for path in self.attestation_files(h)]

    def documents(self) -> list[str]:
        return [os.path.relpath(path, self.context.build_dir) for path in self._document_files]

    def archive_inputs(self) -> list[str]:
        return [buildpaths.oci_index(self.context.build_dir), *self._document_files]

    def decides(self) -> Any:
        return self.index_entries()

    # -------- its rules: one manifest per image, kept indexes, one index.json
    def manifest_inputs(self, image_hex: str) -> list[str]:
        layers = [layer.build_file for layer in self.context.layers[image_hex] if layer.build_file]
        return [buildpaths.config(self.context.build_dir, image_hex), *layers]

    def manifest_recipe(self, image_hex: str) -> str:
        layers = [
            ManifestLayer(
                self._in_build(layer.build_file),
                layer.digest,
                layer.media_type,
                # a left-out foreign layer keeps its recorded size and URLs
                layer.source.foreign.size if layer.source.foreign and not layer.build_file else -1,
                list(layer.urls),
            )
            for layer in self.context.layers[image_hex]
        ]
        recipe = ManifestRecipe(self._in_build(buildpaths.config(self.context.build_dir, image_hex)), layers)
        return self.context.passable(recipe.to_text())

    def image_indexes(self) -> list[str]:
        """Hex digests of the source indexes kept whole (`platforms: all`)."""
        return sorted(self._kept_indexes)

    @cached_property
    def _kept_indexes(self) -> dict[str, SourceIndex]:
        """Index hex -> the index kept (the first tag naming it): a rule asks once per index,
        and many tags may name one, so it is looked up, not searched for."""
        kept: dict[str, SourceIndex] = {}
        for index in self.context.plan.tag_indexes.values():
            kept.setdefault(hex_of(index.digest), index)
        return kept

    def image_index_inputs(self, index_hex: str) -> list[str]:
        manifests = [
            buildpaths.oci_manifest(self.context.build_dir, hex_of(i))
            for _, i in self._kept_indexes[index_hex].platforms
        ]
        return manifests + self.attestation_files(index_hex)

    def image_index_recipe(self, index_hex: str) -> str:
        """(manifest file, platform) per platform, in the source index's order, then the
        attestation manifests kept (file, source entry, our manifest of the image described)."""
        index = self._kept_indexes[index_hex]
        build = self.context.build_dir
        ours = [self._in_build(buildpaths.oci_manifest(build, hex_of(i))) for _, i in index.platforms]
        platforms = [PlatformManifest(path, p) for path, (p, _) in zip(ours, index.platforms, strict=True)]
        pairs = zip(self.attestation_files(index_hex), self.context.attestations.get(index_hex, []), strict=True)
        attestations = [
            AttestationManifest(
                self._in_build(path),
                kept.descriptor,
                self._in_build(buildpaths.oci_manifest(build, hex_of(kept.describes))),
            )
            for path, kept in pairs
        ]
        return self.context.passable(platforms_text(platforms, attestations))

    def index_entries(self) -> list[IndexEntry]:
        """(file, media type, full name, tag) per index.json entry: one per tag, in request order.

        A tag that names a kept multi-platform index points at our copy of that index.
        """
        return list(self._index_entries)

    @cached_property
    def _index_entries(self) -> list[IndexEntry]:
        # asked by the plan file, the plan digest and the index rule: made once per parse
        entries = []
        for planned in self.context.plan.images:
            manifest = buildpaths.oci_manifest(self.context.build_dir, hex_of(planned.image.image_id))
            if not planned.tags:
                entries.append(IndexEntry(manifest, MediaType.OCI_MANIFEST, "", ""))
            for tag in planned.tags:
                index = self.context.plan.tag_indexes.get(tag)
                if index is None:
                    entries.append(IndexEntry(manifest, MediaType.OCI_MANIFEST, str(tag), tag.tag))
                else:
                    path = buildpaths.oci_image_index(self.context.build_dir, hex_of(index.digest))
                    entries.append(IndexEntry(path, MediaType.OCI_INDEX, str(tag), tag.tag))
        return entries


def attestation_plan_file(build_dir: str, manifest_hex: str) -> str:
    return buildpaths.plan_file(build_dir, f"oci-attestation-{manifest_hex}.json")


FORMATS: dict[str, type[ExportFormat]] = {fmt.name: fmt for fmt in (DockerExport, OciExport)}
