"""The deterministic tar writer: Go-style USTAR headers, order, readers agree."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pathlib
import tarfile

import pytest

from tarexport.compressors import COMPRESSORS
from tarexport.errors import TarexportError
from tarexport.tarball import BLOCK, DOCKER_20, DOCKER_25, Entry, TarStyle, header, sort_key, write_tar
from tarexport.tarsinks import CompressingSink, DirectSink, Sink

pytestmark = pytest.mark.unit


def build(tmp_path, entries: list[Entry], style: TarStyle = DOCKER_20, compressor: object = None) -> bytes:
    out = tmp_path / "out.tar"
    with open(out, "wb") as handle:
        write_tar(entries, CompressingSink(handle, compressor) if compressor else Sink(handle), style)
    return out.read_bytes()


def sample(tmp_path) -> list[Entry]:
    data = tmp_path / "layer"
    data.write_bytes(os.urandom(1000))
    return [
        Entry("d", "dir", 1_700_000_000),
        Entry("d/VERSION", "file", 1_700_000_000, data=b"1.0"),
        Entry("d/layer.tar", "file", 1_700_000_000, path=str(data)),
        Entry("e/layer.tar", "symlink", 5, target="../d/layer.tar"),
        Entry("manifest.json", "file", 0, data=b"[]\n"),
    ]


def test_python_tarfile_reads_what_we_write(tmp_path) -> None:
    entries = sample(tmp_path)
    archive = build(tmp_path, entries)
    with tarfile.open(fileobj=io.BytesIO(archive)) as result:
        members = result.getmembers()
        assert [m.name for m in members] == ["d", "d/VERSION", "d/layer.tar", "e/layer.tar", "manifest.json"]
        assert [m.type for m in members] == [
            tarfile.DIRTYPE,
            tarfile.REGTYPE,
            tarfile.REGTYPE,
            tarfile.SYMTYPE,
            tarfile.REGTYPE,
        ]
        assert result.extractfile("d/layer.tar").read() == (tmp_path / "layer").read_bytes()  # type: ignore[union-attr]
        assert members[3].linkname == "../d/layer.tar"
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "root", "root")}
        assert [m.mtime for m in members] == [1_700_000_000] * 3 + [5, 0]
    # ends with exactly two zero blocks, no record padding (as Go's writer)
    assert archive.endswith(b"\0" * 1024) and len(archive) % BLOCK == 0
    # 5 headers; data blocks: VERSION 1, layer 2, manifest 1; end marker 2
    assert len(archive) == (5 + 1 + 2 + 1 + 2) * BLOCK


def test_header_fields_as_go_writes_them() -> None:
    block = header("dir/", 0o040755, 0, 1_700_000_000, b"5")
    assert block[100:108] == b"0040755\0"  # file-type bits kept, NUL-terminated
    assert block[108:124] == b"0000000\x000000000\0"
    assert block[124:136] == b"00000000000\0"
    assert block[148:156].endswith(b"\0 ")
    assert int(block[148:154], 8) == sum(block[:148]) + 8 * 32 + sum(block[156:])
    assert block[257:265] == b"ustar\x0000"
    assert block[329:345] == b"0000000\x000000000\0"


def test_same_entries_same_bytes(tmp_path) -> None:
    entries = sample(tmp_path)
    assert build(tmp_path, entries) == build(tmp_path, list(entries))


def test_long_names_use_the_ustar_prefix(tmp_path) -> None:
    name = "a" * 90 + "/" + "b" * 90
    archive = build(tmp_path, [Entry(name, "file", 0, data=b"x")])
    with tarfile.open(fileobj=io.BytesIO(archive)) as result:
        assert result.getnames() == [name]
    with pytest.raises(TarexportError):
        build(tmp_path, [Entry("c" * 300, "file", 0, data=b"x")])


def test_sort_key_puts_a_directory_before_its_contents() -> None:
    names = ["ab.json", "ab/json", "ab", "a/VERSION", "manifest.json", "ab/VERSION"]
    ordered = sorted((Entry(n, "file", 0) for n in names), key=sort_key)
    assert [e.name for e in ordered] == ["a/VERSION", "ab", "ab/VERSION", "ab/json", "ab.json", "manifest.json"]


def test_docker25_style_has_no_type_bits_or_owner_names(tmp_path) -> None:
    archive = build(tmp_path, sample(tmp_path), DOCKER_25)
    assert archive[100:108] == b"0000755\0"
    with tarfile.open(fileobj=io.BytesIO(archive)) as result:
        assert {(m.uname, m.gname) for m in result.getmembers()} == {("", "")}


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_compressed_output_is_the_same_tar_and_reproducible(tmp_path, kind: str) -> None:
    import zstandard

    entries = sample(tmp_path)
    plain = build(tmp_path, entries)
    first = build(tmp_path, entries, compressor=COMPRESSORS[kind].new())
    second = build(tmp_path, entries, compressor=COMPRESSORS[kind].new())
    assert first == second
    if kind == "gzip":
        assert first[4:8] == b"\0\0\0\0"  # no time in the header
        assert first[3] & 0x08 == 0  # and no file name
        assert gzip.decompress(first) == plain
    else:
        assert zstandard.ZstdDecompressor().decompressobj().decompress(first) == plain


def written_both_ways(directory, entries: list[Entry]) -> tuple[bytes, bytes, bool]:
    """The archive through the page cache and through DirectSink; whether O_DIRECT was used.
    Each sink's sha256 (hashed while writing, on its own thread) is checked against the bytes."""
    with open(os.path.join(directory, "cached.tar"), "wb") as handle:
        cached_sink = Sink(handle)
        write_tar(entries, cached_sink)
    with open(os.path.join(directory, "direct.tar"), "wb") as handle:
        direct = DirectSink.open(handle)
        direct_sink = direct or Sink(handle)
        write_tar(entries, direct_sink)
    read = [pathlib.Path(directory, name).read_bytes() for name in ("cached.tar", "direct.tar")]
    assert cached_sink.sha256() == hashlib.sha256(read[0]).hexdigest()
    assert direct_sink.sha256() == hashlib.sha256(read[1]).hexdigest()
    assert cached_sink.written == direct_sink.written == len(read[0])
    return read[0], read[1], direct is not None


def test_a_compressed_archive_is_hashed_as_written(tmp_path) -> None:
    data = tmp_path / "data"
    data.write_bytes(os.urandom(3 << 20))
    for name, compressor in COMPRESSORS.items():
        with open(tmp_path / name, "wb") as handle:
            sink = CompressingSink(handle, compressor.new())
            write_tar([Entry("layer.tar", "file", 0, path=str(data)), Entry("j", "file", 0, data=b"{}")], sink)
        assert sink.sha256() == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest(), name


SIZES = [0, 1, 4095, 4096, DirectSink.BUFFER - 512, DirectSink.BUFFER, 2 * DirectSink.BUFFER + 7]


@pytest.mark.parametrize("size", SIZES)
def test_writing_straight_to_disk_gives_the_same_bytes(tmp_path, size: int) -> None:
    data = tmp_path / "data"
    data.write_bytes(os.urandom(size))
    entries = [
        Entry("a", "dir", 0),
        Entry("a/layer.tar", "file", 0, path=str(data)),
        Entry("a/json", "file", 0, data=b"{}"),
        Entry("b/layer.tar", "file", 0, path=str(data)),
    ]
    cached, direct, used = written_both_ways(tmp_path, entries)
    assert used, "O_DIRECT was refused here; this test needs a disk-backed tmp_path"
    assert direct == cached
    assert len(direct) % BLOCK == 0


def test_where_o_direct_is_refused_the_page_cache_is_used(tmp_path, monkeypatch) -> None:
    import errno
    import fcntl

    real_fcntl = fcntl.fcntl

    def refusing(descriptor: int, command: int, *args: int) -> int:
        if command == fcntl.F_SETFL:  # as file systems without O_DIRECT answer
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(descriptor, command, *args)

    monkeypatch.setattr(fcntl, "fcntl", refusing)
    data = tmp_path / "data"
    data.write_bytes(os.urandom(10_000))
    cached, direct, used = written_both_ways(tmp_path, [Entry("layer.tar", "file", 0, path=str(data))])
    assert not used
    assert direct == cached


def test_a_file_that_shrinks_while_written_straight_to_disk_is_an_error(tmp_path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"x" * 100)
    with open(tmp_path / "out.tar", "wb") as handle:
        sink = DirectSink.open(handle)
        assert sink is not None
        with pytest.raises(TarexportError, match="shrank while being archived"):
            sink.copy_file(str(data), 200)


def test_numbers_past_eleven_octal_digits_go_into_pax_records_as_go_writes_them() -> None:
    """A `created` after 2242 (Docker keeps times up to 2262) and a layer over 8 GiB: the
    header field is zero and a PAX record before it holds the value (Go's archive/tar)."""
    from tarexport.tarball import pax_record

    late = 8835955200  # 2250-01-01T00:00:00Z
    written = header("0123/json", 0o100644, 5, late, b"0") + b"hello".ljust(BLOCK, b"\0") + bytes(2 * BLOCK)
    with tarfile.open(fileobj=io.BytesIO(written)) as archive:
        (member,) = archive.getmembers()
        assert (member.name, member.mtime, archive.extractfile(member).read()) == ("0123/json", late, b"hello")  # type: ignore[union-attr]
    extended, main = written[:BLOCK], written[2 * BLOCK : 3 * BLOCK]
    assert extended[:100].rstrip(b"\0") == b"0123/PaxHeaders.0/json" and extended[156:157] == b"x"
    assert written[BLOCK : 2 * BLOCK].rstrip(b"\0") == b"20 mtime=8835955200\n" == pax_record("mtime", str(late))
    assert main[136:148] == b"00000000000\0"  # the field Go leaves at zero
    directory = header("0123/", 0o40755, 0, late, b"5")
    assert directory[:100].rstrip(b"\0") == b"0123/PaxHeaders.0"
    huge = header("0123/layer.tar", 0o100644, 9 << 30, 0, b"0")
    assert huge[BLOCK : 2 * BLOCK].rstrip(b"\0") == b"19 size=9663676416\n"
    assert huge[2 * BLOCK + 124 : 2 * BLOCK + 136] == b"00000000000\0"
    # a record whose length gains a digit by counting itself
    assert pax_record("k", "v" * 93) == b"99 k=" + b"v" * 93 + b"\n"
    assert pax_record("k", "v" * 94) == b"101 k=" + b"v" * 94 + b"\n"


def test_compressed_archives_need_the_tested_library_version_unless_told() -> None:
    """Other library versions may give other bytes: refused by default, named in one line."""
    for compressor in COMPRESSORS.values():
        # the versions the requirements pin (zstandard bundles libzstd) and this machine has
        assert compressor.running_version() == compressor.tested_version
        compressor.check_version(accept_any=False)
        other = dataclasses.replace(compressor, tested_version="0.0.1")
        with pytest.raises(TarexportError) as refused:
            other.check_version(accept_any=False)
        assert str(refused.value) == (
            f"compression {compressor.name}: this machine's {compressor.library} is {compressor.running_version()}, "
            f"and archives are byte-reproducible with {compressor.library} 0.0.1 (tested); install that version, "
            "or set compressor_versions: any to accept other bytes"
        )
        other.check_version(accept_any=True)


def member_data(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as result:
        return {m.name: result.extractfile(m).read() for m in result.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.mark.parametrize("way", ["page cache, read back", "page cache, through", "direct", "gzip"])
def test_the_writer_hashes_each_checked_entry_from_the_bytes_it_writes(tmp_path, way: str) -> None:
    """Each entry with a `check` gets the sha256 of its data as it went into the archive
    (whatever the sink: the kernel's copy read back from the archive, a copy through this
    process, the direct buffer, the compressor's input), sizes across the direct buffer's
    edges; entries without one are not hashed."""
    sizes = [0, 1, 4096, DirectSink.BUFFER - 700, DirectSink.BUFFER + 3, 3 * DirectSink.BUFFER // 2]
    entries = [Entry("VERSION", "file", 0, data=b"1.0")]
    for number, size in enumerate(sizes):
        path = tmp_path / f"blob{number}"
        path.write_bytes(os.urandom(size))
        entries.append(Entry(f"blobs/{number}", "file", 0, path=str(path), check=("layer", "sha256:unused")))
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(5000))
    entries.append(Entry("json", "file", 0, path=str(plain)))
    out = tmp_path / "out.tar"
    with open(out, "wb") as handle:
        if way == "gzip":
            sink: Sink = CompressingSink(handle, COMPRESSORS["gzip"].new())
        elif way == "direct":
            direct = DirectSink.open(handle)
            assert direct is not None, "O_DIRECT was refused here; this test needs a disk-backed tmp_path"
            sink = direct
        else:
            sink = Sink(handle, readback=None if way == "page cache, read back" else "")
        write_tar(entries, sink)
    written = out.read_bytes()
    members = member_data(gzip.decompress(written) if way == "gzip" else written)
    digests = sink.entry_digests()
    assert digests == {
        entry.name: "sha256:" + hashlib.sha256(members[entry.name]).hexdigest() for entry in entries if entry.check
    }
    assert sink.sha256() == hashlib.sha256(written).hexdigest()  # the archive's own, unchanged


def test_the_digest_is_of_the_bytes_written_not_of_the_file_afterwards(tmp_path) -> None:
    """A stored file that changes once it was copied: the entry's digest is that of what the
    archive holds (a second read of the file would see the change and pass a damaged copy)."""
    path = tmp_path / "layer"
    first = os.urandom(3 << 20)
    path.write_bytes(first)
    for way in ("read back", "through", "direct", "gzip"):
        out = tmp_path / f"{way}.tar"
        with open(out, "wb") as handle:
            if way == "gzip":
                sink: Sink = CompressingSink(handle, COMPRESSORS["gzip"].new())
            elif way == "direct":
                sink = DirectSink.open(handle) or Sink(handle)
            else:
                sink = Sink(handle, readback=None if way == "read back" else "")
            sink.copy_file(str(path), len(first), "layer")
            path.write_bytes(os.urandom(len(first)))  # same size, other bytes
            sink.close()
            assert sink.entry_digests() == {"layer": "sha256:" + hashlib.sha256(first).hexdigest()}, way
        path.write_bytes(first)


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("kind", ["layer", "config"])
def test_an_archive_whose_entries_miss_their_digests_is_never_published(tmp_path, compression: str, kind: str) -> None:
    """The assembly compares each checked entry's written bytes with its digest before the
    archive is renamed into place: a mismatch leaves nothing at the output path, even for a
    stored layer whose record was made for the wrong bytes."""
    from tarexport.jobs import DamagedStoredFiles, _write_archive
    from tarexport.layerfiles import write_record
    from tarexport.tarball import DOCKER_25

    stored = tmp_path / "stored"
    stored.write_bytes(os.urandom(2 << 20) if kind == "layer" else b'{"architecture": "amd64"}')
    write_record(str(stored))
    good = "sha256:" + hashlib.sha256(stored.read_bytes()).hexdigest()
    output = tmp_path / "out" / "images.tar"
    output.parent.mkdir()
    for digest in ("sha256:" + "0" * 64, good):
        entries = [Entry("blobs/sha256/x", "file", 0, path=str(stored), check=(kind, digest))]
        if digest != good:
            with pytest.raises(DamagedStoredFiles) as found:
                _write_archive(entries, DOCKER_25, str(output), compression, False, 60.0)
            assert str(found.value.found_error()) == (
                f"stored layer {stored} changed after it was made; delete it and run again"
                if kind == "layer"
                else f"stored config {stored} changed after it was made; delete it and run again"
            )
            assert os.listdir(output.parent) == []  # neither the archive nor its temporary
        else:
            sha256 = _write_archive(entries, DOCKER_25, str(output), compression, False, 60.0)
            assert sha256 == hashlib.sha256(output.read_bytes()).hexdigest()
