"""What the Snakefile asks of the package: the plan, as file names and job recipes.

Built once when the Snakefile is parsed: reading index.json, manifests and configs
is cheap, and a parse-time plan avoids checkpoints re-evaluating the DAG.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from . import buildpaths
from .digests import hex_of
from .plan import Plan, PlannedImage, build_catalog, make_plan
from .settings import Settings, load_settings
from .sources import BlobRef
from .sources.base import recipe_json

# Bumped when a job's output bytes change for the same recipe, so Snakemake's
# params trigger re-runs them (it does not track the package's code).
RECIPE_VERSION = 1


class MessageContext:
    """Text for error messages only (which image a job serves).

    Snakemake's params trigger compares only builtin-typed values, so passing this
    object as a param never re-runs a job when, say, the first image using a layer changes.
    """

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


@dataclass
class Pipeline:
    settings: Settings
    plan: Plan

    @property
    def build_dir(self) -> str:
        return self.settings.build_dir

    # -------- layers
    def layer_ids(self) -> list[str]:
        return [hex_of(d) for d in self.plan.layers]

    def layer_source_file(self, diff_hex: str) -> str:
        return _source_file(self.plan.layers["sha256:" + diff_hex].blob)

    def layer_recipe(self, diff_hex: str) -> str:
        layer = self.plan.layers["sha256:" + diff_hex]
        label = _label_of(self.settings, layer.blob)
        return recipe_json(
            {"v": RECIPE_VERSION, "blob": layer.blob.to_json(), "diff_id": layer.diff_id, "label": label}
        )

    def layer_context(self, diff_hex: str) -> MessageContext:
        return MessageContext(self.plan.layer_users["sha256:" + diff_hex])

    # -------- configs
    def config_ids(self) -> list[str]:
        return [hex_of(p.image.image_id) for p in self.plan.images]

    def _image(self, image_hex: str) -> PlannedImage:
        return self._images_by_hex[image_hex]

    def __post_init__(self) -> None:
        self._images_by_hex = {hex_of(p.image.image_id): p for p in self.plan.images}

    def config_source_file(self, image_hex: str) -> str:
        return _source_file(self._image(image_hex).image.config_blob)

    def config_context(self, image_hex: str) -> MessageContext:
        return MessageContext(self._image(image_hex).display)

    def config_recipe(self, image_hex: str) -> str:
        image = self._image(image_hex).image
        label = _label_of(self.settings, image.config_blob)
        return recipe_json(
            {"v": RECIPE_VERSION, "blob": image.config_blob.to_json(), "image_id": image.image_id, "label": label}
        )

    # -------- v1 directories
    def v1_ids(self) -> list[str]:
        return list(self.plan.v1_dirs)

    def _v1_is_top(self, v1_id: str) -> bool:
        planned, index = self.plan.v1_dirs[v1_id]
        return index == len(planned.diff_ids) - 1

    def v1_inputs(self, v1_id: str) -> list[str]:
        """A top layer's json comes from the image config; a lower one's from its chain alone."""
        if not self._v1_is_top(v1_id):
            return []
        planned, _ = self.plan.v1_dirs[v1_id]
        return [buildpaths.config(self.build_dir, hex_of(planned.image.image_id))]

    def v1_recipe(self, v1_id: str) -> str:
        planned, index = self.plan.v1_dirs[v1_id]
        recipe: dict[str, Any] = {"v": RECIPE_VERSION, "v1_id": v1_id}
        if self._v1_is_top(v1_id):
            recipe["config"] = self.v1_inputs(v1_id)[0]
        else:
            recipe["diff_ids"] = planned.diff_ids[: index + 1]
            recipe["os"] = planned.os
        return recipe_json(recipe)

    # -------- the archive's inputs
    def archive_inputs(self) -> list[str]:
        build = self.build_dir
        files = [buildpaths.manifest(build)]
        if self.plan.repositories is not None:
            files.append(buildpaths.repositories(build))
        files += [buildpaths.config(build, h) for h in self.config_ids()]
        for v1_id in self.v1_ids():
            files += [buildpaths.v1_json(build, v1_id), buildpaths.v1_version(build, v1_id)]
        files += [buildpaths.layer(build, h) for h in self.layer_ids()]
        return files


def _source_file(blob: BlobRef) -> str:
    if blob.source_kind == "oci-layout":
        return os.path.join(blob.source_path, blob.member)
    return blob.source_path


def _label_of(settings: Settings, blob: BlobRef) -> str:
    for spec in settings.sources:
        if os.path.realpath(spec.resolved) == blob.source_path:
            return spec.path
    return blob.source_path


def prepare(config: dict[str, Any], schema_path: str, workdir: str) -> Pipeline:
    settings = load_settings(config, schema_path, workdir)
    catalog = build_catalog(settings.sources, settings.platform)
    return Pipeline(settings, make_plan(catalog, settings.images))
