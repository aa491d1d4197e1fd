# format oci: one OCI manifest per image, and index.json naming them.


rule oci_manifest:
    input:
        lambda wc: PIPELINE.oci_manifest_inputs(wc.image),
    output:
        f"{BUILD}/oci/manifests/{{image}}.json",
    log:
        f"{BUILD}/logs/oci/{{image}}.log",
    benchmark:
        f"{BUILD}/benchmarks/oci/{{image}}.tsv"
    wildcard_constraints:
        image="[0-9a-f]{64}",
    localrule: True
    conda:
        ENV
    params:
        recipe=lambda wc: PIPELINE.oci_manifest_recipe(wc.image),
    shell:
        "tarexport oci-manifest --recipe {params.recipe:q} --output {output:q} 2> >(tee {log:q} >&2)"


rule oci_index:
    input:
        # one entry per tag, in request order: (file, media type, full name, tag)
        entries=PIPELINE.plan_file("index-entries.json"),
        manifests=[entry[0] for entry in PIPELINE.oci_index_entries()],
    output:
        f"{BUILD}/oci/index.json",
    log:
        f"{BUILD}/logs/oci/index.log",
    benchmark:
        f"{BUILD}/benchmarks/oci/index.tsv"
    localrule: True
    conda:
        ENV
    shell:
        "tarexport oci-index --entries {input.entries:q} --output {output:q} 2> >(tee {log:q} >&2)"


# With `platforms: all`: a multi-platform index over our manifests, one per source index.
rule oci_image_index:
    input:
        lambda wc: PIPELINE.oci_image_index_inputs(wc.index),
    output:
        f"{BUILD}/oci/indexes/{{index}}.json",
    log:
        f"{BUILD}/logs/oci/index-{{index}}.log",
    benchmark:
        f"{BUILD}/benchmarks/oci/index-{{index}}.tsv"
    wildcard_constraints:
        index="[0-9a-f]{64}",
    localrule: True
    conda:
        ENV
    params:
        recipe=lambda wc: PIPELINE.oci_image_index_recipe(wc.index),
    shell:
        "tarexport oci-image-index --recipe {params.recipe:q} --output {output:q} 2> >(tee {log:q} >&2)"
