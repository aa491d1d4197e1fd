"""`Parent` in manifest.json: kept from docker-save sources exactly where Docker would write it
again after loading them (the parent in the same archive, the link one its loader accepts)."""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from tarexport.formats.saveindex import parent_link
from tests.imagefactory import Image, make_config, make_layer, write_docker_archive, write_oci_layout
from tests.workflowrun import export, snakemake, write_config

BASE_LAYER, CHILD_LAYER, OTHER_LAYER = make_layer({"a": b"a"}), make_layer({"c": b"c"}), make_layer({"o": b"o"})
PARENT = Image([BASE_LAYER], make_config([BASE_LAYER], created="2024-01-01T00:00:00Z"))
CHILD = Image([BASE_LAYER, CHILD_LAYER], make_config([BASE_LAYER, CHILD_LAYER], created="2024-01-01T00:00:00Z"))
# same layers, another history: Docker's loader refuses the link (and with it the whole load)
STRANGER = Image([OTHER_LAYER], make_config([OTHER_LAYER], created="2023-05-05T00:00:00Z"))


def history(*entries: dict[str, object]) -> bytes:
    return json.dumps({"rootfs": {"diff_ids": []}, "history": list(entries)}).encode()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("child", "parent", "kept"),
    [
        (history(), history(), True),  # no history on either side: history is not required
        (history({"created_by": "a"}, {"created_by": "b"}), history({"created_by": "a"}), True),
        (history({"created_by": "a"}, {"created_by": "b"}, {}), history({"created_by": "a"}), False),  # two more
        (history({"created_by": "a"}), history({"created_by": "a"}), False),  # not one more
        (history({"created_by": "x"}, {"created_by": "b"}), history({"created_by": "a"}), False),
        # Go's key matching and its decoded values, not the JSON text
        (history({"Created_By": "a", "extra": 1}, {}), history({"created_by": "a"}), True),
        (history({"created": "2024-01-01T00:00:00.000Z"}, {}), history({"created": "2024-01-01T00:00:00Z"}), True),
        # the same instant in another offset is another Go value to reflect.DeepEqual
        (history({"created": "2024-01-01T01:00:00+01:00"}, {}), history({"created": "2024-01-01T00:00:00Z"}), False),
        (history({"empty_layer": "yes"}, {}), history({}), False),  # Docker cannot decode it
    ],
)
def test_a_link_is_kept_where_dockers_loader_keeps_it(child: bytes, parent: bytes, kept: bool) -> None:
    assert parent_link(child, parent) is kept


def manifest(work: str) -> list[dict[str, object]]:
    with tarfile.open(os.path.join(work, "results", "images.tar")) as archive:
        return json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]


def manifest_text(work: str) -> bytes:
    with tarfile.open(os.path.join(work, "results", "images.tar")) as archive:
        return archive.extractfile("manifest.json").read()  # type: ignore[union-attr]


@pytest.fixture
def linked(tmp_path) -> str:
    images = [(PARENT, ["parent:1"]), (CHILD, ["child:1"]), (STRANGER, ["stranger:1"])]
    return write_docker_archive(str(tmp_path / "linked.tar"), images, parents={CHILD.image_id: PARENT.image_id})


@pytest.mark.workflow
@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_a_parent_exported_with_its_child_is_linked(linked: str, tmp_path, fmt: str) -> None:
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[linked], images=["child:1", "parent:1"], format=fmt)
    # after Layers, before any LayerSources, as Go's encoder writes manifestItem
    text = manifest_text(work)
    assert text.count(b'"Parent":') == 1
    assert f'],"Parent":"{PARENT.image_id}"}}'.encode() in text
    assert [item.get("Parent") for item in manifest(work)] == [PARENT.image_id, None]


@pytest.mark.workflow
def test_a_child_exported_without_its_parent_is_not_linked(linked: str, tmp_path) -> None:
    work = str(tmp_path)
    export(work, sources=[linked], images=["child:1", "stranger:1"])
    assert b'"Parent"' not in manifest_text(work)


@pytest.mark.workflow
def test_links_docker_would_refuse_or_drop_are_not_written(tmp_path) -> None:
    images = [(PARENT, ["parent:1"]), (CHILD, ["child:1"]), (STRANGER, ["stranger:1"])]
    parents = {
        CHILD.image_id: STRANGER.image_id,  # its history is not the child's first entry
        PARENT.image_id: "sha256:" + "0" * 64,  # not in the archive
        STRANGER.image_id: "not an image ID",
    }
    source = write_docker_archive(str(tmp_path / "bad-links.tar"), images, parents=parents)
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[source], images=["child:1", "parent:1", "stranger:1"])
    assert b'"Parent"' not in manifest_text(work)


@pytest.mark.workflow
def test_a_parent_that_is_not_a_string_is_refused_with_one_line(tmp_path) -> None:
    source = write_docker_archive(str(tmp_path / "odd.tar"), [(CHILD, ["child:1"])], parents={CHILD.image_id: 7})
    work = str(tmp_path / "work")
    os.makedirs(work)
    run = snakemake(work, configfile=write_config(work, sources=[source], images=["child:1"]))
    lines = [line for line in run.output.splitlines() if line.startswith("tarexport: error:")]
    assert run.returncode != 0 and "Traceback" not in run.output
    assert "Parent is not a string" in lines[0] and "odd.tar" in lines[0], lines


@pytest.mark.workflow
def test_oci_layouts_carry_no_parent(tmp_path) -> None:
    """An OCI layout has no such relation: nothing to keep."""
    from tests.imagefactory import LayoutEntry

    layout = write_oci_layout(str(tmp_path / "layout"), [LayoutEntry(PARENT, ["p:1"]), LayoutEntry(CHILD, ["c:1"])])
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[layout], images=["p:1", "c:1"])
    assert b'"Parent"' not in manifest_text(work)
