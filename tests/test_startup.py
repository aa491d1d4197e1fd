"""What the Snakefile gets when parsed: a plan, or a FailedPlan that removes an archive of
another configuration only in a real run, and only once the write paths were checked."""

from __future__ import annotations

import contextlib
import os
import resource
import time
import tracemalloc
from collections.abc import Iterator

import pytest
import yaml

from tarexport import buildpaths
from tarexport.errors import TarexportError
from tarexport.fileio import write_plan_record
from tarexport.pipeline import Pipeline
from tarexport.startup import FailedPlan, checked_settings, plan_export
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


def alias_bomb(levels: int = 9, width: int = 10) -> list:
    """A YAML "billion laughs" of a few hundred bytes: `l1: [*l0, *l0, ...]` and so on, a
    value of width**levels strings, which PyYAML loads as a few shared lists."""
    lines = ["l0: &l0 [" + ", ".join(['"x"'] * width) + "]"]
    lines += [f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * width) + "]" for n in range(1, levels)]
    text = "\n".join(lines)
    assert len(text) < 1000
    return yaml.safe_load(text)[f"l{levels - 1}"]


@contextlib.contextmanager
def capped(seconds: float, megabytes: int) -> Iterator[None]:
    """Fail, rather than take the shared machine's memory, when the block passes `megabytes`
    of Python allocations (an address-space limit, lifted afterwards) or `seconds`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * resource.getpagesize()
    cap = in_use + (512 << 20)
    lowest = [limit for limit in (soft, hard) if limit != resource.RLIM_INFINITY]
    resource.setrlimit(resource.RLIMIT_AS, (min([cap, *lowest]), hard))
    tracemalloc.start()
    started = time.monotonic()
    try:
        yield
    finally:
        elapsed, (_, peak) = time.monotonic() - started, tracemalloc.get_traced_memory()
        tracemalloc.stop()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert peak < megabytes << 20, f"peak {peak >> 20} MiB"


@pytest.mark.parametrize("key", ["platform", "sources", "images", "side_files", "not_a_setting"])
def test_an_alias_bomb_is_refused_in_bounded_time_and_memory(work: str, key: str) -> None:
    config = {"sources": ["src"], "images": ["app:1"], key: alias_bomb()}
    with capped(seconds=5, megabytes=20), pytest.raises(TarexportError) as refused:
        checked_settings(config, SCHEMA, work)
    assert str(refused.value) == (
        f"config key {key}: more than 50000 values in the configuration (a YAML alias counts at each use);"
        " list fewer, without aliases"
    )


def test_an_alias_bomb_stops_the_snakefile_at_once(work: str) -> None:
    """Snakemake turns the whole configuration into JSON for its run header before a target
    is asked for: the refusal cannot wait for the target as a FailedPlan does."""
    with capped(seconds=5, megabytes=20), pytest.raises(SystemExit) as stopped:
        plan_export({"sources": ["src"], "images": ["app:1"], "anchors": alias_bomb()}, SCHEMA, work)
    assert str(stopped.value).startswith("tarexport: error: config key anchors: more than 50000 values")
    assert os.path.isfile("results/images.tar")  # nothing removed


def test_deep_nesting_is_refused(work: str) -> None:
    deep: list = ["x"]
    for _ in range(40):
        deep = [deep]
    with pytest.raises(TarexportError, match=r"^config key platform: nested deeper than 16 levels"):
        checked_settings({"sources": ["src"], "images": ["app:1"], "platform": deep}, SCHEMA, work)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"platform": "x" * 100_000}, "config key platform: does not match '^[a-z0-9]+/"),
        ({"format": "y" * 100_000}, "config key format: a string is not one of ['docker', 'oci']"),
        ({"platform": [["linux/amd64"] * 100] * 100}, "config key platform: a list is not of type 'string'"),
        ({"side_files": ["sha256", "sha256"]}, "config key side_files: lists one item twice"),
        (
            {"k\n" * 5000: 1},
            "config key (top level): unknown key ('k\\nk\\nk\\nk\\nk\\nk\\nk\\nk\\nk\\nk\\nk\\nk\\nk\\nk",
        ),
        ({"format": "tgz"}, "config key format: 'tgz' is not one of ['docker', 'oci']"),  # a short value, quoted
    ],
)
def test_errors_never_quote_a_long_value(work: str, setting: dict, expected: str) -> None:
    with pytest.raises(TarexportError) as refused:
        checked_settings({"sources": ["src"], "images": ["app:1"], **setting}, SCHEMA, work)
    assert str(refused.value).startswith(expected)
    assert len(str(refused.value)) < 200 and "\n" not in str(refused.value)


def test_unique_items_are_checked_in_linear_time(work: str) -> None:
    """jsonschema compares every pair of items that do not sort (numbers and a string)."""
    started = time.monotonic()
    with pytest.raises(TarexportError, match=r"^config key side_files\[0\]: 0 is not of type 'string'"):
        checked_settings({"sources": ["src"], "images": ["app:1"], "side_files": [*range(20_000), "a"]}, SCHEMA, work)
    assert time.monotonic() - started < 5
