# `snakemake lock`: what each requested name resolves to, written to `lockfile` without
# downloading a layer. Its bytes are decided with the plan (lockfile.py); the job copies
# them, so an unchanged lock is left untouched (its plan file is the same file).

if PIPELINE.writes_lock:

    rule lock:
        input:
            local(PIPELINE.plan_file("lock.json")),
        output:
            # the user's file (committed with a release), also under remote storage
            local(PIPELINE.settings.lockfile),
        log:
            buildpaths.log(BUILD, "lock", "lock"),
        localrule: True
        shell:
            "cp {input:q} {output:q} 2> {log:q}"

else:

    rule lock:
        log:
            buildpaths.log(BUILD, "lock", "refused"),
        localrule: True
        params:
            why=PIPELINE.lock_refusal,
        shell:
            "echo {params.why:q} | tee {log:q} >&2; exit 1"
