"""Planning grows linearly with what a source lists and what is asked for: tags of one
image, many images, indexes that name the same children many times over. Checked by
counting operations, not seconds: reads (each manifest and index once), and the work done
planning N and 2N of something (Python operations in the planning modules, and reads of a
Reference's fields, which every comparison and hash of a name makes), which must double,
not quadruple. A quadratic path once took 175 s to plan 30,000 tags of one image (now
under a second); counting finds one at a hundred.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import pytest

import tarexport
from tarexport.exportformats import OciExport
from tarexport.reference import Reference
from tarexport.sidefiles import image_digests, image_list
from tarexport.sources import containers
from tarexport.startup import prepare
from tests.imagefactory import (
    Image,
    LayoutEntry,
    make_config,
    make_image,
    make_layer,
    sha,
    write_docker_archive,
    write_multiplatform_layout,
    write_oci_layout,
)
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
    assert len(reads) == 4, reads[:10]  # oci-layout, index.json, the manifest and the config, once each
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
    assert len(reads) == 8, reads  # oci-layout, index.json, 4 indexes, the manifest, the config


# -------- operations counted while planning N and 2N of something

# where planning happens (source reading, JSON decoding and tar writing are not counted:
# their work per image does not depend on how many images there are)
PLANNING_MODULES = (
    "plan.py",
    "lockfile.py",
    "exportcontext.py",
    "exportformats.py",
    "pipeline.py",
    "sidefiles.py",
    "formats/docker_legacy.py",
    "formats/oci.py",
    "formats/saveindex.py",
)
# linear work doubles; what compares each item with the others grows four times
GROWTH_BOUND = 2.3


@dataclass
class Operations:
    python: int = 0  # bytecode instructions run in the planning modules
    reference_reads: int = 0  # reads of Reference.name/.tag/.digest: its __eq__, __hash__, filters


class _CountedField:
    """A Reference field read through a counter (a data descriptor on the class comes before
    the instance's own value, so every read, also in the generated __eq__ and __hash__, counts)."""

    def __init__(self, name: str, operations: Operations):
        self.name, self.operations = name, operations

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        self.operations.reference_reads += 1
        return instance.__dict__[self.name]

    def __set__(self, instance: object, value: object) -> None:  # the frozen dataclass's __init__
        instance.__dict__[self.name] = value


@contextmanager
def counted() -> Iterator[Operations]:
    operations = Operations()
    package = os.path.dirname(tarexport.__file__)
    traced = {os.path.join(package, name) for name in PLANNING_MODULES}

    def each_operation(frame: FrameType, event: str, arg: object) -> Callable[..., Any]:
        if event == "opcode":
            operations.python += 1
        return each_operation

    def each_call(frame: FrameType, event: str, arg: object) -> Callable[..., Any] | None:
        if frame.f_code.co_filename not in traced:
            return None
        frame.f_trace_opcodes = True
        return each_operation

    previous = sys.gettrace()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("name", "tag", "digest"):
            patch.setattr(Reference, name, _CountedField(name, operations), raising=False)
        sys.settrace(each_call)
        try:
            yield operations
        finally:
            sys.settrace(previous)


def _plan(config: dict[str, Any], workdir: str) -> Operations:
    """Operations to plan the export and write its plan files (manifest.json, repositories,
    the lock, the OCI index's entries), to ask for each kept index's inputs and recipe, and
    to list the images for `<output>.images.txt` (format docker: no build file is read)."""
    with counted() as operations:
        pipeline = prepare(config, SCHEMA, workdir)
        pipeline.write_plan_files()
        assert pipeline.plan_digest
        oci = pipeline.export_format
        if isinstance(oci, OciExport):
            for index_hex in oci.image_indexes():
                oci.image_index_inputs(index_hex)
                oci.image_index_recipe(index_hex)
        else:
            images = pipeline.summary_images()
            assert image_list(images, image_digests(images, "docker", pipeline.context.build_dir))
    return operations


def _one_image_tags(workdir: str, count: int, requests: str) -> dict[str, Any]:
    image = make_image([{"a": b"A"}])
    layout = write_oci_layout(
        os.path.join(workdir, "layout"), [LayoutEntry(image, [f"docker.io/library/many:t{i}" for i in range(count)])]
    )
    with open(os.path.join(layout, "index.json")) as handle:
        digest = json.load(handle)["manifests"][0]["digest"]
    wanted = {
        "name": ["many"],  # every tag of the repository
        "tags": [f"many:t{i}" for i in range(count)],
        "pins": [f"many:t{i}@{digest}" for i in range(count)],
    }[requests]
    return {"sources": [layout], "images": wanted}


def _docker_save_tags(workdir: str, count: int) -> dict[str, Any]:
    image = make_image([{"a": b"A"}])
    archive = write_docker_archive(os.path.join(workdir, "save.tar"), [(image, [f"many:t{i}" for i in range(count)])])
    return {"sources": [archive], "images": ["many"]}


def _many_images(workdir: str, count: int, requests: str) -> dict[str, Any]:
    """`count` images sharing a base layer, each with two tags in its own repository."""
    base = make_layer({"base": b"B"})
    images = [Image([base], make_config([base], config={"Cmd": [f"/bin/app{i}"]})) for i in range(count)]
    names = [[f"docker.io/library/repo{i}:v1", f"docker.io/library/repo{i}:v2"] for i in range(count)]
    layout = write_oci_layout(
        os.path.join(workdir, "layout"), [LayoutEntry(image, n) for image, n in zip(images, names, strict=True)]
    )
    with open(os.path.join(layout, "index.json")) as handle:
        digests = {d["annotations"]["io.containerd.image.name"]: d["digest"] for d in json.load(handle)["manifests"]}
    wanted = {
        "names": [f"repo{i}" for i in range(count)],
        "pins": [f"repo{i}:v1@{digests[names[i][0]]}" for i in range(count)],
        "id prefixes": [image.image_id[len("sha256:") :][:16] for image in images],
    }[requests]
    return {"sources": [layout], "images": wanted}


def _indexes(workdir: str, count: int, shape: str) -> dict[str, Any]:
    """Multi-platform indexes kept whole: one named by `count` tags, or `count` of them named
    by five tags each (each asked for by its repository)."""
    root = os.path.join(workdir, "layout")
    base = make_layer({"base": b"B"})
    tops = []
    for k in range(1 if shape == "one" else count):
        platforms = {
            f"linux/{arch}": Image([base], make_config([base], architecture=arch, config={"Cmd": [f"/app{k}"]}))
            for arch in ("amd64", "arm64")
        }
        write_multiplatform_layout(root, platforms, f"docker.io/library/idx{k}:v1", attestations=True)
        with open(os.path.join(root, "index.json")) as handle:
            top = json.load(handle)["manifests"][0]
        tags = range(count) if shape == "one" else range(5)
        tops += [dict(top, annotations={"io.containerd.image.name": f"docker.io/library/idx{k}:t{i}"}) for i in tags]
    with open(os.path.join(root, "index.json"), "w") as handle:
        json.dump({"schemaVersion": 2, "manifests": tops}, handle)
    wanted = ["idx0"] if shape == "one" else [f"idx{k}" for k in range(count)]
    return {"sources": [root], "images": wanted, "platforms": "all", "format": "oci"}


SHAPES: dict[str, tuple[int, Callable[[str, int], dict[str, Any]]]] = {
    # name -> (N, the configuration planning N of it)
    "tags of one image, by repository": (120, lambda w, n: _one_image_tags(w, n, "name")),
    "tags of one image, each asked for": (120, lambda w, n: _one_image_tags(w, n, "tags")),
    "tags of one image, each pinned": (120, lambda w, n: _one_image_tags(w, n, "pins")),
    "tags of one image in a docker-save archive": (120, _docker_save_tags),
    "images, by repository": (50, lambda w, n: _many_images(w, n, "names")),
    "images, pinned": (50, lambda w, n: _many_images(w, n, "pins")),
    "images, by ID prefix": (50, lambda w, n: _many_images(w, n, "id prefixes")),
    "tags of one kept index": (120, lambda w, n: _indexes(w, n, "one")),
    "kept indexes": (40, lambda w, n: _indexes(w, n, "many")),
}
# planned again from the lock (lock_mode: frozen), where that takes other paths
FROZEN = (
    "tags of one image, by repository",
    "tags of one image, each pinned",
    "images, by ID prefix",
    "tags of one kept index",
    "kept indexes",
)


@pytest.mark.parametrize(
    ("shape", "lock_mode"), [(shape, "update") for shape in SHAPES] + [(shape, "frozen") for shape in FROZEN]
)
def test_planning_twice_as_much_is_twice_the_work(tmp_path, shape: str, lock_mode: str) -> None:
    size, configure = SHAPES[shape]
    counts = []
    for n in (size, 2 * size):
        workdir = str(tmp_path / str(n))
        os.makedirs(workdir)
        config = configure(workdir, n) | {"lock_mode": "update", "lockfile": os.path.join(workdir, "images.lock")}
        if lock_mode == "frozen":  # planned again from the lock: each request as locked
            pipeline = prepare(config, SCHEMA, workdir)
            pipeline.write_plan_files()
            with open(pipeline.plan_file("lock.json"), "rb") as plan, open(config["lockfile"], "wb") as lock:
                lock.write(plan.read())
            config["lock_mode"] = "frozen"
        counts.append(_plan(config, workdir))
    small, large = counts
    assert large.python <= GROWTH_BOUND * small.python, (
        f"{shape}: {small.python} operations for {size}, {large.python} for {2 * size}"
    )
    assert large.reference_reads <= GROWTH_BOUND * small.reference_reads, (
        f"{shape}: {small.reference_reads} Reference reads for {size}, {large.reference_reads} for {2 * size}"
    )
