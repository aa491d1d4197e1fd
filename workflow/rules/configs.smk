# One job per image: its config bytes exactly as in the source, stored by image ID.


rule image_config:
    input:
        lambda wc: ancient(PIPELINE.config_source_file(wc.image)),
    output:
        f"{BUILD}/configs/{{image}}.json",
    params:
        recipe=lambda wc: PIPELINE.config_recipe(wc.image),
    log:
        f"{BUILD}/logs/configs/{{image}}.log",
    wildcard_constraints:
        image="[0-9a-f]{64}",
    localrule: True
    shell:
        "{TAREXPORT} config --recipe {params.recipe:q} --output {output:q} 2> >(tee {log:q} >&2)"
