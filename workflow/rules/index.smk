# manifest.json and repositories, which every docker-save archive has. Their content is
# decided with the plan and kept in build/plan/ (rewritten only when it changes), so a
# changed image list or tag re-runs these jobs only.


rule manifest_json:
    input:
        PIPELINE.plan_file("manifest.json"),
    output:
        f"{BUILD}/{FORMAT}/manifest.json",
    localrule: True
    shell:
        "cp {input:q} {output:q}"


rule repositories:
    input:
        PIPELINE.plan_file("repositories"),
    output:
        f"{BUILD}/{FORMAT}/repositories",
    localrule: True
    shell:
        "cp {input:q} {output:q}"
