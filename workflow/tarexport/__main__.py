"""Entry points of the workflow's jobs: `python -m tarexport COMMAND ...`.

Each job gets its whole recipe on the command line and touches only its declared
files, so jobs run the same in one process tree or on cluster nodes.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import TarexportError


def _layer(args: argparse.Namespace) -> None:
    from .layers import DEFAULT_MAX_EXPANSION, materialize
    from .sources.base import BlobRef

    recipe = {**json.loads(args.source), **json.loads(args.recipe)}
    blob = BlobRef.from_json(recipe["blob"])
    materialize(
        blob,
        recipe["diff_id"],
        args.output,
        recipe["label"],
        args.context,
        keep_compressed=args.keep,
        max_expansion=recipe.get("max_expansion", DEFAULT_MAX_EXPANSION),
    )


def _oci_manifest(args: argparse.Namespace) -> None:
    from .jobs import write_oci_manifest

    write_oci_manifest(json.loads(args.recipe), args.output)


def _oci_image_index(args: argparse.Namespace) -> None:
    from .jobs import write_oci_image_index

    write_oci_image_index(json.loads(args.recipe), args.output)


def _oci_index(args: argparse.Namespace) -> None:
    from .jobs import write_oci_index

    with open(args.entries, encoding="utf-8") as handle:
        write_oci_index([tuple(entry) for entry in json.load(handle)], args.output)


def _config(args: argparse.Namespace) -> None:
    from .jobs import copy_config

    copy_config({**json.loads(args.source), **json.loads(args.recipe)}, args.output, args.context)


def _v1_dir(args: argparse.Namespace) -> None:
    from .jobs import write_v1_dir

    write_v1_dir(json.loads(args.recipe), args.json, args.version)


def _assemble(args: argparse.Namespace) -> None:
    from .jobs import assemble

    assemble(args.build_dir, args.output, args.format, args.compression, args.verify == "full")
    if args.plan_record:
        from .fileio import write_atomically

        write_atomically(args.plan_record, args.plan.encode() + b"\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tarexport")
    commands = parser.add_subparsers(dest="command", required=True)
    layer = commands.add_parser("layer", help="materialize one uncompressed layer")
    layer.add_argument("--recipe", required=True)
    layer.add_argument("--source", required=True, help="where to read it (JSON); not part of its identity")
    layer.add_argument("--output", required=True)
    layer.add_argument("--context", default="", help="the images using it, for messages")
    layer.add_argument("--keep", action="store_true", help="store the blob as it is, after checking it")
    layer.set_defaults(run=_layer)
    config = commands.add_parser("config", help="copy one image config, verified")
    config.add_argument("--recipe", required=True)
    config.add_argument("--source", required=True, help="where to read it (JSON); not part of its identity")
    config.add_argument("--output", required=True)
    config.add_argument("--context", default="", help="the image, for messages")
    config.set_defaults(run=_config)
    v1_dir = commands.add_parser("v1-dir", help="write a v1 layer directory's json and VERSION")
    v1_dir.add_argument("--recipe", required=True)
    v1_dir.add_argument("--json", required=True)
    v1_dir.add_argument("--version", required=True)
    v1_dir.set_defaults(run=_v1_dir)
    manifest = commands.add_parser("oci-manifest", help="write an image's OCI manifest")
    manifest.add_argument("--recipe", required=True)
    manifest.add_argument("--output", required=True)
    manifest.set_defaults(run=_oci_manifest)
    index = commands.add_parser("oci-index", help="write index.json from its planned entries")
    index.add_argument("--entries", required=True, help="JSON file: [file, media type, full name, tag] per entry")
    index.add_argument("--output", required=True)
    index.set_defaults(run=_oci_index)
    image_index = commands.add_parser("oci-image-index", help="write a multi-platform index over our manifests")
    image_index.add_argument("--recipe", required=True)
    image_index.add_argument("--output", required=True)
    image_index.set_defaults(run=_oci_image_index)
    assemble = commands.add_parser("assemble", help="write the archive from the build directory")
    assemble.add_argument("--build-dir", required=True)
    assemble.add_argument("--output", required=True)
    assemble.add_argument("--format", choices=["docker", "oci"], default="docker")
    assemble.add_argument("--compression", choices=["none", "gzip", "zstd"], default="none")
    assemble.add_argument("--plan", default="", help="digest of the plan the archive is made from")
    assemble.add_argument("--plan-record", default="", help="where to record it")
    assemble.add_argument("--verify", choices=["quick", "full"], default="quick", help="how stored layers are checked")
    assemble.set_defaults(run=_assemble)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except TarexportError as exc:
        print(f"tarexport: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions, a build file removed behind our back
        print(f"tarexport: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
