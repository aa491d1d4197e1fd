# What every rule shares: build paths, job resources, the job command, and the hooks
# around a run. Included only when the plan succeeded (PIPELINE is set).

from tarexport import buildpaths
from tarexport.exportcontext import Untracked
from tarexport.fileio import remove_stale_output
from tarexport.jobshell import source_line
from tarexport.layerfiles import record_path
from tarexport.rulehooks import end_rate_limit_timers, fixed_signature

BUILD = PIPELINE.settings.build_dir
OUTPUT = PIPELINE.settings.output
FORMAT = PIPELINE.settings.format
PLAN_DIGEST = PIPELINE.plan_digest
# the two families of layer jobs (layers.smk)
LAYERS = PIPELINE.layers
KEPT_BLOBS = PIPELINE.kept_blobs

# Registry downloads at once: the config's bound unless given with --resources.
if workflow.global_resources.get("registry_downloads").value is None:
    workflow.register_resource(
        "registry_downloads", PIPELINE.settings.parallel_downloads
    )
# Big layer jobs at once: one per CPU unless given with --resources (the profile's job
# slots outnumber the cores, for the small jobs' sake).
if workflow.global_resources.get("big_layers").value is None:
    workflow.register_resource("big_layers", os.cpu_count() or 1)

# Every job's command starts with its params.jobs, which sources the shell functions it
# calls (`tarexport ...`: the package run by this interpreter, so cluster jobs need no
# install step). A param, not shell.prefix (which inside another workflow would be the
# user's rules' prefix too, jobshell.py) nor a global (which a module's shell commands do
# not see); untracked, as where the interpreter lives changes no output.
JOBS = Untracked(source_line(BUILD))


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
