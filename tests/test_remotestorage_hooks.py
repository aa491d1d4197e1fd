"""The storage steps the hooks run around the jobs (remotestorage.py) when the storage
fails: one line each, saying what was not done, and the run's own outcome stands. (Their
working paths run against SeaweedFS in test_remote_storage.py.)"""

from __future__ import annotations

import pytest

from tarexport.remotestorage import put_back, remove_stale_stored_output, written_archive

pytestmark = pytest.mark.unit


def unreachable(path: str) -> object:
    """A storage whose every object fails, as the S3 plugin does when its endpoint is gone."""
    raise RuntimeError("Could not connect to the endpoint URL: http://127.0.0.1:9/cache\n(details)")


def test_a_failing_storage_is_one_line_per_step_and_changes_no_outcome(tmp_path, capsys) -> None:
    assert remove_stale_stored_output("results/images.tar", "build/export-0.plan", "plan", unreachable) is False
    assert written_archive("results/images.tar", "build/export-0.plan", "plan", 0.0, unreachable) is None
    made = tmp_path / "repaired" / "layers" / "ab.tar"
    made.parent.mkdir(parents=True)
    made.write_bytes(b"layer")
    assert put_back(str(tmp_path / "repaired"), "build", unreachable) is None
    assert made.read_bytes() == b"layer"  # kept: nothing was uploaded
    lines = capsys.readouterr().err.splitlines()
    reason = "(Could not connect to the endpoint URL: http://127.0.0.1:9/cache)"
    assert lines == [
        f"tarexport: could not look in storage for an archive of another configuration {reason}",
        f"tarexport: could not read the archive's record in storage {reason}",
        f"tarexport: could not put the layers made again back into storage; a later run makes them again {reason}",
    ]
