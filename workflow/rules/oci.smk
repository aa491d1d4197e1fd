# format oci: one OCI manifest per image, and index.json naming them.


# Included for format oci only (its rule_files): the format is its own rules' plan.
OCI = PIPELINE.export_format


rule oci_manifest:
    input:
        lambda wc: OCI.manifest_inputs(wc.image),
    output:
        buildpaths.oci_manifest(BUILD, "{image}"),
    log:
        buildpaths.log(BUILD, "oci", "{image}"),
    benchmark:
        buildpaths.benchmark(BUILD, "oci", "{image}")
    wildcard_constraints:
        image="[0-9a-f]{64}",
    localrule: True
    params:
        jobs=JOBS,
        recipe=lambda wc: OCI.manifest_recipe(wc.image),
    shell:
        "{params.jobs} tarexport oci-manifest --recipe {params.recipe:q} --output {output:q} 2> >(tee {log:q} >&2)"


rule oci_index:
    input:
        # one entry per tag, in request order: (file, media type, full name, tag)
        entries=PIPELINE.plan_file("index-entries.json"),
        manifests=[entry.path for entry in OCI.index_entries()],
    output:
        buildpaths.oci_index(BUILD),
    log:
        buildpaths.log(BUILD, "oci", "index"),
    benchmark:
        buildpaths.benchmark(BUILD, "oci", "index")
    localrule: True
    params:
        jobs=JOBS,
    shell:
        "{params.jobs} tarexport oci-index --entries {input.entries:q} --output {output:q} 2> >(tee {log:q} >&2)"


# With `platforms: all`: a multi-platform index over our manifests, one per source index.
rule oci_image_index:
    input:
        lambda wc: OCI.image_index_inputs(wc.index),
    output:
        buildpaths.oci_image_index(BUILD, "{index}"),
    log:
        buildpaths.log(BUILD, "oci", "index-{index}"),
    benchmark:
        buildpaths.benchmark(BUILD, "oci", "index-{index}")
    wildcard_constraints:
        index="[0-9a-f]{64}",
    localrule: True
    params:
        jobs=JOBS,
        recipe=lambda wc: OCI.image_index_recipe(wc.index),
    shell:
        "{params.jobs} tarexport oci-image-index --recipe {params.recipe:q} --output {output:q} 2> >(tee {log:q} >&2)"
