# format docker: one job per v1 layer directory (`<v1id>/json` and `VERSION`). The json
# is known from the plan: the shell writes it, unless it is too big for a command line.


rule v1_layer_dir:
    input:
        lambda wc: PIPELINE.v1_inputs(wc.v1),
    output:
        json=f"{BUILD}/docker/{{v1}}/json",
        version=f"{BUILD}/docker/{{v1}}/VERSION",
    log:
        f"{BUILD}/logs/docker/{{v1}}.log",
    benchmark:
        f"{BUILD}/benchmarks/docker/{{v1}}.tsv"
    wildcard_constraints:
        v1="[0-9a-f]{64}",
    localrule: True
    conda:
        ENV
    params:
        text=lambda wc: PIPELINE.v1_text(wc.v1),
        writer=lambda wc: "shell" if PIPELINE.v1_text(wc.v1) else "python",
        recipe=lambda wc: PIPELINE.v1_recipe(wc.v1),
    shell:
        "if [ {params.writer} = shell ]; then printf %s {params.text:q} > {output.json:q}; printf 1.0 > {output.version:q};"
        " else tarexport v1-dir --recipe {params.recipe:q}"
        " --json {output.json:q} --version {output.version:q} 2> >(tee {log:q} >&2); fi"
