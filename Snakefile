"""tarexport: export container images to one reproducible archive, daemonless.

Thin on purpose: configuration, validation and the plan come from the `tarexport`
package under workflow/; the rules in workflow/rules/ only wire its jobs to files.
"""

import inspect
import os
import shlex
import sys

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))

from tarexport.errors import TarexportError  # noqa: E402
from tarexport.fileio import remove_stale_output  # noqa: E402
from tarexport.pipeline import prepare  # noqa: E402


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


try:
    PIPELINE = prepare(
        config,
        os.path.join(workflow.basedir, "schemas", "config.schema.yaml"),
        os.getcwd(),
    )
    PIPELINE.write_plan_files()
except TarexportError as error:
    sys.exit(f"tarexport: error: {error}")
except OSError as error:  # an unreadable source: still one line, no traceback
    sys.exit(f"tarexport: error: {error.filename or ''}: {error.strerror or error}")

BUILD = PIPELINE.build_dir
OUTPUT = PIPELINE.settings.output
FORMAT = PIPELINE.format
PLAN_DIGEST = PIPELINE.plan_digest

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


def fixed_signature(function):
    """A rule's function whose parameters Snakemake reads once, not once per job: it calls
    inspect.signature every time it calls one (7% of its main thread at 1000 layer jobs,
    with five such functions per job). The attribute is snakemake.common's own cache hook
    (get_function_params); holding the same mapping, it changes nothing else."""
    function._overwrite_params = inspect.signature(function).parameters
    return function


include: "workflow/rules/layers.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/oci.smk"
include: "workflow/rules/archive.smk"


# An archive left by a run with another configuration must not survive a failed run
# (onstart runs only when jobs are about to run: never for -n or --lint).
onstart:
    if remove_stale_output(OUTPUT, PIPELINE.plan_record, PLAN_DIGEST):
        print(
            f"tarexport: removed {OUTPUT}: made from another configuration",
            file=sys.stderr,
        )


def _end_rate_limit_timers():
    """Snakemake's job rate limiter (--max-jobs-per-timespan, default 100/1s) re-checks
    through non-daemon threading.Timer threads, and Python waits for them at exit: every
    run that ran jobs ended up to 1 s after its last job. The scheduler is done here, so
    the pending re-checks are moot. (A timespan under 1 s cannot be given: Snakemake 9.27
    reads "100ms" as 100 minutes.)"""
    import threading

    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and getattr(
            thread.function, "__module__", ""
        ).startswith("snakemake."):
            thread.cancel()


onsuccess:
    _end_rate_limit_timers()


onerror:
    _end_rate_limit_timers()
