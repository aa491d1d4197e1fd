# One job per distinct layer: the verified, uncompressed tar stored by diff_id.
# Content-addressed, so it is reused by every later run and every image. No tracked inputs:
# where the blob is read from (a file, a registry) is untracked, as the bytes are checked
# against their digests; moving a layout or changing a registry's timeout re-runs nothing
# (a source in object storage is an input only to be staged, its time ignored).


rule layer_tar:
    input:
        # a source given as a storage URL (s3://.../app.tar): staged for the job wherever it
        # runs, its time ignored (the bytes are checked against their digests)
        source=fixed_signature(
            lambda wc: [
                ancient(storage(url, keep_local=True))
                for url in LAYERS.storage_sources(wc.diff)
            ]
        ),
    output:
        layer=buildpaths.layer(BUILD, "{diff}"),
        # its size and sampled blocks when made: the archive step notices later changes
        record=record_path(buildpaths.layer(BUILD, "{diff}")),
    log:
        buildpaths.log(BUILD, "layers", "{diff}"),
    wildcard_constraints:
        diff="[0-9a-f]{64}",
    priority: fixed_signature(lambda wc: LAYERS.priority(wc.diff))
    resources:
        # a registry download: at most `parallel_downloads` at once (set in the Snakefile)
        registry_downloads=fixed_signature(lambda wc: LAYERS.downloads(wc.diff)),
        # over 1 MiB: at most one per CPU (set in the Snakefile)
        big_layers=fixed_signature(lambda wc: LAYERS.is_big(wc.diff)),
        # what a cluster scheduler reserves for it (one core: the rule's default threads)
        mem_mb=LAYER_JOB_MEM_MB,
    params:
        jobs=JOBS,
        # tracked: what the job must produce
        recipe=fixed_signature(lambda wc: LAYERS.recipe(wc.diff)),
        # untracked (see Untracked): how, from where, and for which images (messages)
        command=fixed_signature(
            lambda wc, output: LAYERS.command(
                wc.diff,
                output.layer,
                # the rule's log (params see no `log`): beside the job's own outputs,
                # which under remote storage are staged copies, not under BUILD
                buildpaths.log(
                    buildpaths.build_dir_of(output.layer), "layers", wc.diff
                ),
            )
        ),
    shell:
        "{params.jobs} {params.command}"


# With `layers: keep`: the source's compressed blob as it is, stored by its digest,
# after checking it and its uncompressed content.
rule layer_blob:
    input:
        source=fixed_signature(
            lambda wc: [
                ancient(storage(url, keep_local=True))
                for url in KEPT_BLOBS.storage_sources(wc.blob)
            ]
        ),
    output:
        layer=buildpaths.blob(BUILD, "{blob}"),
        record=record_path(buildpaths.blob(BUILD, "{blob}")),
    log:
        buildpaths.log(BUILD, "blobs", "{blob}"),
    wildcard_constraints:
        blob="[0-9a-f]{64}",
    priority: fixed_signature(lambda wc: KEPT_BLOBS.priority(wc.blob))
    resources:
        # a registry download: at most `parallel_downloads` at once (set in the Snakefile)
        registry_downloads=fixed_signature(lambda wc: KEPT_BLOBS.downloads(wc.blob)),
        big_layers=fixed_signature(lambda wc: KEPT_BLOBS.is_big(wc.blob)),
        mem_mb=LAYER_JOB_MEM_MB,
    params:
        jobs=JOBS,
        # untracked (see Untracked): the images it serves, for messages; where its bytes are
        context=fixed_signature(lambda wc: KEPT_BLOBS.users(wc.blob)),
        source=fixed_signature(lambda wc: KEPT_BLOBS.source(wc.blob)),
        recipe=fixed_signature(lambda wc: KEPT_BLOBS.recipe(wc.blob)),
    shell:
        "{params.jobs} tarexport layer --keep --recipe {params.recipe:q} --source {params.source:q} --context {params.context:q} --output {output.layer:q} 2> >(tee {log:q} >&2)"
