# manifest.json and repositories, which every docker-save archive has; their content
# is the recipe, so a changed image list or tag re-runs these jobs only.


rule manifest_json:
    output:
        f"{BUILD}/{FORMAT}/manifest.json",
    log:
        f"{BUILD}/logs/{FORMAT}/manifest.log",
    localrule: True
    conda:
        ENV
    params:
        content=PIPELINE.manifest_json,
    run:
        from tarexport.fileio import write_atomically

        write_atomically(output[0], params.content)


rule repositories:
    output:
        f"{BUILD}/{FORMAT}/repositories",
    log:
        f"{BUILD}/logs/{FORMAT}/repositories.log",
    localrule: True
    conda:
        ENV
    params:
        content=PIPELINE.repositories or b"",
    run:
        from tarexport.fileio import write_atomically

        write_atomically(output[0], params.content)
