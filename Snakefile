"""tarexport: export container images to one reproducible archive, daemonless.

Thin on purpose: configuration, validation and the plan come from the `tarexport`
package under workflow/; the rules in workflow/rules/ only wire its jobs to files.
"""

import os
import sys

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))

from tarexport.startup import FailedPlan, plan_export  # noqa: E402


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# The plan, or why there is none (acted on when the target is asked for: see startup.py).
PLANNED = plan_export(
    config,
    os.path.join(workflow.basedir, "schemas", "config.schema.yaml"),
    os.getcwd(),
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

    # the rules of the configured format's own files (oci: manifests and indexes)
    for _rule_file in PIPELINE.export_format.rule_files:

        include: os.path.join("workflow", "rules", _rule_file)


# `default_target:` counts only for rules of the main Snakefile, and the target rules are
# in included files: a bare `snakemake` (or `snakemake -n`) means `snakemake export`.
workflow.default_target = "export"
