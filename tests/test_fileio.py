"""Atomic writes: the whole file at its path, or nothing, and no temporary left behind."""

from __future__ import annotations

import errno
import os

import pytest

from tarexport.errors import TarexportError
from tarexport.fileio import atomic_link, atomic_output

pytestmark = pytest.mark.unit


def leftovers(directory) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".part")]


def test_a_finished_write_is_renamed_into_place_with_a_fixed_mode(tmp_path) -> None:
    old_umask = os.umask(0o077)
    try:
        with atomic_output(str(tmp_path / "out")) as out:
            out.write(b"data")
    finally:
        os.umask(old_umask)
    assert (tmp_path / "out").read_bytes() == b"data"
    assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o644
    assert leftovers(tmp_path) == []


def test_a_failed_body_leaves_nothing_and_its_error_goes_on(tmp_path) -> None:
    with pytest.raises(ValueError, match="boom"), atomic_output(str(tmp_path / "out")) as out:
        out.write(b"partial")
        raise ValueError("boom")
    assert os.listdir(tmp_path) == []


def test_an_os_error_becomes_one_line_naming_the_file(tmp_path) -> None:
    full = pytest.raises(TarexportError, match=r"cannot write .*out \(No space left on device\)")
    with full, atomic_output(str(tmp_path / "out")):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert os.listdir(tmp_path) == []


def test_linking_onto_the_same_file_leaves_no_temporary(tmp_path) -> None:
    source = tmp_path / "blob"
    source.write_bytes(b"layer")
    os.link(source, tmp_path / "stored")  # a stored layer already linked to this blob
    with open(source, "rb") as handle:
        link = atomic_link.attempt(handle, str(tmp_path / "stored"))
        assert link is not None
        with link:
            pass
    assert os.path.samefile(source, tmp_path / "stored")
    assert leftovers(tmp_path) == []


def test_a_killed_attempts_temporary_is_removed_and_no_other_files(tmp_path) -> None:
    own = tmp_path / ".out.4242.0badcafe.part"  # what a killed attempt at `out` left
    other = tmp_path / ".out.b.4243.0badcafe.part"  # `out.b`'s: its writer may be running
    own.write_bytes(b"partial")
    other.write_bytes(b"partial")
    with atomic_output(str(tmp_path / "out")) as out:
        out.write(b"data")
    assert not own.exists() and other.exists()
    assert (tmp_path / "out").read_bytes() == b"data"


def test_many_writes_into_one_directory_list_it_once(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linear: the planner writes thousands of files into one directory (listing it at each
    write cost 28 s at 8,000 files)."""
    listed: list[str] = []
    real_listdir = os.listdir

    def counting_listdir(path: str) -> list[str]:
        listed.append(str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", counting_listdir)
    for index in range(200):
        with atomic_output(str(tmp_path / "plan" / f"image-{index}.json")) as out:
            out.write(b"{}")
    assert listed == [str(tmp_path / "plan")]
    assert len(real_listdir(tmp_path / "plan")) == 200
