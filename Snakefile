"""tarexport: export container images to one reproducible archive, daemonless.

Thin on purpose: configuration, validation and the plan come from the `tarexport`
package under workflow/; the rules in workflow/rules/ only wire its jobs to files.
"""

import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# This file's directory, also inside another workflow (a Snakemake module), where
# workflow.basedir is the user's. A clone runs its own package; an install, the installed one.
TAREXPORT_DIR = str(workflow.current_basedir)
if os.path.isdir(os.path.join(TAREXPORT_DIR, "workflow", "tarexport")):
    sys.path.insert(0, os.path.join(TAREXPORT_DIR, "workflow"))

from tarexport.startup import FailedPlan, plan_export  # noqa: E402

# The example's configuration, only when no --configfile is given: a user's file is whole
# by itself (defaults come from the schema) and never inherits the example's sources or
# images. As a module, the including workflow's `config:` takes its place.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(TAREXPORT_DIR, "config", "config.yaml")


# What `snakemake --report report.html` says first (the archive's summary is under Results).
report: "workflow/report/workflow.rst"


# Under remote storage (--default-storage-provider) outputs are objects, which the hooks
# around the jobs reach through Snakemake's storage objects (remotestorage.py): a path's.
_paths = workflow.modifier.path_modifier
OUTPUT_OBJECT = (
    (lambda path: _paths.apply_default_storage(path).flags["storage_object"])
    if workflow.storage_settings.default_storage_provider
    else None
)

# The plan, or why there is none (acted on when the target is asked for: see startup.py).
PLANNED = plan_export(
    config,
    os.path.join(TAREXPORT_DIR, "schemas", "config.schema.yaml"),
    os.getcwd(),
    # a source given as a storage URL (s3://...): its object, through Snakemake's plugins
    lambda url: storage(url, keep_local=True).flags["storage_object"],
    OUTPUT_OBJECT,
)

if isinstance(PLANNED, FailedPlan):

    include: "workflow/rules/failed_plan.smk"

else:
    PIPELINE = PLANNED

    include: "workflow/rules/common.smk"
    include: "workflow/rules/layers.smk"
    include: "workflow/rules/images.smk"
    include: "workflow/rules/index.smk"
    include: "workflow/rules/archive.smk"
    include: "workflow/rules/lock.smk"

    # the rules of the configured format's own files (oci: manifests and indexes)
    for _rule_file in PIPELINE.export_format.rule_files:

        include: os.path.join("workflow", "rules", _rule_file)


# `default_target:` counts only for rules of the main Snakefile, and the target rules are
# in included files: a bare `snakemake` (or `snakemake -n`) means `snakemake export`.
# As a module, the including workflow keeps its own default.
if workflow.modifier.is_main_snakefile():
    workflow.default_target = "export"
