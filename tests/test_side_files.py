"""The files published beside the archive: `<output>.sha256` (checked by `sha256sum -c`)
and `<output>.images.txt` (name@digest per exported name), checked against the archive."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest

from tests.imagefactory import LayoutEntry, make_image, write_oci_layout
from tests.workflowrun import export

pytestmark = pytest.mark.workflow

ONE = make_image([{"one": b"1"}, {"shared": b"s" * 3000}])
TWO = make_image([{"two": b"2"}, {"shared": b"s" * 3000}])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    entries = [LayoutEntry(ONE, ["docker.io/library/one:1", "example.com/one:latest"]), LayoutEntry(TWO, [])]
    return write_oci_layout(str(tmp_path_factory.mktemp("src") / "layout"), entries)


def published(work: str) -> tuple[str, str, str]:
    results = os.path.join(work, "results")
    return tuple(os.path.join(results, name) for name in ("images.tar", "images.tar.sha256", "images.tar.images.txt"))  # type: ignore[return-value]


def expected_image_list(archive: str, fmt: str) -> str:
    """From the archive itself: manifest.json's tags, with the image ID (format docker) or
    the digest of the OCI manifest whose config is that image's (format oci)."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        manifests = {}  # config digest -> manifest digest
        for member in tar.getmembers():
            if fmt == "oci" and member.name.startswith("blobs/sha256/") and member.size < 10_000:
                try:
                    document = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                except ValueError:
                    continue
                if isinstance(document, dict) and "digest" in (document.get("config") or {}):
                    manifests[document["config"]["digest"]] = "sha256:" + member.name.rsplit("/", 1)[-1]
    lines = []
    for entry in manifest:
        image_id = "sha256:" + entry["Config"].rsplit("/", 1)[-1].removesuffix(".json")
        digest = manifests[image_id] if fmt == "oci" else image_id
        lines += [f"{tag}@{digest}" for tag in entry["RepoTags"] or []] or [digest]
    return "".join(line + "\n" for line in lines)


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_side_files_describe_the_archive(source: str, tmp_path, fmt: str) -> None:
    works = [str(tmp_path / "a"), str(tmp_path / "b" / "elsewhere")]
    for work in works:
        os.makedirs(work)
        export(work, sources=[source], images=["one:1", "example.com/one", TWO.image_id], format=fmt)
    archive, checksum, images = published(works[0])
    check = subprocess.run(
        ["sha256sum", "-c", os.path.basename(checksum)], cwd=os.path.dirname(archive), capture_output=True, text=True
    )
    assert check.returncode == 0 and check.stdout == "images.tar: OK\n", check.stdout + check.stderr
    with open(images) as handle:
        listed = handle.read()
    assert listed == expected_image_list(archive, fmt)
    assert listed.splitlines()[:2] == [
        f"one:1@{listed.split('@')[1].split()[0]}",
        f"example.com/one:latest@{listed.split('@')[1].split()[0]}",
    ]
    # deterministic: another directory gives the same files
    for mine, theirs in zip(published(works[0]), published(works[1]), strict=True):
        with open(mine, "rb") as a, open(theirs, "rb") as b:
            assert a.read() == b.read(), mine


def test_side_files_can_be_turned_off(source: str, tmp_path) -> None:
    work = str(tmp_path)
    export(work, sources=[source], images=["one:1"], side_files=[])
    assert os.listdir(os.path.join(work, "results")) == ["images.tar"]
    export(work, sources=[source], images=["one:1"], side_files=["sha256"])
    assert sorted(os.listdir(os.path.join(work, "results"))) == ["images.tar", "images.tar.sha256"]
