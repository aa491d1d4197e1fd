"""The plan as the rules see it, without running Snakemake: the layer job families, the
formats behind one interface, and what decides the archive."""

from __future__ import annotations

import json
import os

import pytest

from tarexport.exportformats import DockerExport, OciExport
from tarexport.pipeline import Pipeline
from tarexport.startup import prepare
from tests.imagefactory import Image, LayoutEntry, make_config, make_layer, write_oci_layout
from tests.workflowrun import ROOT

pytestmark = pytest.mark.unit

SCHEMA = os.path.join(ROOT, "schemas", "config.schema.yaml")
BASE = make_layer({"base": b"shared lower layer"})
APP = Image([BASE, make_layer({"app": b"a"})], b"")
APP.config = make_config(APP.layers, config={"Cmd": ["app"]})
TOOL = Image([BASE, make_layer({"tool": b"t"})], b"")
TOOL.config = make_config(TOOL.layers, config={"Cmd": ["tool"]})


def planned(tmp_path, source_compression: str = "none", **config: object) -> Pipeline:
    """The plan for app:1 and tool:1 (sharing their lower layer), from a new layout."""
    work = str(tmp_path / f"work-{len(os.listdir(tmp_path))}")
    named = ((APP, "app:1"), (TOOL, "tool:1"))
    entries = [LayoutEntry(image, [name], compression=source_compression) for image, name in named]
    layout = write_oci_layout(os.path.join(work, "layout"), entries)
    return prepare({"sources": [layout], "images": ["app:1", "tool:1"], **config}, SCHEMA, work)


def test_each_format_is_its_own_class(tmp_path) -> None:
    assert isinstance(planned(tmp_path).export_format, DockerExport)
    assert isinstance(planned(tmp_path, format="oci").export_format, OciExport)


def test_a_shared_lower_v1_directory_has_one_producer(tmp_path) -> None:
    pipeline = planned(tmp_path)
    files = pipeline.export_format.image_files()
    app, tool = APP.image_id.split(":")[1], TOOL.image_id.split(":")[1]
    names = {image: [os.path.basename(os.path.dirname(path)) for path, _ in files[image]] for image in files}
    # app writes both its directories; tool only its top one: the lower one is app's
    assert len(set(names[app])) == 2 and len(set(names[tool])) == 1 and not set(names[app]) & set(names[tool])
    assert all(b"Cmd" not in data for path, data in files[app] if path.endswith("VERSION"))


def test_oci_has_its_rules_and_index_entries_in_request_order(tmp_path) -> None:
    pipeline = planned(tmp_path, format="oci")
    oci = pipeline.export_format
    assert oci.rule_files == ("oci.smk",) and pipeline.export_format.rule_files != DockerExport.rule_files
    assert [(name, tag) for _, _, name, tag in oci.index_entries()] == [
        ("docker.io/library/app:1", "1"),
        ("docker.io/library/tool:1", "1"),
    ]
    recipe = json.loads(oci.manifest_recipe(APP.image_id.split(":")[1]))
    assert [layer["digest"] for layer in recipe["layers"]] == APP.diff_ids  # uncompressed: by diff_id


def test_layer_jobs_one_per_distinct_layer_and_the_lean_command_for_small_layout_blobs(tmp_path) -> None:
    pipeline = planned(tmp_path)
    assert len(pipeline.context.uncompressed_layers) == 3 and not pipeline.context.kept_blobs
    base = sha_hex(BASE)
    command = str(pipeline.layers.command(base, "out.tar", "log"))
    assert command.startswith("tarexport_small ") and pipeline.layers.downloads(base) == 0
    assert json.loads(pipeline.layers.recipe(base)) == {"v": 1, "diff_id": "sha256:" + base}


def test_gzip_blobs_go_to_the_python_job_or_are_kept(tmp_path) -> None:
    pipeline = planned(tmp_path, source_compression="gzip")
    assert str(pipeline.layers.command(sha_hex(BASE), "out.tar", "log")).startswith("tarexport layer ")
    kept = planned(tmp_path, source_compression="gzip", format="oci", layers="keep")
    assert len(kept.context.kept_blobs) == 3 and not kept.context.uncompressed_layers
    assert all(path.startswith(os.path.join("build", "blobs")) for path in kept.archive_inputs() if "blobs" in path)


def test_the_plan_digest_follows_what_decides_the_archive(tmp_path) -> None:
    plain, gzip = planned(tmp_path), planned(tmp_path, compression="gzip")
    assert plain.plan_digest != gzip.plan_digest and plain.archive_inputs() == gzip.archive_inputs()
    assert planned(tmp_path, format="oci").plan_digest != plain.plan_digest
    # the same images from a gzip layout: the same archive, so the same plan
    assert planned(tmp_path, source_compression="gzip").plan_digest == plain.plan_digest


def sha_hex(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_every_recipe_reads_back_as_it_was_written() -> None:
    from tarexport.recipes import (
        IndexEntry,
        LayerRecipe,
        LayerSource,
        ManifestLayer,
        ManifestRecipe,
        PlatformManifest,
        index_entries_from_json,
        index_entries_text,
        platforms_from_json,
        platforms_text,
    )
    from tarexport.sources.blobs import BlobRef

    layer = LayerRecipe("sha256:" + "a" * 64)
    assert layer.to_text() == '{"diff_id":"sha256:' + "a" * 64 + '","v":1}'  # Snakemake compares this text
    assert LayerRecipe.from_json(json.loads(layer.to_text())) == layer
    source = LayerSource(BlobRef("oci-layout", "/l", "blobs/sha256/x", "sha256:x", 3, -1), "l", None, 1 << 30, 0, True)
    assert LayerSource.from_json(json.loads(source.to_text())) == source
    manifest = ManifestRecipe("c.json", [ManifestLayer("", "sha256:f", "t", 5, ["https://example/f"])])
    assert ManifestRecipe.from_json(json.loads(manifest.to_text())) == manifest
    platforms = [PlatformManifest("m.json", {"os": "linux", "architecture": "arm64"})]
    assert platforms_from_json(json.loads(platforms_text(platforms))) == (platforms, [])
    entries = [IndexEntry("m.json", "application/vnd.oci.image.manifest.v1+json", "docker.io/library/a:1", "1")]
    assert index_entries_from_json(json.loads(index_entries_text(entries))) == entries
