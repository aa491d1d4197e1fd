"""The export on a real single-node SLURM cluster (Debian's slurmctld, slurmd and munge,
started here on 127.0.0.1) through snakemake-executor-plugin-slurm: the same bytes as a
local run, each layer job submitted with the resources it asks for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.engines import SlurmCluster, require
from tests.imagefactory import LayoutEntry, make_image, write_oci_layout
from tests.workflowrun import SNAKEFILE, export, sha256_file, write_config

pytestmark = [pytest.mark.engines, pytest.mark.slurm]

ONE = make_image([{"shared": b"s" * 40_000}, {"one": b"1"}])
TWO = make_image([{"shared": b"s" * 40_000}, {"two": b"2"}])


def test_the_export_on_slurm_gives_a_local_runs_bytes(tmp_path) -> None:
    for tool in ("slurmctld", "slurmd", "munged", "sinfo"):
        require(tool)
    layout = write_oci_layout(
        str(tmp_path / "layout"), [LayoutEntry(ONE, ["docker.io/library/one:1"]), LayoutEntry(TWO, ["two:1"])]
    )
    config = {"sources": [layout], "images": ["one:1", "two:1"]}
    local, cluster_work = str(tmp_path / "local"), str(tmp_path / "cluster")
    for work in (local, cluster_work):
        os.makedirs(work)
    export(local, **config)
    cluster = SlurmCluster()
    try:
        command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", cluster_work, "export"]
        command += ["--configfile", write_config(cluster_work, **config), *cluster.snakemake_options()]
        done = subprocess.run(command, cwd=cluster_work, env=cluster.env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        # the layer jobs ran on the cluster (the small jobs are local rules), one core and 256 MB each
        jobs = cluster.jobs()
        assert len(jobs) == 3, jobs  # one, two and the layer they share
        assert all(job.split()[1:] == ["COMPLETED", "256M", "1"] for job in jobs), jobs
    finally:
        cluster.stop()
    archive = os.path.join("results", "images.tar")
    assert sha256_file(os.path.join(cluster_work, archive)) == sha256_file(os.path.join(local, archive))
