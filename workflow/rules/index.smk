# manifest.json and repositories, which every docker-save archive has. Their content is
# decided with the plan and kept in build/plan/ (rewritten only when it changes), so a
# changed image list or tag re-runs these jobs only. Plan files are local() inputs: under
# remote storage they stay where parsing wrote them (these jobs run on the main host).


rule manifest_json:
    input:
        local(PIPELINE.plan_file("manifest.json")),
    output:
        buildpaths.manifest(BUILD, FORMAT),
    log:
        buildpaths.log(BUILD, FORMAT, "manifest"),
    benchmark:
        buildpaths.benchmark(BUILD, FORMAT, "manifest")
    localrule: True
    shell:
        "cp {input:q} {output:q} 2> >(tee {log:q} >&2)"


rule repositories:
    input:
        local(PIPELINE.plan_file("repositories")),
    output:
        buildpaths.repositories(BUILD, FORMAT),
    log:
        buildpaths.log(BUILD, FORMAT, "repositories"),
    benchmark:
        buildpaths.benchmark(BUILD, FORMAT, "repositories")
    localrule: True
    shell:
        "cp {input:q} {output:q} 2> >(tee {log:q} >&2)"
