# The target: assemble the archive from the tracked files, written aside and renamed.


rule export:
    default_target: True
    input:
        PIPELINE.archive_inputs(),
    output:
        OUTPUT,
    params:
        build_dir=BUILD,
    log:
        f"{BUILD}/logs/export.log",
    localrule: True
    shell:
        "{TAREXPORT} assemble --build-dir {params.build_dir:q} --output {output:q} 2> >(tee {log:q} >&2)"
