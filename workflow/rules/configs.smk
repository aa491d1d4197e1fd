# One job per image: its config bytes exactly as in the source, stored by image ID. The
# plan has read and checked them: the shell writes them, unless they are too big for a
# command line or not text, when the job reads the source again.


rule image_config:
    output:
        f"{BUILD}/configs/{{image}}.json",
    log:
        f"{BUILD}/logs/configs/{{image}}.log",
    benchmark:
        f"{BUILD}/benchmarks/configs/{{image}}.tsv"
    wildcard_constraints:
        image="[0-9a-f]{64}",
    localrule: True
    conda:
        ENV
    params:
        # untracked (see Untracked): the image, for messages; where its bytes are
        context=lambda wc: PIPELINE.config_context(wc.image),
        source=lambda wc: PIPELINE.config_source(wc.image),
        text=lambda wc: PIPELINE.config_text(wc.image),
        writer=lambda wc: "shell" if str(PIPELINE.config_text(wc.image)) else "python",
        recipe=lambda wc: PIPELINE.config_recipe(wc.image),
    shell:
        "if [ {params.writer} = shell ]; then printf %s {params.text:q} > {output:q};"
        " else tarexport config --recipe {params.recipe:q} --source {params.source:q} --context {params.context:q}"
        " --output {output:q} 2> >(tee {log:q} >&2); fi"
