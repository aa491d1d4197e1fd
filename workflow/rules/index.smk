# manifest.json and repositories, which every docker-save archive has. Their content is
# decided with the plan and kept in build/plan/ (rewritten only when it changes), so a
# changed image list or tag re-runs these jobs only.


rule manifest_json:
    input:
        PIPELINE.plan_file("manifest.json"),
    output:
        f"{BUILD}/{FORMAT}/manifest.json",
    log:
        f"{BUILD}/logs/{FORMAT}/manifest.log",
    benchmark:
        f"{BUILD}/benchmarks/{FORMAT}/manifest.tsv"
    localrule: True
    conda:
        ENV
    shell:
        "cp {input:q} {output:q} 2> >(tee {log:q} >&2)"


rule repositories:
    input:
        PIPELINE.plan_file("repositories"),
    output:
        f"{BUILD}/{FORMAT}/repositories",
    log:
        f"{BUILD}/logs/{FORMAT}/repositories.log",
    benchmark:
        f"{BUILD}/benchmarks/{FORMAT}/repositories.tsv"
    localrule: True
    conda:
        ENV
    shell:
        "cp {input:q} {output:q} 2> >(tee {log:q} >&2)"
