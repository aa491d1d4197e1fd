"""`<output>.provenance.json`: an in-toto Statement v1 whose predicate is SLSA Provenance v1.

Everything but the subject is decided with the plan (a plan file holds it); the export job
adds the subject, the archive's name and sha256, once the archive is written. No time
stamp unless SOURCE_DATE_EPOCH is set: two builds of the same release give the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.parse
from importlib import metadata
from typing import TYPE_CHECKING, Any

from . import __version__
from .compressors import COMPRESSORS
from .recipes import RECIPE_VERSION, document_bytes

if TYPE_CHECKING:  # the export job reads a template only: no schema or plan imports there
    from .plan import Plan
    from .settings import Settings
    from .sources.loading import SourceSpec

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:tarexport:buildtype:export:v1"
BUILDER_ID = "pkg:pypi/tarexport"


def library_versions(compression: str) -> dict[str, str]:
    """The versions of what decides the archive's bytes: tarexport, Snakemake (which runs
    the jobs) and, for a compressed archive, its compression library."""
    versions = {"tarexport": __version__}
    with contextlib.suppress(metadata.PackageNotFoundError):  # the package alone, as in unit tests
        versions["snakemake"] = metadata.version("snakemake")
    if compression != "none":
        compressor = COMPRESSORS[compression]
        versions[compressor.library] = compressor.running_version()
    return versions


def _source_uri(spec: SourceSpec) -> str:
    """A registry's URL, a storage URL as given, a path as a `file:` URI."""
    if spec.registry is not None or spec.storage_url:
        return spec.path
    return "file:" + urllib.parse.quote(spec.path)


def provenance_template(settings: Settings, plan: Plan) -> dict[str, Any]:
    """The statement without its subject, and with each image's digest in the archive left
    for the export job (an OCI manifest's digest is known once its layers are written)."""
    dependencies: list[dict[str, Any]] = []
    for planned in plan.images:
        annotations = {"kind": "image", "imageId": planned.image.image_id, "source": planned.image.source}
        if planned.image.manifest_digest:
            annotations["sourceManifestDigest"] = planned.image.manifest_digest
        dependencies.append(
            {
                "name": ", ".join(tag.familiar() for tag in planned.tags) or planned.image.image_id,
                "digest": {},
                "annotations": annotations,
            }
        )
    for spec in settings.sources:
        dependencies.append(
            {
                "uri": _source_uri(spec),
                "annotations": {"kind": "source", "type": spec.kind.value},
            }
        )
    metadata_: dict[str, Any] = {}
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        metadata_["finishedOn"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))
    run_details: dict[str, Any] = {
        "builder": {"id": BUILDER_ID, "version": library_versions(settings.compression)},
    }
    if metadata_:
        run_details["metadata"] = metadata_
    return {
        "_type": STATEMENT_TYPE,
        "subject": [],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                # keys sorted: the bytes must not follow the order a configuration file lists them in
                "externalParameters": json.loads(json.dumps(settings.effective, sort_keys=True)),
                "internalParameters": {"recipeVersion": RECIPE_VERSION},
                "resolvedDependencies": dependencies,
            },
            "runDetails": run_details,
        },
    }


def statement(template_file: str, archive: str, sha256: str, image_digests: list[str]) -> bytes:
    """The statement: the template with the archive as its subject and each image's digest
    as loaders show it (`image_digests`, in request order: sidefiles.image_digests)."""
    with open(template_file, encoding="utf-8") as handle:
        document = json.load(handle)
    document["subject"] = [{"name": os.path.basename(archive), "digest": {"sha256": sha256}}]
    dependencies = document["predicate"]["buildDefinition"]["resolvedDependencies"]
    images = [d for d in dependencies if d["annotations"].get("kind") == "image"]
    for dependency, digest in zip(images, image_digests, strict=True):
        dependency["digest"] = {"sha256": digest.removeprefix("sha256:")}
    return document_bytes(document)
