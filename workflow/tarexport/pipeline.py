"""What the Snakefile asks of the package: the plan, as file names and job recipes.

Built once when the Snakefile is parsed: reading index.json, manifests and configs
is cheap, and a parse-time plan avoids checkpoints re-evaluating the DAG.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import buildpaths
from .digests import hex_of, sha256_digest
from .errors import TarexportError
from .fileio import write_if_changed
from .formats import docker_legacy, oci
from .formats.saveindex import ManifestEntry, manifest_json, repositories_json
from .layers import record_path
from .plan import Plan, PlannedImage, build_catalog, make_plan
from .settings import Settings, load_settings
from .sources.base import BlobRef, ForeignSource, LayerRef, recipe_json

# Bumped when a job's output bytes change for the same recipe, so Snakemake's
# params trigger re-runs them (it does not track the package's code).
RECIPE_VERSION = 1


class Untracked:
    """A job param Snakemake does not compare between runs: message text (which image a
    job serves) and where a content-addressed job reads its bytes.

    Snakemake's params trigger compares only builtin-typed values. A stored layer or config
    is named by its digest and checked against it, so neither the first image using it nor
    the source it came from (a moved layout, a registry's timeout) may re-run its job.
    """

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class OutputLayer:
    """A layer as the archive stores it."""

    digest: str  # its blob digest in the archive
    media_type: str
    build_file: str  # "" for a foreign layer left out (`foreign_layers: skip`)
    source: LayerRef
    urls: tuple[str, ...] = ()


@dataclass
class Pipeline:
    settings: Settings
    plan: Plan
    _images_by_hex: dict[str, PlannedImage] = field(init=False)
    _layers: dict[str, list[OutputLayer]] = field(init=False)  # image hex -> its layers
    _labels: dict[str, str] = field(init=False)  # source path -> the source as configured

    def __post_init__(self) -> None:
        # every image whose blobs go into the archive: the requested ones, then other platforms
        self._images_by_hex = {hex_of(p.image.image_id): p for p in self.plan.images + self.plan.platform_images}
        self._labels = {
            os.path.realpath(spec.resolved): spec.path for spec in self.settings.sources if not spec.registry
        }
        self._layers = {
            h: [self._output_layer(layer) for layer in p.image.layers] for h, p in self._images_by_hex.items()
        }
        # distinct jobs, first provider in request order
        self.uncompressed_layers: dict[str, LayerRef] = {}
        self.kept_blobs: dict[str, LayerRef] = {}
        for layers in self._layers.values():
            for layer in layers:
                if not layer.build_file:
                    continue  # a foreign layer left out
                if layer.media_type == oci.LAYER_TAR:
                    self.uncompressed_layers.setdefault(hex_of(layer.digest), self.plan.layers[layer.source.diff_id])
                else:
                    self.kept_blobs.setdefault(hex_of(layer.digest), layer.source)

    def _output_layer(self, layer: LayerRef) -> OutputLayer:
        build = self.build_dir
        foreign = layer.foreign
        if foreign is not None and not foreign.present:
            return self._absent_foreign_layer(layer, foreign)
        if self.settings.layers == "keep" and layer.compression in ("gzip", "zstd") and layer.blob.digest:
            media_type = oci.LAYER_TYPES[layer.compression]
            if foreign is not None:  # kept as it is: still non-distributable, with its URLs
                media_type = oci.FOREIGN_LAYER_TYPES[layer.compression]
            return OutputLayer(
                layer.blob.digest,
                media_type,
                buildpaths.blob(build, hex_of(layer.blob.digest)),
                layer,
                foreign.urls if foreign else (),
            )
        diff = layer.diff_id
        return OutputLayer(diff, oci.LAYER_TAR, buildpaths.layer(build, hex_of(diff)), layer)

    def _absent_foreign_layer(self, layer: LayerRef, foreign: ForeignSource) -> OutputLayer:
        users = self.plan.layer_users[layer.diff_id]
        where = f"served from {', '.join(foreign.urls)}" if foreign.urls else "with no URL"
        if self.settings.foreign_layers != "skip":
            raise TarexportError(
                f"layer {layer.diff_id} is foreign (non-distributable, {where}) and the source does not hold it;"
                " add a source that does, or set foreign_layers: skip (format oci) to export without its bytes",
                image=users,
                source=self._label(layer.blob),
            )
        if self.format != "oci":
            raise TarexportError(
                f"layer {layer.diff_id} is foreign and missing; format docker needs every layer's bytes",
                image=users,
                source=self._label(layer.blob),
            )
        media_type = oci.FOREIGN_LAYER_TYPES.get(layer.compression or "none", oci.FOREIGN_LAYER_TYPES["none"])
        return OutputLayer(foreign.digest, media_type, "", layer, foreign.urls)

    @property
    def build_dir(self) -> str:
        return self.settings.build_dir

    @property
    def format(self) -> str:
        return self.settings.format

    def _label(self, blob: BlobRef) -> str:
        if blob.source_kind == "registry":
            where = json.loads(blob.source_path)
            return json.loads(where["registry"])["url"] + "/" + where["repository"]
        return self._labels.get(blob.source_path, blob.source_path)

    def _layer_recipe(self, layer: LayerRef) -> str:
        """What a layer job must produce (tracked): its output is named by digest anyway."""
        return recipe_json({"v": RECIPE_VERSION, "diff_id": layer.diff_id})

    def _layer_source(self, layer: LayerRef) -> Untracked:
        """Where and how a layer job reads its blob (untracked: the bytes are verified)."""
        blob = layer.blob
        return Untracked(
            recipe_json(
                {
                    "blob": blob.to_json(),
                    "label": self._label(blob),
                    "max_expansion": self.settings.max_layer_expansion,
                    "link": self.settings.link_layers,
                }
            )
        )

    # -------- layers: uncompressed by diff_id, or kept compressed by blob digest
    def layer_recipe(self, diff_hex: str) -> str:
        return self._layer_recipe(self.uncompressed_layers[diff_hex])

    def layer_source(self, diff_hex: str) -> Untracked:
        return self._layer_source(self.uncompressed_layers[diff_hex])

    def layer_context(self, diff_hex: str) -> Untracked:
        return Untracked(self.plan.layer_users["sha256:" + diff_hex])

    def blob_recipe(self, blob_hex: str) -> str:
        return self._layer_recipe(self.kept_blobs[blob_hex])

    def layer_downloads(self, diff_hex: str) -> int:
        """1 for a job that downloads (counted against `parallel_downloads`), else 0."""
        return int(self.uncompressed_layers[diff_hex].blob.source_kind == "registry")

    def layer_priority(self, diff_hex: str) -> int:
        """Largest blobs first: on few cores, a big layer started last would run alone at the end.
        In MiB: small numbers keep the ILP scheduler's objective well scaled."""
        return max(self.uncompressed_layers[diff_hex].blob.size, 0) >> 20

    def blob_priority(self, blob_hex: str) -> int:
        return max(self.kept_blobs[blob_hex].blob.size, 0) >> 20

    def blob_downloads(self, blob_hex: str) -> int:
        return int(self.kept_blobs[blob_hex].blob.source_kind == "registry")

    def blob_source(self, blob_hex: str) -> Untracked:
        return self._layer_source(self.kept_blobs[blob_hex])

    def blob_context(self, blob_hex: str) -> Untracked:
        return Untracked(self.plan.layer_users[self.kept_blobs[blob_hex].diff_id])

    # -------- configs
    def config_ids(self) -> list[str]:
        return list(self._images_by_hex)

    def config_context(self, image_hex: str) -> Untracked:
        return Untracked(self._images_by_hex[image_hex].display)

    def config_recipe(self, image_hex: str) -> str:
        return recipe_json({"v": RECIPE_VERSION, "image_id": self._images_by_hex[image_hex].image.image_id})

    def config_text(self, image_hex: str) -> Untracked:
        """The config itself when a shell command can write it (see `shell_text`), else "".
        Untracked: the recipe's image ID (its digest) already decides it."""
        return Untracked(self._config_texts[image_hex])

    @cached_property
    def _config_texts(self) -> dict[str, str]:
        # once per parse: each rule asks twice (the text, and which writer)
        return {
            h: shell_text(p.image.config) if sha256_digest(p.image.config) == p.image.image_id else ""
            for h, p in self._images_by_hex.items()  # a mismatch: the job reads the source and says so
        }

    def config_source(self, image_hex: str) -> Untracked:
        blob = self._images_by_hex[image_hex].image.config_blob
        return Untracked(recipe_json({"blob": blob.to_json(), "label": self._label(blob)}))

    # -------- docker: v1 directories
    def _v1_is_top(self, v1_id: str) -> bool:
        planned, index = self.plan.v1_dirs[v1_id]
        return index == len(planned.diff_ids) - 1

    def v1_text(self, v1_id: str) -> str:
        """The json when a shell command can write it (see `shell_text`), else ""."""
        return self._v1_texts[v1_id]

    @cached_property
    def _v1_texts(self) -> dict[str, str]:
        # once per parse: each rule asks three times (inputs, the text, and which writer)
        return {v1_id: shell_text(p.v1[index].json_bytes) for v1_id, (p, index) in self.plan.v1_dirs.items()}

    def v1_inputs(self, v1_id: str) -> list[str]:
        """A top layer's json comes from the image config; a lower one's from its chain alone.
        Only a json too big for a command line is made by the job from those."""
        if not self._v1_is_top(v1_id) or self.v1_text(v1_id):
            return []
        planned, _ = self.plan.v1_dirs[v1_id]
        return [buildpaths.config(self.build_dir, hex_of(planned.image.image_id))]

    def v1_recipe(self, v1_id: str) -> str:
        planned, index = self.plan.v1_dirs[v1_id]
        recipe: dict[str, Any] = {"v": RECIPE_VERSION, "v1_id": v1_id}
        if self._v1_is_top(v1_id):
            recipe["config"] = buildpaths.config(self.build_dir, hex_of(planned.image.image_id))
        else:
            recipe["diff_ids"] = planned.diff_ids[: index + 1]
            recipe["os"] = planned.os
        return recipe_json(recipe)

    # -------- oci: one manifest per image, one index
    def oci_manifest_inputs(self, image_hex: str) -> list[str]:
        layers = [layer.build_file for layer in self._layers[image_hex] if layer.build_file]
        return [buildpaths.config(self.build_dir, image_hex), *layers]

    def oci_manifest_recipe(self, image_hex: str) -> str:
        layers = [
            {
                "path": layer.build_file,
                "digest": layer.digest,
                "media_type": layer.media_type,
                # a left-out foreign layer keeps its recorded size and URLs
                "size": layer.source.foreign.size if layer.source.foreign and not layer.build_file else -1,
                "urls": list(layer.urls),
            }
            for layer in self._layers[image_hex]
        ]
        recipe = {"v": RECIPE_VERSION, "config": buildpaths.config(self.build_dir, image_hex), "layers": layers}
        return recipe_json(recipe)

    def oci_image_indexes(self) -> list[str]:
        """Hex digests of the source indexes kept whole (`platforms: all`)."""
        return sorted({hex_of(index.digest) for index in self.plan.tag_indexes.values()})

    def oci_image_index_inputs(self, index_hex: str) -> list[str]:
        return [buildpaths.oci_manifest(self.build_dir, hex_of(i)) for _, i in self._kept_index(index_hex).platforms]

    def oci_image_index_recipe(self, index_hex: str) -> str:
        """(manifest file, platform) per platform, in the source index's order."""
        index = self._kept_index(index_hex)
        platforms = [(buildpaths.oci_manifest(self.build_dir, hex_of(i)), p) for p, i in index.platforms]
        return recipe_json(platforms)

    def _kept_index(self, index_hex: str) -> Any:
        return next(i for i in self.plan.tag_indexes.values() if hex_of(i.digest) == index_hex)

    def oci_index_entries(self) -> list[tuple[str, str, str, str]]:
        """(file, media type, full name, tag) per index.json entry: one per tag, in request order.

        A tag that names a kept multi-platform index points at our copy of that index.
        """
        entries = []
        for planned in self.plan.images:
            manifest = buildpaths.oci_manifest(self.build_dir, hex_of(planned.image.image_id))
            if not planned.tags:
                entries.append((manifest, oci.MANIFEST_TYPE, "", ""))
            for tag in planned.tags:
                index = self.plan.tag_indexes.get(tag)
                if index is None:
                    entries.append((manifest, oci.MANIFEST_TYPE, str(tag), tag.tag))
                else:
                    path = buildpaths.oci_image_index(self.build_dir, hex_of(index.digest))
                    entries.append((path, oci.INDEX_TYPE, str(tag), tag.tag))
        return entries

    # -------- manifest.json and repositories
    def _index_entries(self) -> list[ManifestEntry]:
        requested = [(hex_of(p.image.image_id), p) for p in self.plan.images]
        if self.format == "docker":
            return docker_legacy.index_entries(
                [
                    (h, [t.familiar() for t in p.tags] or None, [v.v1_id for v in p.v1], _layer_sources(p))
                    for h, p in requested
                ]
            )
        return [
            ManifestEntry(
                oci.blob_path(p.image.image_id),
                [t.familiar() for t in p.tags] or None,
                [oci.blob_path(layer.digest) for layer in self._layers[h]],
                hex_of(p.diff_ids[-1]),  # Docker 25+ maps tags to the top layer's diff_id
                _layer_sources(p),
            )
            for h, p in requested
        ]

    # Computed once per parse: the rules, the archive inputs and the plan digest all ask.
    @cached_property
    def manifest_json(self) -> bytes:
        return manifest_json(self._index_entries())

    @cached_property
    def repositories(self) -> bytes | None:
        return repositories_json(self._index_entries())

    # -------- plan files: manifest.json, repositories and index.json entries
    @cached_property
    def _plan_contents(self) -> dict[str, bytes]:
        """Whole contents of the small index jobs' outputs, decided now. They go through files
        because a command line holds at most 128 KiB, and not through `run:` jobs because each
        of those starts a new Snakemake process."""
        contents = {"manifest.json": self.manifest_json}
        if self.repositories is not None:
            contents["repositories"] = self.repositories
        if self.format == "oci":
            contents["index-entries.json"] = recipe_json([list(e) for e in self.oci_index_entries()]).encode()
        return contents

    def plan_file(self, name: str) -> str:
        """Named by its content: another plan (even a dry run next to a running export) never
        writes over it, and a changed plan is a new input, which re-runs its job."""
        data = self._plan_contents.get(name)
        if data is None:  # not in this format (repositories in oci): its rule never runs
            return buildpaths.plan_file(self.build_dir, f"{self.format}-none-{name}")
        digest = hex_of(sha256_digest(data))[:32]
        return buildpaths.plan_file(self.build_dir, f"{self.format}-{digest}-{name}")

    def write_plan_files(self) -> None:
        for name, data in self._plan_contents.items():
            write_if_changed(self.plan_file(name), data)

    # -------- the archive
    @cached_property
    def plan_digest(self) -> str:
        """What the archive at `output` must have been made from: everything that decides its bytes."""
        settings = self.settings
        decided = {
            "v": RECIPE_VERSION,
            "format": settings.format,
            "layers": settings.layers,
            "compression": settings.compression,
            "manifest": self.manifest_json.decode(),
            "index": self.oci_index_entries() if self.format == "oci" else [],
            "inputs": self.archive_inputs(),
        }
        return hashlib.sha256(recipe_json(decided).encode()).hexdigest()

    @property
    def plan_record(self) -> str:
        """Where the export job records the plan digest of the archive it wrote."""
        return os.path.join(self.build_dir, "export.plan")

    def archive_inputs(self) -> list[str]:
        return list(self._archive_inputs)

    @cached_property
    def _archive_inputs(self) -> list[str]:
        build = self.build_dir
        files = [buildpaths.manifest(build, self.format)]
        if self.repositories is not None:
            files.append(buildpaths.repositories(build, self.format))
        files += [buildpaths.config(build, h) for h in self.config_ids()]
        if self.format == "docker":
            for v1_id in self.plan.v1_dirs:
                files += [buildpaths.v1_json(build, v1_id), buildpaths.v1_version(build, v1_id)]
        else:
            files.append(buildpaths.oci_index(build))
            files += [buildpaths.oci_manifest(build, h) for h in self.config_ids()]
            files += [buildpaths.oci_image_index(build, h) for h in self.oci_image_indexes()]
        stored = [buildpaths.layer(build, h) for h in self.uncompressed_layers]
        stored += [buildpaths.blob(build, h) for h in self.kept_blobs]
        files += stored + [record_path(path) for path in stored]
        return files


# A shell command line holds at most 128 KiB (Linux's MAX_ARG_STRLEN): small files are
# written by the shell from their planned content, which spares a Python start per job.
SHELL_TEXT_LIMIT = 64 << 10


def shell_text(data: bytes) -> str:
    """`data` as text a shell can write back byte for byte (`printf %s`), or "" when it
    cannot: too long for a command line, holding a NUL, or not ASCII (Snakemake encodes
    commands in the locale's encoding, which need not be UTF-8)."""
    if not data or len(data) > SHELL_TEXT_LIMIT or b"\0" in data or not data.isascii():
        return ""
    return data.decode("ascii")


def _layer_sources(planned: PlannedImage) -> dict[str, ForeignSource]:
    """manifest.json's LayerSources: where each foreign layer officially comes from."""
    return {layer.diff_id: layer.foreign for layer in planned.image.layers if layer.foreign is not None}


def prepare(config: dict[str, Any], schema_path: str, workdir: str) -> Pipeline:
    settings = load_settings(config, schema_path, workdir)
    cache = os.path.join(workdir, settings.build_dir, "registry")  # verified manifests and configs
    catalog = build_catalog(settings.sources, settings.platform, settings.platforms == "all", settings.images, cache)
    return Pipeline(settings, make_plan(catalog, settings.images))
