"""Entry points of the workflow's jobs: `python -m tarexport COMMAND --option value ...`.

Each job gets its whole recipe on the command line (or, past 16 KiB, a file under the
build directory named by its content) and touches only its declared files, so jobs run the
same in one process tree or on cluster nodes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .errors import TarexportError, error_line


def _recipe_text(args: dict[str, Any]) -> str:
    """The job's recipe: JSON text, or `@path` of a file holding it (a long one)."""
    text: str = args["recipe"]
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as handle:
            text = handle.read()
    return text


def _recipe(args: dict[str, Any]) -> Any:
    return json.loads(_recipe_text(args))


def _layer(args: dict[str, Any]) -> None:
    from .layers import run_layer_job

    run_layer_job(_recipe_text(args), args["source"], args["output"], args["context"], args["keep"])


def _oci_manifest(args: dict[str, Any]) -> None:
    from .jobs import write_oci_manifest
    from .recipes import ManifestRecipe

    write_oci_manifest(ManifestRecipe.from_json(_recipe(args)), args["output"], args["build-dir"])


def _oci_image_index(args: dict[str, Any]) -> None:
    from .jobs import write_oci_image_index
    from .recipes import platforms_from_json

    write_oci_image_index(*platforms_from_json(_recipe(args)), args["output"], args["build-dir"])


def _oci_index(args: dict[str, Any]) -> None:
    from .jobs import write_oci_index
    from .recipes import index_entries_from_json

    with open(args["entries"], encoding="utf-8") as handle:
        write_oci_index(index_entries_from_json(json.load(handle)), args["output"], args["build-dir"])


def _assemble(args: dict[str, Any]) -> None:
    from .jobs import assemble

    documents: list[str] = []
    if args["documents"]:
        with open(args["documents"], encoding="utf-8") as handle:
            documents = json.load(handle)
    started = time.monotonic()
    repair = None
    if args["repairs"]:
        from .repair import StoredLayerRepair

        repair = StoredLayerRepair(args["build-dir"], args["repairs"], args["repaired-to"])
    full = args["verify"] == "full"
    sha256 = assemble(
        args["build-dir"], args["output"], args["format"], args["compression"], full, documents, repair=repair
    )
    # the side files, then the record naming them (a stale archive takes them along)
    wanted = {"sha256": args["checksum"], "images": args["image-list"], "provenance": args["provenance"]}
    published = {kind: path for kind, path in wanted.items() if path}
    if published:
        from .sidefiles import write_side_files
        from .summary import read_summary_images

        images = read_summary_images(args["images"]) if args["images"] else []
        write_side_files(
            published, args["output"], sha256, images, args["format"], args["build-dir"], args["provenance-template"]
        )
    if args["plan-record"]:
        from .fileio import write_plan_record

        write_plan_record(args["plan-record"], args["plan"], args["output"], sha256, list(published.values()))
    if args["summary"]:
        from .summary import write_summary

        settings = f"format {args['format']}, compression {args['compression']}"
        own = {"jobs": 1, "seconds": round(time.monotonic() - started, 3)}
        size = os.path.getsize(args["output"])
        report = (args["summary"], args["images"], args["output"], size, sha256, settings, args["stages"], own)
        write_summary(*report, args["build-dir"])


# command: (function, required options, optional options with defaults, on/off flags, what it does)
COMMANDS: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...], dict[str, str], tuple[str, ...], str]] = {
    "layer": (_layer, ("recipe", "source", "output"), {"context": ""}, ("keep",), "materialize one layer"),
    "oci-manifest": (_oci_manifest, ("recipe", "output", "build-dir"), {}, (), "write an image's OCI manifest"),
    "oci-index": (_oci_index, ("entries", "output", "build-dir"), {}, (), "write index.json from its planned entries"),
    "oci-image-index": (_oci_image_index, ("recipe", "output", "build-dir"), {}, (), "write a multi-platform index"),
    "assemble": (
        _assemble,
        ("build-dir", "output"),
        {
            "format": "docker",
            "compression": "none",
            "plan": "",
            "plan-record": "",
            "verify": "quick",
            "documents": "",
            "summary": "",
            "images": "",
            "stages": "",
            "checksum": "",
            "image-list": "",
            "provenance": "",
            "provenance-template": "",
            "repairs": "",
            "repaired-to": "",
        },
        (),
        "write the archive from the build directory",
    ),
}
CHOICES = {"format": ("docker", "oci"), "compression": ("none", "gzip", "zstd"), "verify": ("quick", "full")}


class UsageError(Exception):
    pass


def parse(argv: list[str]) -> tuple[Callable[[dict[str, Any]], None], dict[str, Any]]:
    """`COMMAND --name value ... --flag`. Not argparse: every job is a new process, and
    argparse's import and set-up cost each of them about 5 ms."""
    if not argv or argv[0] not in COMMANDS:
        raise UsageError("a command is needed: " + "; ".join(f"{name} ({c[4]})" for name, c in COMMANDS.items()))
    run, required, optional, flags, _ = COMMANDS[argv[0]]
    options: dict[str, Any] = {**optional, **dict.fromkeys(flags, False)}
    rest = argv[1:]
    known = {"--" + name for name in (*required, *optional, *flags)}
    while rest:
        token = rest.pop(0)
        name = token[2:]
        if token not in known:
            raise UsageError(f"{argv[0]}: unexpected argument {token!r}")
        if name in flags:
            options[name] = True
        else:
            if not rest or rest[0] in known:
                raise UsageError(f"{argv[0]}: {token} needs a value")
            options[name] = rest.pop(0)
    missing = [name for name in required if name not in options]
    if missing:
        raise UsageError(f"{argv[0]}: --{missing[0]} is required")
    for name, allowed in CHOICES.items():
        if name in options and options[name] not in allowed:
            raise UsageError(f"--{name} must be one of {', '.join(allowed)}")
    return run, options


def main(argv: list[str] | None = None) -> int:
    try:
        run, options = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"tarexport: usage: {exc}", file=sys.stderr)
        return 2
    try:
        run(options)
    except (TarexportError, OSError) as exc:  # OSError: disk full, a build file removed behind our back
        print(error_line(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C reaches every job: Snakemake says it once
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
