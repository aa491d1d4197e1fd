"""Regenerate the bundled example sources (deterministic; run from the repository root).

    python examples/make_examples.py

Writes examples/oci-layout (an OCI image layout, gzip layers) and
examples/app-archive.tar (a docker-save archive), used by config/config.yaml.
"""

from __future__ import annotations

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.imagefactory import Image, LayoutEntry, make_config, make_layer, write_docker_archive, write_oci_layout  # noqa: E402


def main() -> None:
    base_layers = [make_layer({"etc/os-release": b"NAME=example\n"}), make_layer({"usr/share/doc": b"docs\n" * 100})]
    base = Image(base_layers, make_config(base_layers, config={"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"]}))
    app_v1_layers = [*base_layers, make_layer({"app/app": b"app 1.0\n"})]
    app_v1 = Image(app_v1_layers, make_config(app_v1_layers, config={"Entrypoint": ["/app/app"]}))
    app_v2_layers = [*base_layers, make_layer({"app/app": b"app 2.0\n"})]
    app_v2 = Image(app_v2_layers, make_config(app_v2_layers, config={"Entrypoint": ["/app/app"]}))
    layout = os.path.join(HERE, "oci-layout")
    shutil.rmtree(layout, ignore_errors=True)
    write_oci_layout(
        layout,
        [
            LayoutEntry(base, ["docker.io/example/base:1.0"]),
            LayoutEntry(app_v1, ["docker.io/example/app:1.0"]),
        ],
    )
    write_docker_archive(os.path.join(HERE, "app-archive.tar"), [(app_v2, ["example/app:2.0"])])


if __name__ == "__main__":
    main()
