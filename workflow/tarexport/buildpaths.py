"""Where each tracked output lives under `build_dir`; the rules and the assembler agree here.

The rules call these same functions with wildcards for names (`layer(BUILD, "{diff}")`),
so a path is spelled once.

Layers, kept blobs and configs are content-addressed and shared by every format; each
format's own small files live in a directory named after it.
"""

from __future__ import annotations

import hashlib
import os

# Every directory the export writes into, below build_dir (and the docker/<v1 id>
# directories inside "docker"): checked to be real directories before a run.
DIRECTORIES = (
    "layers",
    "blobs",
    "configs",
    "docker",
    "oci",
    "oci/manifests",
    "oci/indexes",
    "oci/attestations",
    "plan",
    "logs",
    "benchmarks",
    "registry",
    "registry/blobs",
    "registry/blobs/sha256",
    "pycache",
    "jobs",
    "report",
)


def layer(build_dir: str, diff_hex: str) -> str:
    return os.path.join(build_dir, "layers", diff_hex + ".tar")


def blob(build_dir: str, blob_hex: str) -> str:
    """A source blob kept as it is (compressed), by its digest."""
    return os.path.join(build_dir, "blobs", blob_hex)


def config(build_dir: str, image_hex: str) -> str:
    return os.path.join(build_dir, "configs", image_hex + ".json")


def manifest(build_dir: str, fmt: str) -> str:
    return os.path.join(build_dir, fmt, "manifest.json")


def repositories(build_dir: str, fmt: str) -> str:
    return os.path.join(build_dir, fmt, "repositories")


# What decides a v1 `json` file's bytes besides its v1 ID and the `os`: the encoder. Bump it
# when those bytes change, so that a stored file made by an earlier encoder is never taken
# for the new one (the plan files of these outputs are dated 1980: fileio.write_content_named).
V1_JSON_ENCODING = "1"


def v1_json(build_dir: str, v1_id: str, os_name: str) -> str:
    """A v1 directory's `json`: Docker writes the `os` of the image saving it into the file
    but not into the ID, so configurations sharing a build_dir may need two files for one
    ID; the name tells them apart (and names the encoding: V1_JSON_ENCODING)."""
    named = hashlib.sha256(f"{os_name}\0{V1_JSON_ENCODING}".encode()).hexdigest()[:16]
    return os.path.join(build_dir, "docker", v1_id, "json-" + named)


def v1_version(build_dir: str, v1_id: str) -> str:
    return os.path.join(build_dir, "docker", v1_id, "VERSION")


def oci_manifest(build_dir: str, image_hex: str) -> str:
    return os.path.join(build_dir, "oci", "manifests", image_hex + ".json")


def oci_index(build_dir: str) -> str:
    return os.path.join(build_dir, "oci", "index.json")


def oci_attestation(build_dir: str, manifest_hex: str) -> str:
    """An attestation manifest kept as the source holds it, by its digest."""
    return os.path.join(build_dir, "oci", "attestations", manifest_hex + ".json")


def oci_image_index(build_dir: str, index_hex: str) -> str:
    """Our copy of a multi-platform index, named by the source index's digest."""
    return os.path.join(build_dir, "oci", "indexes", index_hex + ".json")


def summary(build_dir: str, plan_digest: str) -> str:
    """The archive's summary for Snakemake's report, by the plan it describes."""
    return os.path.join(build_dir, "report", f"summary-{plan_digest[:16]}.html")


def stage_times(build_dir: str) -> str:
    """Each stage's job count and wall time in the latest run (screen.py)."""
    return os.path.join(build_dir, "logs", "stages.json")


def job_functions(build_dir: str, name: str) -> str:
    """The shell functions every job's command sources (jobshell.py)."""
    return os.path.join(build_dir, "jobs", name)


def log(build_dir: str, stage: str, name: str) -> str:
    """A job's log (`stage` groups them: layers, oci, images...)."""
    return os.path.join(build_dir, "logs", stage, name + ".log")


def benchmark(build_dir: str, stage: str, name: str) -> str:
    """A job's Snakemake benchmark record."""
    return os.path.join(build_dir, "benchmarks", stage, name + ".tsv")


def registry_cache(build_dir: str) -> str:
    """Manifests and configs read from registries while planning, verified, by digest
    (laid out like an OCI layout's blobs)."""
    return os.path.join(build_dir, "registry")


def plan_record(build_dir: str, output: str, in_storage: bool = False) -> str:
    """Where the export job records the plan digest of the archive it wrote, which file that
    archive is, and what it published beside it: one record per output (by its absolute
    path), so that exports to several outputs from one build directory (the command's
    shared cache) each keep theirs. In remote storage, by the output as given: every runner
    (each in its own directory) finds the one record of the archive object."""
    named = os.path.normpath(output) if in_storage else os.path.abspath(output)
    return os.path.join(build_dir, f"export-{hashlib.sha256(named.encode()).hexdigest()[:16]}.plan")


def build_dir_of(path: str) -> str:
    """The build directory a job sees, from one of its `<build>/<kind>/<file>` paths: the
    configured one, or its staged copy under Snakemake's remote storage."""
    return os.path.dirname(os.path.dirname(path))


def plan_file(build_dir: str, name: str) -> str:
    """Content decided when the plan is made, too big for a command line (manifest.json...)."""
    return os.path.join(build_dir, "plan", name)
