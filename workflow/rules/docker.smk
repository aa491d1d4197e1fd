# format docker: one job per v1 layer directory (`<v1id>/json` and `VERSION`).


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
