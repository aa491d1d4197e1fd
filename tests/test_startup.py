"""What the Snakefile gets when parsed: a plan, or a FailedPlan that removes an archive of
another configuration only in a real run, and only once the write paths were checked."""

from __future__ import annotations

import os

import pytest

from tarexport import buildpaths
from tarexport.fileio import write_plan_record
from tarexport.pipeline import Pipeline
from tarexport.startup import FailedPlan, plan_export
from tests.imagefactory import LayoutEntry, make_image, write_oci_layout
from tests.workflowrun import ROOT

pytestmark = pytest.mark.unit

SCHEMA = os.path.join(ROOT, "schemas", "config.schema.yaml")
IMAGE = make_image([{"a": b"A"}])


@pytest.fixture
def work(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A work directory (Snakemake runs in it) holding a layout and our earlier archive."""
    write_oci_layout(str(tmp_path / "src"), [LayoutEntry(IMAGE, ["app:1"])])
    os.makedirs(tmp_path / "results")
    (tmp_path / "results" / "images.tar").write_bytes(b"an earlier archive")
    os.makedirs(tmp_path / "build")
    monkeypatch.chdir(tmp_path)
    # with a side file the earlier export published beside it
    (tmp_path / "results" / "images.tar.sha256").write_text("an earlier checksum\n")
    published = [str(tmp_path / "results" / "images.tar.sha256")]
    write_plan_record(record(), "earlier-plan", str(tmp_path / "results/images.tar"), "0" * 64, published)
    return str(tmp_path)


def record() -> str:
    """The plan record of results/images.tar, from the work directory (named by its absolute path)."""
    return buildpaths.plan_record("build", "results/images.tar")


def test_a_good_configuration_is_planned(work: str) -> None:
    assert isinstance(plan_export({"sources": ["src"], "images": ["app:1"]}, SCHEMA, work), Pipeline)


def test_a_failed_plan_removes_our_archive_only_in_a_real_run(work: str, capsys) -> None:
    failed = plan_export({"sources": ["src"], "images": ["app:2"]}, SCHEMA, work)
    assert isinstance(failed, FailedPlan) and failed.stale_output == "results/images.tar"
    with pytest.raises(SystemExit, match=r"^tarexport: error: no such image: app:2"):
        failed.refuse(dry_run=True)
    assert os.path.isfile("results/images.tar")
    with pytest.raises(SystemExit):
        failed.refuse(dry_run=False)
    assert not os.path.exists("results/images.tar") and not os.path.exists(record())
    assert not os.path.exists("results/images.tar.sha256")  # what was published with it goes too
    assert "tarexport: removed results/images.tar" in capsys.readouterr().err


def test_a_file_that_is_not_ours_is_kept(work: str) -> None:
    os.replace(os.path.join(work, "results", "images.tar"), "moved.tar")
    with open("results/images.tar", "wb") as handle:
        handle.write(b"someone else's")
    failed = plan_export({"sources": ["src"], "images": ["app:2"]}, SCHEMA, work)
    assert isinstance(failed, FailedPlan)
    with pytest.raises(SystemExit):
        failed.refuse(dry_run=False)
    assert os.path.isfile("results/images.tar")


@pytest.mark.parametrize(
    "config",
    [
        {"sources": ["src"], "images": ["app:1"], "format": "tarball"},  # invalid settings
        {"sources": ["src", "results/images.tar"], "images": ["app:1"]},  # the output is a source
        {"sources": ["src"], "images": ["app:1"], "build_dir": "b{x}"},
    ],
)
def test_nothing_is_removed_before_the_write_paths_passed(work: str, config: dict) -> None:
    failed = plan_export(config, SCHEMA, work)
    assert isinstance(failed, FailedPlan) and failed.stale_output == ""
    with pytest.raises(SystemExit):
        failed.refuse(dry_run=False)
    assert os.path.isfile("results/images.tar")
