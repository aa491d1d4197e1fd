# One job per image: its config bytes exactly as in the source, stored by image ID.


rule image_config:
    output:
        f"{BUILD}/configs/{{image}}.json",
    log:
        f"{BUILD}/logs/configs/{{image}}.log",
    wildcard_constraints:
        image="[0-9a-f]{64}",
    localrule: True
    conda:
        ENV
    params:
        # untracked (see Untracked): the image, for messages; where its bytes are
        context=lambda wc: PIPELINE.config_context(wc.image),
        source=lambda wc: PIPELINE.config_source(wc.image),
        recipe=lambda wc: PIPELINE.config_recipe(wc.image),
    shell:
        "tarexport config --recipe {params.recipe:q} --source {params.source:q} --context {params.context:q} --output {output:q} 2> >(tee {log:q} >&2)"
