"""What the Snakefile asks of the package: the plan, as file names and job recipes.

Built once when the Snakefile is parsed: reading index.json, manifests and configs
is cheap, and a parse-time plan avoids checkpoints re-evaluating the DAG. The rules see
it by family: `layers` and `kept_blobs` (layerjobs.py), `export_format` (exportformats.py),
and here each image's small files, the plan files and the archive.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
from dataclasses import dataclass, field
from functools import cached_property

from . import buildpaths
from .digests import hex_of, sha256_digest
from .errors import TarexportError
from .exportcontext import ExportContext
from .exportformats import FORMATS, ExportFormat
from .fileio import CONTENT_NAMED_MTIME, write_atomically, write_content_named, write_if_changed
from .formats.saveindex import ManifestEntry, manifest_json, repositories_json
from .layerfiles import record_path
from .layerjobs import StoredLayers
from .lockfile import lock_document, lock_holds
from .plan import Plan
from .provenance import provenance_template
from .recipes import RECIPE_VERSION, LayerRemake, document_bytes, recipe_json, remakes_json
from .settings import Settings
from .sidefiles import side_paths
from .summary import SummaryImage
from .tarball import Entry, write_tar
from .tarsinks import Sink


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
    context: ExportContext = field(init=False)
    export_format: ExportFormat = field(init=False)
    layers: StoredLayers = field(init=False)  # stored uncompressed, by diff_id
    kept_blobs: StoredLayers = field(init=False)  # kept as the source holds them (`layers: keep`)

    def __post_init__(self) -> None:
        fmt = FORMATS[self.settings.format]
        self.context = ExportContext(self.settings, self.plan, fmt.may_leave_out_foreign_layers)
        self.export_format = fmt(self.context)
        self.layers = StoredLayers(self.context, self.context.uncompressed_layers)
        self.kept_blobs = StoredLayers(self.context, self.context.kept_blobs)

    # -------- small files: each image's config, and what its format adds
    @cached_property
    def image_files(self) -> list[ImageFiles]:
        """One job per image writes its small files: its config, and what the format adds
        (format docker: the v1 directories it is the first to need). Their bytes are known
        now, so the job unpacks them from a plan file instead of starting Python; a changed
        image changes only its own plan file."""
        build = self.context.build_dir
        members: dict[str, list[tuple[str, bytes]]] = {}
        for image_hex, planned in self.context.images_by_hex.items():
            config = planned.image.config
            if sha256_digest(config) != planned.image.image_id:
                raise TarexportError(
                    f"config has digest {sha256_digest(config)}, expected image ID {planned.image.image_id}",
                    image=planned.display,
                    source=self.context.label(planned.image.config_blob),
                    member=planned.image.config_blob.member,
                )
            members[image_hex] = [(buildpaths.config(build, image_hex), config)]
        for image_hex, files in self.export_format.image_files().items():
            members[image_hex] += files
        short = {image_hex: image_hex[:12] for image_hex in members}
        if len(set(short.values())) < len(short):  # Docker's short IDs, unless two collide
            short = {image_hex: image_hex for image_hex in members}
        batches = []
        for image_hex, files in members.items():
            contents = small_files_tar(build, files)
            plan = buildpaths.plan_file(build, f"image-{hex_of(sha256_digest(contents))[:32]}.tar")
            batches.append(ImageFiles(f"image_files_{short[image_hex]}", plan, [path for path, _ in files], contents))
        return batches

    # -------- manifest.json and repositories, computed once per parse: the rules, the
    # archive inputs and the plan digest all ask
    @cached_property
    def _manifest_entries(self) -> list[ManifestEntry]:
        return self.export_format.manifest_entries()

    @cached_property
    def manifest_json(self) -> bytes:
        return manifest_json(self._manifest_entries)

    @cached_property
    def repositories(self) -> bytes | None:
        return repositories_json(self._manifest_entries)

    # -------- plan files: manifest.json, repositories and what the format adds
    @cached_property
    def _plan_contents(self) -> dict[str, bytes]:
        """Whole contents of the small index jobs' outputs, decided now. They go through files
        because a command line holds at most 128 KiB, and not through `run:` jobs because each
        of those starts a new Snakemake process."""
        contents = {"manifest.json": self.manifest_json}
        if self.repositories is not None:
            contents["repositories"] = self.repositories
        contents.update(self.export_format.plan_contents())
        # the format's own metadata files, for the assembly to walk (none in format docker)
        contents["archive-documents.json"] = recipe_json(self.export_format.documents()).encode()
        # what the archive is made from, as an input of the export job: a changed plan
        # (another compression, say) re-runs it by this file's modification time
        contents["archive.plan"] = self.plan_digest.encode() + b"\n"
        # what the archive's summary (Snakemake's report) lists: the requested images
        contents["archive-images.json"] = recipe_json([image.to_json() for image in self.summary_images()]).encode()
        if "provenance" in self.settings.side_files:
            template = provenance_template(self.settings, self.plan)
            contents["provenance.json"] = document_bytes(template)
        if self.writes_lock:
            contents["lock.json"] = lock_document(self.plan, self.settings.platform, self.settings.platforms)
        return contents

    @property
    def writes_lock(self) -> bool:
        return bool(self.settings.lockfile) and self.settings.lock_mode == "update"

    @property
    def lock_refusal(self) -> str:
        """Why `snakemake lock` writes nothing, when it does not."""
        if not self.settings.lockfile:
            return "tarexport: error: no lock file is configured; set lockfile: PATH to write one"
        return (
            f"tarexport: error: lock_mode is frozen, so {self.settings.lockfile} is read and never written;"
            " set lock_mode: update to write it again"
        )

    def side_inputs(self) -> dict[str, list[str]]:
        """The export job's inputs for its side files: the lock it waits for (lock_mode
        update), and the provenance statement's plan file."""
        provenance = "provenance" in self.settings.side_files
        return {
            "lock": [self.settings.lockfile] if self.writes_lock else [],
            "provenance": [self.plan_file("provenance.json")] if provenance else [],
        }

    @property
    def side_files(self) -> dict[str, str]:
        """The files published beside the archive (kind -> path), as configured."""
        return side_paths(self.settings.output, self.settings.side_files)

    def assemble_options(self, stage_times: str, side_outputs: list[str]) -> str:
        """The export job's options that may be absent: where the stage times are, and the
        side files to write (an empty value cannot be passed through Snakemake's quoting).
        `side_outputs`: the job's paths of the side files (output.side, in side_files'
        order), staged copies under remote storage."""
        side = dict(zip(self.side_files, side_outputs, strict=True))
        given = {"stages": stage_times, "checksum": side.get("sha256", "")}
        given["image-list"] = side.get("images", "")
        given["provenance"] = side.get("provenance", "")
        given["provenance-template"] = self.side_inputs()["provenance"][0] if given["provenance"] else ""
        return " ".join(f"--{name} {shlex.quote(value)}" for name, value in given.items() if value)

    def repair_options(self, repaired_dir: str) -> str:
        """The export job's options for making damaged stored layers again: the plan file, and
        where to leave what it made (under remote storage, see repair.put_back)."""
        options = f"--repairs {shlex.quote(self.repairs_plan())}"
        return f"{options} --repaired-to {shlex.quote(repaired_dir)}" if repaired_dir else options

    def repairs_plan(self) -> str:
        """The plan file of what every stored layer's job was given, for the assembly to make
        a damaged one again (repair.py); written when the export job is about to start, so a
        dry run or a run with nothing to assemble never pays for it. Untracked: where layers
        are read from changes no archive."""
        build = self.context.build_dir
        remakes = {}
        for family, path_of, keep in ((self.layers, buildpaths.layer, False), (self.kept_blobs, buildpaths.blob, True)):
            for key in family.by_hex:
                job = LayerRemake(family.recipe(key), str(family.source(key)), str(family.users(key)), keep)
                remakes[os.path.relpath(path_of(build, key), build)] = job
        data = remakes_json(remakes).encode()
        path = buildpaths.plan_file(build, f"repairs-{hex_of(sha256_digest(data))[:32]}.json")
        write_if_changed(path, data)
        return path

    def summary_images(self) -> list[SummaryImage]:
        """The images for the summary and the side files; their build files relative to the
        build directory (the export job's may be a staged copy)."""
        build = self.context.build_dir

        def relative(path: str) -> str:
            return os.path.relpath(path, build) if path else ""

        return [
            SummaryImage(
                [tag.familiar() for tag in planned.tags],
                planned.image.image_id,
                relative(buildpaths.config(build, hex_of(planned.image.image_id))),
                [
                    (layer.digest, relative(layer.build_file))
                    for layer in self.context.layers[hex_of(planned.image.image_id)]
                ],
            )
            for planned in self.plan.images
        ]

    def plan_file(self, name: str) -> str:
        """Named by its content: another plan (even a dry run next to a running export) never
        writes over it, and a changed plan is a new input, which re-runs its job."""
        data = self._plan_contents.get(name)
        if data is None:  # not in this format (repositories in oci): its rule never runs
            return buildpaths.plan_file(self.context.build_dir, f"{self.context.format}-none-{name}")
        digest = hex_of(sha256_digest(data))[:32]
        return buildpaths.plan_file(self.context.build_dir, f"{self.context.format}-{digest}-{name}")

    def write_plan_files(self) -> None:
        for name, data in self._plan_contents.items():
            path = self.plan_file(name)
            write_if_changed(path, data)
            _mark_current(path, buildpaths.plan_file(self.context.build_dir, f"{self.context.format}-current-{name}"))
        for batch in self.image_files:
            write_content_named(batch.plan_file, batch.contents)
        for path, data in self.export_format.documents_made_now().items():
            write_content_named(path, data)
        if self.writes_lock:
            self._date_lock_plan(self.settings.lockfile)  # relative to the work directory, as plan files

    def _date_lock_plan(self, lockfile: str) -> None:
        """Re-run the lock job exactly when the lock file does not hold the lock (by content,
        not by time: a checkout dates a committed lock anew, and an old lock may be newer
        than a plan file that says otherwise)."""
        plan_file = self.plan_file("lock.json")
        if lock_holds(lockfile, self._plan_contents["lock.json"]):  # never blocks, reads no more than the lock
            os.utime(plan_file, (CONTENT_NAMED_MTIME, CONTENT_NAMED_MTIME))
        else:
            os.utime(plan_file)

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
            "index": self.export_format.decides(),
            "inputs": self.archive_inputs(),
        }
        return hashlib.sha256(recipe_json(decided).encode()).hexdigest()

    def archive_inputs(self) -> list[str]:
        return list(self._archive_inputs)

    @cached_property
    def _archive_inputs(self) -> list[str]:
        build = self.context.build_dir
        files = [buildpaths.manifest(build, self.context.format)]
        if self.repositories is not None:
            files.append(buildpaths.repositories(build, self.context.format))
        files += [buildpaths.config(build, h) for h in self.context.config_ids()]
        files += self.export_format.archive_inputs()
        stored = [buildpaths.layer(build, h) for h in self.context.uncompressed_layers]
        stored += [buildpaths.blob(build, h) for h in self.context.kept_blobs]
        files += stored + [record_path(path) for path in stored]
        return files


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


def small_files_tar(build_dir: str, files: list[tuple[str, bytes]]) -> bytes:
    """A plain tar of build files (names relative to `build_dir`), for `tar -x` to unpack."""
    out = io.BytesIO()
    entries = [Entry(os.path.relpath(path, build_dir), "file", 0, data=data) for path, data in files]
    write_tar(entries, Sink(out))
    return out.getvalue()
