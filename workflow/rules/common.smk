# What every rule shares: build paths, job resources, the job command, and the hooks
# around a run. Included only when the plan succeeded (PIPELINE is set).

import shlex

from tarexport import buildpaths
from tarexport.fileio import remove_stale_output
from tarexport.layerfiles import record_path
from tarexport.rulehooks import end_rate_limit_timers, fixed_signature

BUILD = PIPELINE.settings.build_dir
OUTPUT = PIPELINE.settings.output
FORMAT = PIPELINE.settings.format
PLAN_DIGEST = PIPELINE.plan_digest
# the two families of layer jobs (layers.smk)
LAYERS = PIPELINE.layers
KEPT_BLOBS = PIPELINE.kept_blobs

ENV = "../envs/tarexport.yaml"

# Registry downloads at once: the config's bound unless given with --resources.
if workflow.global_resources.get("registry_downloads").value is None:
    workflow.register_resource(
        "registry_downloads", PIPELINE.settings.parallel_downloads
    )
# Big layer jobs at once: one per CPU unless given with --resources (the profile's job
# slots outnumber the cores, for the small jobs' sake).
if workflow.global_resources.get("big_layers").value is None:
    workflow.register_resource("big_layers", os.cpu_count() or 1)

# Jobs call `tarexport ...`: the package run by this interpreter, so cluster jobs
# need no install step and the command stays out of the rules' params. Each job is a
# new Python process, so it starts lean (measured: 60 -> 30 ms per small layer job):
# -S with this process's module path (the same packages, without running every .pth
# file), -c instead of -m (no runpy), -P (the working directory never shadows the
# package), and bytecode kept under the build directory even where
# PYTHONDONTWRITEBYTECODE is set (else every job compiles the package again).
_JOB_PATH = os.pathsep.join(
    [os.path.join(workflow.basedir, "workflow")] + [p for p in sys.path if p]
)
_JOB_PYTHON = " ".join(
    [
        f"PYTHONPATH={shlex.quote(_JOB_PATH)}",
        f"PYTHONPYCACHEPREFIX={shlex.quote(os.path.abspath(os.path.join(BUILD, 'pycache')))}",
        "PYTHONDONTWRITEBYTECODE=",
        shlex.quote(sys.executable),
        "-S -P -c",
    ]
)
_MAIN = shlex.quote("import sys; from tarexport.__main__ import main; sys.exit(main())")
# The lean layer job (an uncompressed blob of an OCI layout): no command parser at all.
_LINK = shlex.quote("from tarexport.linklayer import main; main()")
# The shell's job for a small uncompressed layout blob, without the script's comments.
with open(
    os.path.join(workflow.basedir, "workflow", "scripts", "small_layer.sh")
) as _script:
    _SMALL = "".join(
        line.replace("{", "{{").replace("}", "}}")
        for line in _script
        if line.strip() and not line.lstrip().startswith("#")
    )
# Braces doubled: Snakemake formats the prefix like a shell command.
shell.prefix(
    "set -euo pipefail;"
    f' tarexport() {{{{ {_JOB_PYTHON} {_MAIN} "$@"; }}}};'
    f' tarexport_link() {{{{ {_JOB_PYTHON} {_LINK} "$@"; }}}};'
    f"\n{_SMALL}"
)


# An archive left by a run with another configuration must not survive a failed run
# (onstart runs only when jobs are about to run: never for -n or --lint).
onstart:
    if remove_stale_output(OUTPUT, PIPELINE.plan_record, PLAN_DIGEST):
        print(
            f"tarexport: removed {OUTPUT}: made from another configuration",
            file=sys.stderr,
        )


onsuccess:
    end_rate_limit_timers()


onerror:
    end_rate_limit_timers()
