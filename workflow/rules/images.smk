# One job per image for its small files: its config and, in format docker, the v1 layer
# directories (`json`, `VERSION`) it is the first in request order to need. Their bytes
# are decided with the plan and kept in a plan file named by its content, which the job
# unpacks: no Python start, and a changed image re-runs only its own job.

for _batch in PIPELINE.image_files:

    rule:
        name:
            _batch.rule
        input:
            local(_batch.plan_file),
        output:
            _batch.outputs,
        log:
            buildpaths.log(BUILD, "images", _batch.rule),
        localrule: True
        params:
            # the build directory, from an output: wherever outputs are staged
            build_dir=lambda wildcards, output: os.path.dirname(
                os.path.dirname(output[0])
            ),
        shell:
            "tar -x -m -f {input:q} -C {params.build_dir:q} 2> {log:q}"
