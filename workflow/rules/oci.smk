# format oci: one OCI manifest per image, and index.json naming them.


# Included for format oci only (its rule_files): the format is its own rules' plan.
OCI = PIPELINE.export_format
# Recipes name build files relative to the build directory; each job is given the one it
# sees (under remote storage, staged copies under .snakemake/storage/), known from its own
# output's path (untracked: where it is staged changes no output).
STAGED_BUILD = lambda wc, output: Untracked(
    buildpaths.build_dir_of(os.path.dirname(output[0]))
)


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
        build_dir=STAGED_BUILD,
    shell:
        "{params.jobs} tarexport oci-manifest --recipe {params.recipe:q} --build-dir {params.build_dir:q} --output {output:q} 2> >(tee {log:q} >&2)"


rule oci_index:
    input:
        # one entry per tag, in request order: (file, media type, full name, tag)
        entries=local(PIPELINE.plan_file("index-entries.json")),
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
        build_dir=lambda wc, output: Untracked(buildpaths.build_dir_of(output[0])),
    shell:
        "{params.jobs} tarexport oci-index --entries {input.entries:q} --build-dir {params.build_dir:q} --output {output:q} 2> >(tee {log:q} >&2)"


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
        build_dir=STAGED_BUILD,
    shell:
        "{params.jobs} tarexport oci-image-index --recipe {params.recipe:q} --build-dir {params.build_dir:q} --output {output:q} 2> >(tee {log:q} >&2)"


# With `platforms: all`: an attestation manifest kept, as the source holds it, by digest.
rule oci_attestation:
    input:
        local(buildpaths.plan_file(BUILD, "oci-attestation-{manifest}.json")),
    output:
        buildpaths.oci_attestation(BUILD, "{manifest}"),
    log:
        buildpaths.log(BUILD, "oci", "attestation-{manifest}"),
    wildcard_constraints:
        manifest="[0-9a-f]{64}",
    localrule: True
    shell:
        "cp {input:q} {output:q} 2> {log:q}"
