"""Planning grows linearly with what a source lists: tags of one image, and indexes that
name the same children many times over. Checked by counting reads (each manifest and
index once) and by a bound far under what the quadratic paths took (3,000 tags: 12 s,
30,000: about 20 minutes; now 0.6 s and 6 s, measured on the 2-core CI machine)."""

from __future__ import annotations

import json
import os
import time

import pytest

from tarexport.sources import containers
from tarexport.startup import prepare
from tests.imagefactory import LayoutEntry, make_image, sha, write_oci_layout
from tests.workflowrun import ROOT

pytestmark = pytest.mark.unit

SCHEMA = os.path.join(ROOT, "schemas", "config.schema.yaml")
INDEX = "application/vnd.oci.image.index.v1+json"


def counted_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    original = containers.DirectoryContainer.read_small

    def read_small(self: containers.DirectoryContainer, member: str, *args: object, **kwargs: object) -> bytes:
        reads.append(member)
        return original(self, member, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(containers.DirectoryContainer, "read_small", read_small)
    return reads


def test_five_thousand_tags_of_one_image(tmp_path, monkeypatch) -> None:
    image = make_image([{"a": b"A"}])
    count = 5_000
    layout = write_oci_layout(
        str(tmp_path / "layout"), [LayoutEntry(image, [f"docker.io/library/many:t{i}" for i in range(count)])]
    )
    reads = counted_reads(monkeypatch)
    start = time.perf_counter()
    pipeline = prepare({"sources": [layout], "images": ["many"]}, SCHEMA, str(tmp_path))
    elapsed = time.perf_counter() - start
    (planned,) = pipeline.plan.images
    assert len(planned.tags) == count
    assert len(reads) == 3, reads[:10]  # index.json, the manifest and the config, once each
    assert elapsed < 10, f"{elapsed:.1f} s for {count} tags"  # it was 35 s, growing as the square


def test_indexes_naming_one_index_many_times_are_read_once(tmp_path, monkeypatch) -> None:
    """Each level lists the level below 12 times (as many platforms): 12^4 paths to walk
    without memory, 7 documents to read with it."""
    image = make_image([{"a": b"A"}])
    layout = write_oci_layout(str(tmp_path / "layout"), [LayoutEntry(image, [])])
    with open(os.path.join(layout, "index.json")) as handle:
        descriptor = json.load(handle)["manifests"][0]
    descriptor.pop("annotations", None)
    for _ in range(4):
        child = dict(descriptor, platform={"os": "linux", "architecture": "amd64"})
        data = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [child] * 12}).encode()
        with open(os.path.join(layout, "blobs", "sha256", sha(data).split(":")[1]), "wb") as handle:
            handle.write(data)
        descriptor = {"mediaType": INDEX, "digest": sha(data), "size": len(data)}
    descriptor["annotations"] = {"io.containerd.image.name": "docker.io/library/nested:1"}
    with open(os.path.join(layout, "index.json"), "w") as handle:
        json.dump({"schemaVersion": 2, "manifests": [descriptor]}, handle)
    reads = counted_reads(monkeypatch)
    config = {"sources": [layout], "images": ["nested:1"], "platforms": "all"}
    pipeline = prepare(config, SCHEMA, str(tmp_path))
    assert [p.image.image_id for p in pipeline.plan.images] == [image.image_id]
    assert len(reads) == 7, reads  # index.json, 4 indexes, the manifest, the config
