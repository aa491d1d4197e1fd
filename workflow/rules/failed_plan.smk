# The configuration cannot be exported (PLANNED says why). Any target ends in the one-line
# error; a real run (not a dry run) first removes the archive of an earlier configuration.


rule export:
    default_target: True
    input:
        lambda wildcards: PLANNED.refuse(workflow.dryrun, OUTPUT_OBJECT),


# A file asked for by name (results/images.tar, a layer) gets the same error.
rule refuse_file_target:
    input:
        lambda wildcards: PLANNED.refuse(workflow.dryrun, OUTPUT_OBJECT),
    output:
        "{path}",
