# The legacy `docker save` files: one job per v1 layer directory, one per index file.


rule v1_layer_dir:
    input:
        lambda wc: PIPELINE.v1_inputs(wc.v1),
    output:
        json=f"{BUILD}/docker/{{v1}}/json",
        version=f"{BUILD}/docker/{{v1}}/VERSION",
    log:
        f"{BUILD}/logs/docker/{{v1}}.log",
    wildcard_constraints:
        v1="[0-9a-f]{64}",
    localrule: True
    conda:
        ENV
    params:
        recipe=lambda wc: PIPELINE.v1_recipe(wc.v1),
    shell:
        "tarexport v1-dir --recipe {params.recipe:q}"
        " --json {output.json:q} --version {output.version:q} 2> >(tee {log:q} >&2)"


rule manifest_json:
    output:
        f"{BUILD}/docker/manifest.json",
    log:
        f"{BUILD}/logs/docker/manifest.log",
    localrule: True
    conda:
        ENV
    params:
        # The content itself is the recipe: a changed image list re-runs this job only.
        content=PIPELINE.plan.manifest,
    run:
        from tarexport.fileio import write_atomically

        write_atomically(output[0], params.content)


rule repositories:
    output:
        f"{BUILD}/docker/repositories",
    log:
        f"{BUILD}/logs/docker/repositories.log",
    localrule: True
    conda:
        ENV
    params:
        content=PIPELINE.plan.repositories or b"",
    run:
        from tarexport.fileio import write_atomically

        write_atomically(output[0], params.content)
