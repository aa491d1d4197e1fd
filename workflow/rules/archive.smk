# The target: assemble the archive from the tracked files, written aside and renamed.


rule export:
    default_target: True
    input:
        manifest=buildpaths.manifest(BUILD, FORMAT),
        files=PIPELINE.archive_inputs(),
        # the plan digest, in a file named by it (see pipeline._mark_current)
        plan_digest=local(PIPELINE.plan_file("archive.plan")),
        # the format's own metadata files (OCI manifests and indexes) the archive takes
        documents=local(PIPELINE.plan_file("archive-documents.json")),
        # the images the summary lists
        images=local(PIPELINE.plan_file("archive-images.json")),
        # the lock file, written first (lock_mode: update), and the provenance statement's plan
        lock=[local(path) for path in PIPELINE.side_inputs()["lock"]],
        provenance=[local(path) for path in PIPELINE.side_inputs()["provenance"]],
    output:
        archive=OUTPUT,
        # the plan the archive was made from; a later run with another plan removes a stale archive
        plan=PLAN_RECORD,
        # what `snakemake --report` shows: images, sizes, shared layers, the archive's sha256
        # published beside it: <output>.sha256, .images.txt, .provenance.json (side_files)
        side=list(PIPELINE.side_files.values()),
        summary=report(
            buildpaths.summary(BUILD, PLAN_DIGEST),
            caption="../report/summary.rst",
            category="Archive",
        ),
    log:
        os.path.join(BUILD, "logs", "export.log"),
    benchmark:
        os.path.join(BUILD, "benchmarks", "export.tsv")
    localrule: True
    params:
        jobs=JOBS,
        format=FORMAT,
        compression=PIPELINE.settings.compression,
        verify=PIPELINE.settings.verify_layers,
        plan=PLAN_DIGEST,
        # the side files to write (outputs above), and, untracked, this run's stage times
        # for the summary (none as a module)
        # (as this job sees them: staged copies under remote storage)
        more=lambda wildcards, output: Untracked(
            PIPELINE.assemble_options(STAGE_TIMES, list(output.side))
        ),
        # untracked: what made each stored layer, for making a damaged one again (repair.py)
        repairs=Untracked(lambda: PIPELINE.repair_options(REPAIRED)),
        # The build directory, derived from an input so that it holds wherever inputs are staged.
        build_dir=lambda wildcards, input: os.path.dirname(
            os.path.dirname(input.manifest)
        ),
    shell:
        "{params.jobs} tarexport assemble --format {params.format} --compression {params.compression} --verify {params.verify}"
        " --build-dir {params.build_dir:q} --output {output.archive:q} --plan {params.plan} --plan-record {output.plan:q} --documents {input.documents:q}"
        " --summary {output.summary:q} --images {input.images:q} {params.more} {params.repairs} 2> >(tee {log:q} >&2)"
