"""`snakemake --report`: the archive's summary, as a release engineer reads it, checked
against the archive itself."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import sys
import tarfile
from collections import Counter

import pytest

from tests.workflowrun import ROOT, SNAKEFILE, export, run_measured, sha256_file

pytestmark = pytest.mark.workflow

SOURCES = [os.path.join(ROOT, "examples", "oci-layout"), os.path.join(ROOT, "examples", "app-archive.tar")]
IMAGES = ["example/base:1.0", "example/app"]


def summary_in(report: str) -> str:
    """The summary the report embeds (as a data URI), as text."""
    with open(report, encoding="utf-8") as handle:
        page = handle.read()
    (encoded,) = re.findall(
        r"data:text/html;charset=utf8;filename=summary-[0-9a-f]{16}\.html;base64,([A-Za-z0-9+/=]+)", page
    )
    text = base64.b64decode(encoded).decode()
    text = re.sub(r"<style>.*?</style>", "", text)
    text = re.sub(r"</t[dh]>", " | ", text)
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


@pytest.mark.parametrize("target", [[], ["export"]])
def test_the_report_summarizes_the_archive(tmp_path, target: list[str]) -> None:
    work = str(tmp_path)
    export(work, sources=SOURCES, images=IMAGES)
    report = os.path.join(work, "report.html")
    command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, *target]
    run = run_measured([*command, "--configfile", os.path.join(work, "config.yaml"), "--report", report], work, 600)
    assert run.returncode == 0, run.output[-3000:]
    assert "Missing metadata" not in run.output  # one warning per file, not shown
    text = " ".join(summary_in(report).split())
    archive = os.path.join(work, "results", "images.tar")
    size = os.path.getsize(archive)
    assert f"results/images.tar | {size / 1000:.1f} KB ({size} bytes) | sha256:{sha256_file(archive)}" in text
    # each image, from the archive's own manifest.json: names, ID, layers, size
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        members = {member.name: member for member in tar.getmembers()}
    # a layer.tar Docker writes as a link to another v1 directory's counts by its target
    stored = {
        name: os.path.normpath(os.path.join(os.path.dirname(name), m.linkname)) if m.issym() else name
        for name, m in members.items()
    }
    sizes = {name: members[stored[name]].size for name in members}
    for entry in manifest:
        image_id = entry["Config"].removesuffix(".json")
        total = sizes[entry["Config"]] + sum(sizes[layer] for layer in dict.fromkeys(entry["Layers"]))
        names = " / ".join(entry["RepoTags"])
        assert f"{names} | {image_id[:12]} | {len(entry['Layers'])} | {total / 1000:.1f} KB ({total} bytes)" in text
    uses = Counter(stored[layer] for entry in manifest for layer in dict.fromkeys(entry["Layers"]))
    saved = sum(sizes[layer] * (count - 1) for layer, count in uses.items())
    shared = sum(count > 1 for count in uses.values())
    assert f"{shared} of {len(uses)} distinct layers are used by more than one image" in text
    assert f"({saved} bytes)" in text and saved > 0
    # and how long each kind of job took
    for stage in ("layers", "image files", "archive"):
        assert re.search(rf"{stage} \| \d+ \| \d+\.\d\d s", text), text
