"""The README's loader table, cell by cell, against the real clients.

Every archive kind we write (format x compression x one or several images) is given to
Docker 20.10 (`docker load`), podman (`podman load`), skopeo (`docker-archive:` and
`oci-archive:`) and containerd (`ctr images import`); each must do exactly what the table
between the `loader-table` markers in README.md says: load every image with its name and
config, or fail.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess

import pytest

from tests.engines import Containerd, DockerEngine, Podman, require
from tests.imagefactory import Image, LayoutEntry, make_config, make_layer, write_oci_layout
from tests.workflowrun import ROOT, export

pytestmark = pytest.mark.loaders

SHARED = make_layer({"shared": b"s" * 5000})
FIRST = Image([SHARED, make_layer({"one": b"1"})], b"")
FIRST.config = make_config(FIRST.layers, config={"Cmd": ["/one"]})
SECOND = Image([SHARED, make_layer({"two": b"2"})], b"")
SECOND.config = make_config(SECOND.layers, config={"Cmd": ["/two"]})
IMAGES = {
    "one": ("loaders/one:1", FIRST),
    "several": ("loaders/two:2", SECOND),
}  # tags differ: oci-archive names by tag alone
CLIENTS = ["docker load", "podman load", "skopeo docker-archive", "skopeo oci-archive", "ctr import"]
COLUMNS = [(compression, count) for compression in ("none", "gzip", "zstd") for count in ("1", "2+")]
KINDS = [(fmt, compression) for fmt in ("docker", "oci") for compression in ("none", "gzip", "zstd")]


def readme_claims() -> dict[tuple[str, str, str, str], bool]:
    """(client, format, compression, "1" or "2+") -> loads, from README.md's loader table."""
    with open(os.path.join(ROOT, "README.md")) as handle:
        text = handle.read()
    table = text.split("<!-- loader-table -->")[1]
    claims = {}
    for line in table.splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) != 8 or cells[0] not in CLIENTS:
            continue
        client, fmt, *marks = cells
        for (compression, count), mark in zip(COLUMNS, marks, strict=True):
            claims[(client, fmt, compression, count)] = mark == "yes"
    return claims


def loads(client: str, archive: str, names: list[str], engines: dict[str, object]) -> bool:
    """Did the client take every image from the archive under its name, config intact?"""
    wanted = {name: IMAGE_IDS[name] for name in names}
    try:
        if client == "docker load":
            docker = engines["docker"]
            assert isinstance(docker, DockerEngine)
            docker.docker("load", "-i", archive)
            try:
                found = {tag: image_id for image_id, tags in docker.images().items() for tag in tags}
            finally:
                for image_id in docker.images():
                    docker.docker("rmi", "-f", image_id)
            return all(found.get(name) == image_id for name, image_id in wanted.items())
        if client == "podman load":
            podman = Podman()
            try:
                podman.podman("load", "-i", archive)
                found = {n: i for i, names_ in podman.images().items() for n in names_}
            finally:
                podman.stop()
            return all(found.get("localhost/" + n, found.get("docker.io/" + n)) == i for n, i in wanted.items())
        if client.startswith("skopeo"):
            transport = client.split()[1]
            for name, image_id in wanted.items():
                ref = name if transport == "docker-archive" else name.rsplit(":", 1)[1]
                raw = subprocess.run(
                    ["skopeo", "inspect", "--raw", "--config", f"{transport}:{archive}:{ref}"], capture_output=True
                )
                if raw.returncode != 0 or "sha256:" + hashlib.sha256(raw.stdout).hexdigest() != image_id:
                    return False
            return True
        daemon = Containerd()
        try:
            daemon.ctr("images", "import", archive)
            found = daemon.images()
        finally:
            daemon.stop()
        return all("docker.io/" + name in found for name in wanted)
    except RuntimeError:
        return False


IMAGE_IDS = {name: image.image_id for name, image in IMAGES.values()}


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], str]:
    """(format, compression, "1" or "2+") -> an archive of that kind."""
    root = tmp_path_factory.mktemp("loader-table")
    source = write_oci_layout(
        str(root / "layout"), [LayoutEntry(image, ["docker.io/" + name]) for name, image in IMAGES.values()]
    )
    out = {}
    for fmt, compression in KINDS:
        for count, names in (("1", [IMAGES["one"][0]]), ("2+", [name for name, _ in IMAGES.values()])):
            work = str(root / f"{fmt}-{compression}-{len(names)}")
            os.makedirs(work)
            export(work, sources=[source], images=names, format=fmt, compression=compression)
            out[(fmt, compression, count)] = os.path.join(work, "results", "images.tar")
    return out


@pytest.mark.engines
def test_every_cell_of_the_readme_loader_table_is_what_the_client_does(archives) -> None:
    for tool in ("dockerd", "podman", "skopeo", "containerd"):
        require(tool)
    claims = readme_claims()
    assert len(claims) == len(CLIENTS) * len(KINDS) * 2, "the README's loader table lost a row"
    docker = DockerEngine()
    wrong = []
    try:
        for (client, fmt, compression, count), claimed in sorted(claims.items()):
            names = [IMAGES["one"][0]] if count == "1" else [name for name, _ in IMAGES.values()]
            actual = loads(client, archives[(fmt, compression, count)], names, {"docker": docker})
            if actual != claimed:
                wrong.append(
                    f"{client}, format {fmt}, {compression}, {count} image(s): README says"
                    f" {'yes' if claimed else 'no'}, the client says {'yes' if actual else 'no'}"
                )
    finally:
        docker.stop()
    assert not wrong, "\n".join(wrong)


@pytest.mark.unit
def test_the_config_comments_claim_nothing_the_table_does_not() -> None:
    with open(os.path.join(ROOT, "config", "config.yaml")) as handle:
        comment = handle.read().split("compression:")[0].rsplit("\n\n", 1)[-1]
    assert not re.search(r"reads all three", comment), comment
