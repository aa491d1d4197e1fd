"""What the Snakefile asks of the package: the plan, as file names and job recipes.

Built once when the Snakefile is parsed: reading index.json, manifests and configs
is cheap, and a parse-time plan avoids checkpoints re-evaluating the DAG.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import buildpaths
from .descriptors import ForeignSource, blob_member
from .digests import hex_of, sha256_digest
from .errors import TarexportError
from .fileio import write_atomically, write_if_changed
from .formats import docker_legacy
from .formats.saveindex import ManifestEntry, manifest_json, parent_link, repositories_json
from .layerfiles import WHOLE_HASH_LIMIT, record_path
from .linklayer import checked_blob_path
from .mediatypes import MediaType, oci_layer
from .plan import Plan, PlannedImage
from .settings import Settings
from .sources.base import BlobRef, LayerRef, recipe_json
from .sources.blobs import SourceKind
from .sources.kinds import describe_location
from .tarball import Entry, Sink, write_tar

RECIPE_INLINE_LIMIT = 16 * 1024  # bytes of a job recipe passed on its command line

# Bumped when the archive's bytes change for the same plan: it is part of the plan digest,
# so an archive made by an earlier version is removed and made again. (Build files are
# named by their content; the profile drops Snakemake's params and code triggers.)
RECIPE_VERSION = 1


class Untracked:
    """A job param Snakemake does not compare between runs: message text (which image a
    job serves) and where a content-addressed job reads its bytes.

    Snakemake's params trigger compares only builtin-typed values. A stored layer or config
    is named by its digest and checked against it, so neither the first image using it nor
    the source it came from (a moved layout, a registry's timeout) may re-run its job.

    Given a function, the text is made when first used: Snakemake evaluates every job's
    params while building its DAG (for `conda:`), also for jobs that will not run.
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


@dataclass(frozen=True)
class ImageFiles:
    """The small files one job writes for an image, from a plan file holding their bytes."""

    rule: str  # the job's rule name
    plan_file: str  # a tar of the outputs, named by its content
    outputs: list[str]
    contents: bytes


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
                if layer.media_type == MediaType.OCI_LAYER:
                    self.uncompressed_layers.setdefault(hex_of(layer.digest), self.plan.layers[layer.source.diff_id])
                else:
                    self.kept_blobs.setdefault(hex_of(layer.digest), layer.source)

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
                source=self._label(layer.blob),
            )
        if self.format != "oci":
            raise TarexportError(
                f"layer {layer.diff_id} is foreign and missing; format docker needs every layer's bytes",
                image=users,
                source=self._label(layer.blob),
            )
        media_type = oci_layer(layer.compression or "none", foreign=True)
        return OutputLayer(foreign.digest, media_type, "", layer, foreign.urls)

    @property
    def build_dir(self) -> str:
        return self.settings.build_dir

    @property
    def format(self) -> str:
        return self.settings.format

    def _label(self, blob: BlobRef) -> str:
        """The source as configured, for messages."""
        return self._labels.get(blob.source_path) or describe_location(blob.source_kind, blob.source_path)

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
                    "max_bytes": self.settings.max_layer_mib << 20,
                    "keep_free": self.settings.keep_free_mib << 20,
                    "link": self.settings.link_layers,
                }
            )
        )

    # -------- layers: uncompressed by diff_id, or kept compressed by blob digest
    def layer_recipe(self, diff_hex: str) -> str:
        return self._layer_recipe(self.uncompressed_layers[diff_hex])

    def layer_command(self, diff_hex: str, output: str, log: str) -> Untracked:
        """The job's whole command, made when Snakemake is about to start the job.

        An uncompressed blob of an OCI layout directory is its own layer: nothing to inflate,
        only to link (or copy) and check. At 1000 layers a job's start is most of its cost;
        measured by hand per 512 KB layer: `tarexport layer` (which can inflate anything)
        about 33 ms, the lean Python `tarexport_link` 16-28 ms, the shell's `tarexport_small`
        (bash, ln, sha256sum) 8 ms. So a small blob that passes checked_blob_path (here, in
        Snakemake's process) goes to the shell; larger ones hash faster in Python (OpenSSL's
        1.3 GB/s against coreutils' 200-350 MB/s), and anything odd goes to Python, which
        names what is wrong. Messages go to the log; a download's progress lines also to the
        terminal (through tee: another process, so only there)."""
        return Untracked(lambda: self._layer_command(diff_hex, output, log))

    def _layer_command(self, diff_hex: str, output: str, log: str) -> str:
        layer = self.uncompressed_layers[diff_hex]
        blob = layer.blob
        label, images = self._label(blob), self.plan.layer_users[layer.diff_id]
        if blob.source_kind == SourceKind.OCI_LAYOUT and blob.digest == layer.diff_id and blob.size >= 0:
            link = "1" if self.settings.link_layers else "0"
            words = ["tarexport_link", blob.source_path, blob.member, str(blob.size), blob.digest, link, label]
            command = _shell_words(*words, images, output)
            path = blob.size <= WHOLE_HASH_LIMIT and checked_blob_path(blob.source_path, blob.member, blob.size)
            if path:
                small = ["tarexport_small", path, diff_hex, str(blob.size), link, output]
                command = f"{_shell_words(*small)} {command}"  # the Python job: its fallback
        else:
            recipe, source = self._layer_recipe(layer), str(self._layer_source(layer))
            words = ["--recipe", recipe, "--source", source, "--context", images, "--output", output]
            command = "tarexport layer " + _shell_words(*words)
        if SourceKind(blob.source_kind).downloads:
            return f"{command} 2> >(tee {shlex.quote(log)} >&2)"
        return f"{command} 2> {shlex.quote(log)}"

    def layer_downloads(self, diff_hex: str) -> int:
        """1 for a job that downloads (counted against `parallel_downloads`), else 0."""
        return int(SourceKind(self.uncompressed_layers[diff_hex].blob.source_kind).downloads)

    def layer_is_big(self, diff_hex: str) -> int:
        """1 for a layer job over BIG_LAYER bytes (counted against `big_layers`, the machine's
        CPUs), else 0: the profile gives more job slots than cores, which small jobs need
        (they mostly wait) and big ones do not (they contend for CPU and the disk)."""
        return int(self.uncompressed_layers[diff_hex].blob.size > BIG_LAYER)

    def blob_is_big(self, blob_hex: str) -> int:
        return int(self.kept_blobs[blob_hex].blob.size > BIG_LAYER)

    def layer_priority(self, diff_hex: str) -> int:
        """Largest blobs first: on few cores, a big layer started last would run alone at the end.
        In MiB: small numbers keep the ILP scheduler's objective well scaled."""
        return max(self.uncompressed_layers[diff_hex].blob.size, 0) >> 20

    def blob_priority(self, blob_hex: str) -> int:
        return max(self.kept_blobs[blob_hex].blob.size, 0) >> 20

    def blob_recipe(self, blob_hex: str) -> str:
        return self._layer_recipe(self.kept_blobs[blob_hex])

    def blob_downloads(self, blob_hex: str) -> int:
        return int(SourceKind(self.kept_blobs[blob_hex].blob.source_kind).downloads)

    def blob_source(self, blob_hex: str) -> Untracked:
        return self._layer_source(self.kept_blobs[blob_hex])

    def blob_context(self, blob_hex: str) -> Untracked:
        return Untracked(self.plan.layer_users[self.kept_blobs[blob_hex].diff_id])

    # -------- small files: each image's config and (format docker) v1 directories
    def config_ids(self) -> list[str]:
        return list(self._images_by_hex)

    @cached_property
    def image_files(self) -> list[ImageFiles]:
        """One job per image writes its small files: its config, and in format docker the v1
        directories it is the first in request order to need (a shared lower directory has
        one producer). Their bytes are known now, so the job unpacks them from a plan file
        instead of starting Python; a changed image changes only its own plan file."""
        build = self.build_dir
        members: dict[str, list[tuple[str, bytes]]] = {}
        for image_hex, planned in self._images_by_hex.items():
            config = planned.image.config
            if sha256_digest(config) != planned.image.image_id:
                raise TarexportError(
                    f"config has digest {sha256_digest(config)}, expected image ID {planned.image.image_id}",
                    image=planned.display,
                    source=self._label(planned.image.config_blob),
                    member=planned.image.config_blob.member,
                )
            members[image_hex] = [(buildpaths.config(build, image_hex), config)]
        if self.format == "docker":
            for v1_id, (image_hex, v1) in self._v1_dirs.items():
                members[image_hex] += [
                    (buildpaths.v1_json(build, v1_id, v1.os_name), v1.json_bytes),
                    (buildpaths.v1_version(build, v1_id), docker_legacy.VERSION_BYTES),
                ]
        short = {image_hex: image_hex[:12] for image_hex in members}
        if len(set(short.values())) < len(short):  # Docker's short IDs, unless two collide
            short = {image_hex: image_hex for image_hex in members}
        batches = []
        for image_hex, files in members.items():
            contents = small_files_tar(build, files)
            plan = buildpaths.plan_file(build, f"image-{hex_of(sha256_digest(contents))[:32]}.tar")
            batches.append(ImageFiles(f"image_files_{short[image_hex]}", plan, [path for path, _ in files], contents))
        return batches

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
        return self._passable(recipe_json(recipe))

    def oci_image_indexes(self) -> list[str]:
        """Hex digests of the source indexes kept whole (`platforms: all`)."""
        return sorted({hex_of(index.digest) for index in self.plan.tag_indexes.values()})

    def oci_image_index_inputs(self, index_hex: str) -> list[str]:
        return [buildpaths.oci_manifest(self.build_dir, hex_of(i)) for _, i in self._kept_index(index_hex).platforms]

    def oci_image_index_recipe(self, index_hex: str) -> str:
        """(manifest file, platform) per platform, in the source index's order."""
        index = self._kept_index(index_hex)
        platforms = [(buildpaths.oci_manifest(self.build_dir, hex_of(i)), p) for p, i in index.platforms]
        return self._passable(recipe_json(platforms))

    def _passable(self, recipe: str) -> str:
        """The recipe itself, or `@file` holding it when it is too long for a command line:
        the kernel limits one argument (the shell's whole `-c` command) to 128 KiB, which a
        thousand layers or a 1,500-platform index exceed. The file is named by its content."""
        if len(recipe) <= RECIPE_INLINE_LIMIT:
            return recipe
        data = recipe.encode()
        path = buildpaths.plan_file(self.build_dir, f"recipe-{hex_of(sha256_digest(data))}.json")
        write_if_changed(path, data)
        return "@" + path

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
                entries.append((manifest, MediaType.OCI_MANIFEST, "", ""))
            for tag in planned.tags:
                index = self.plan.tag_indexes.get(tag)
                if index is None:
                    entries.append((manifest, MediaType.OCI_MANIFEST, str(tag), tag.tag))
                else:
                    path = buildpaths.oci_image_index(self.build_dir, hex_of(index.digest))
                    entries.append((path, MediaType.OCI_INDEX, str(tag), tag.tag))
        return entries

    # -------- manifest.json and repositories
    def _index_entries(self) -> list[ManifestEntry]:
        requested = [(hex_of(p.image.image_id), p) for p in self.plan.images]
        parents = _parents(self.plan.images)
        if self.format == "docker":
            return docker_legacy.index_entries(
                [
                    (
                        h,
                        [t.familiar() for t in p.tags] or None,
                        [v.v1_id for v in self._v1_layers[h]],
                        _layer_sources(p),
                        parents.get(p.image.image_id, ""),
                    )
                    for h, p in requested
                ]
            )
        return [
            ManifestEntry(
                blob_member(p.image.image_id),
                [t.familiar() for t in p.tags] or None,
                [blob_member(layer.digest) for layer in self._layers[h]],
                hex_of(p.diff_ids[-1]),  # Docker 25+ maps tags to the top layer's diff_id
                _layer_sources(p),
                parents.get(p.image.image_id, ""),
            )
            for h, p in requested
        ]

    # -------- format docker: v1 directories, computed only for it
    @cached_property
    def _v1_layers(self) -> dict[str, list[docker_legacy.V1Layer]]:
        """Each requested image's v1 directories, bottom to top (image hex -> layers)."""
        return {hex_of(p.image.image_id): docker_legacy.v1_layers(p.config, p.diff_ids) for p in self.plan.images}

    @cached_property
    def _v1_dirs(self) -> dict[str, tuple[str, docker_legacy.V1Layer]]:
        """v1 ID -> the first image (in request order) writing that directory, and its layer."""
        dirs: dict[str, tuple[str, docker_legacy.V1Layer]] = {}
        for image_hex, layers in self._v1_layers.items():
            for v1 in layers:
                dirs.setdefault(v1.v1_id, (image_hex, v1))
        return dirs

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
        # what the archive is made from, as an input of the export job: a changed plan
        # (another compression, say) re-runs it by this file's modification time
        contents["archive.plan"] = self.plan_digest.encode() + b"\n"
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
            path = self.plan_file(name)
            write_if_changed(path, data)
            _mark_current(path, buildpaths.plan_file(self.build_dir, f"{self.format}-current-{name}"))
        for batch in self.image_files:
            write_if_changed(batch.plan_file, batch.contents)

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
        return buildpaths.plan_record(self.build_dir)

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
            for v1_id, (_, v1) in self._v1_dirs.items():
                files += [buildpaths.v1_json(build, v1_id, v1.os_name), buildpaths.v1_version(build, v1_id)]
        else:
            files.append(buildpaths.oci_index(build))
            files += [buildpaths.oci_manifest(build, h) for h in self.config_ids()]
            files += [buildpaths.oci_image_index(build, h) for h in self.oci_image_indexes()]
        stored = [buildpaths.layer(build, h) for h in self.uncompressed_layers]
        stored += [buildpaths.blob(build, h) for h in self.kept_blobs]
        files += stored + [record_path(path) for path in stored]
        return files


# Above this, a layer job is limited to one per CPU. Measured on 2 cores with 16 job slots:
# 2 GB of 1-900 MB layers took 7.3 s with all running at once, 6.0 s two at a time; 1003
# layers of 512 KB took 20 s with 16 at once, 26.5 s two at a time. (At 4 MiB, the CI
# benchmark's 1.8 MB layers ran beside its 200 MB ones and its bytes cost more.)
BIG_LAYER = 1 << 20


def _mark_current(plan_file: str, record: str) -> None:
    """Make a plan file that is not the one its job last used newer than that job's output.

    The profile drops Snakemake's metadata (--drop-metadata), and with it the trigger that
    re-runs a job whose input file changed name. Going back to an earlier configuration
    brings back an earlier plan file, older than the output made from the one in between:
    touched here, it re-runs its job by modification time. (Image plan files need none:
    what they hold is named by its content.)"""
    name = os.path.basename(plan_file)
    try:
        with open(record, encoding="utf-8") as handle:
            if handle.read() == name:
                return
    except OSError:
        pass
    os.utime(plan_file)
    write_atomically(record, name.encode())


def _shell_words(*words: str) -> str:
    return " ".join(shlex.quote(word) for word in words)


def small_files_tar(build_dir: str, files: list[tuple[str, bytes]]) -> bytes:
    """A plain tar of build files (names relative to `build_dir`), for `tar -x` to unpack."""
    out = io.BytesIO()
    entries = [Entry(os.path.relpath(path, build_dir), "file", 0, data=data) for path, data in files]
    write_tar(entries, Sink(out))
    return out.getvalue()


def _parents(images: list[PlannedImage]) -> dict[str, str]:
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


def _layer_sources(planned: PlannedImage) -> dict[str, ForeignSource]:
    """manifest.json's LayerSources: where each foreign layer officially comes from."""
    return {layer.diff_id: layer.foreign for layer in planned.image.layers if layer.foreign is not None}
