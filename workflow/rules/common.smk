# What every rule shares: build paths, job resources, the job command, and the hooks
# around a run. Included only when the plan succeeded (PIPELINE is set).

import logging
import time

from tarexport import buildpaths
from tarexport.exportcontext import Untracked
from tarexport.fileio import recorded_archive, remove_stale_output
from tarexport.jobshell import source_line
from tarexport.layerfiles import record_path
from tarexport.remotestorage import (
    put_back,
    remove_stale_stored_output,
    written_archive,
)
from tarexport.rulehooks import end_rate_limit_timers, fixed_signature
from tarexport.interrupts import InterruptLatch
from tarexport.screen import Screen, attach

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

# A layer job's memory, for cluster schedulers: it streams its blob through fixed-size
# buffers whatever the layer's size (measured peak of a whole export with its jobs: under
# 150 MB, benchmarks/results.md).
LAYER_JOB_MEM_MB = 256

# Every job's command starts with its params.jobs, which sources the shell functions it
# calls (`tarexport ...`: the package run by this interpreter, so cluster jobs need no
# install step). A param, not shell.prefix (which inside another workflow would be the
# user's rules' prefix too, jobshell.py) nor a global (which a module's shell commands do
# not see); untracked, as where the interpreter lives changes no output.
JOBS = Untracked(source_line(BUILD))


# A line per stage instead of Snakemake's block per job (screen.py), for a run of this
# workflow itself (not as a module of another) when Snakemake was not asked for its own
# detail: `-p`, `--verbose`, `--quiet` or a dry run keep Snakemake's screen as it is (the
# stage times, for the archive's summary, are kept either way).
STAGE_TIMES = ""
if workflow.modifier.is_main_snakefile():
    _output = workflow.output_settings
    STAGE_TIMES = os.path.abspath(buildpaths.stage_times(BUILD))
    _show = not (
        _output.dryrun or _output.printshellcmds or _output.verbose or _output.quiet
    )
    # Ctrl-C is raised again until Snakemake says it acts on it (interrupts.py).
    _latch = InterruptLatch()
    attach(
        logging.getLogger("snakemake.logging"),
        Screen(
            show=_show,
            record_to="" if _output.dryrun else STAGE_TIMES,
            on_terminating=_latch.handled if _latch.install() else None,
        ),
    )
_PARSED_AT = time.time()

# Under remote storage, stored layers the assembly found damaged and made again
# (repair.py) are left in REPAIRED and put back into storage when the run ends (it sees
# staged copies, and a job's inputs are never uploaded).
IN_STORAGE = OUTPUT_OBJECT is not None
REPAIRED = os.path.join(BUILD, "repaired") if IN_STORAGE else ""
PLAN_RECORD = buildpaths.plan_record(BUILD, OUTPUT, IN_STORAGE)


# An archive left by a run with another configuration must not survive a failed run
# (onstart runs only when jobs are about to run: never for -n or --lint).
onstart:
    if (
        remove_stale_stored_output(OUTPUT, PLAN_RECORD, PLAN_DIGEST, OUTPUT_OBJECT)
        if IN_STORAGE
        else remove_stale_output(OUTPUT, PLAN_RECORD, PLAN_DIGEST)
    ):
        print(
            f"tarexport: removed {OUTPUT}: made from another configuration",
            file=sys.stderr,
        )


onsuccess:
    end_rate_limit_timers()
    put_back(REPAIRED, BUILD, OUTPUT_OBJECT)
    # the last line: what was written (when this run wrote it)
    if IN_STORAGE:
        _written = written_archive(
            OUTPUT, PLAN_RECORD, PLAN_DIGEST, _PARSED_AT, OUTPUT_OBJECT
        )
        _where = OUTPUT_OBJECT(OUTPUT).query
    else:
        _written = recorded_archive(OUTPUT, PLAN_RECORD)
        if _written and os.path.getmtime(PLAN_RECORD) < _PARSED_AT:
            _written = None
        _where = OUTPUT
    if _written:
        print(
            f"tarexport: wrote {_where} ({_written[0]} bytes, {len(PIPELINE.plan.images)} images,"
            f" sha256:{_written[1]})",
            file=sys.stderr,
        )


onerror:
    end_rate_limit_timers()
    put_back(REPAIRED, BUILD, OUTPUT_OBJECT)
