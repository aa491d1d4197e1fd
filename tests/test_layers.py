"""Materializing one layer: decompression, both digests checked, nothing partial left."""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess
import tempfile

import pytest

from tarexport.errors import TarexportError
from tarexport.layerfiles import (
    WHOLE_HASH_LIMIT,
    StoredLayerChanged,
    fingerprint,
    record_path,
    verify_layer_file,
    write_record,
)
from tarexport.layers import SpaceGuard, materialize, run_layer_job
from tarexport.linklayer import checked_blob_path
from tarexport.recipes import LayerRecipe, LayerRemake, LayerSource, remakes_json
from tarexport.repair import StoredLayerRepair
from tarexport.sources.base import BlobRef
from tests.imagefactory import compress, make_layer, sha

pytestmark = pytest.mark.unit


def blob_in_layout(tmp_path, data: bytes) -> BlobRef:
    digest = sha(data)
    path = tmp_path / "layout" / "blobs" / "sha256"
    path.mkdir(parents=True, exist_ok=True)
    (path / digest.split(":")[1]).write_bytes(data)
    return BlobRef("oci-layout", str(tmp_path / "layout"), "blobs/sha256/" + digest.split(":")[1], digest, len(data))


LAYER = make_layer({"f": os.urandom(3_000_000), "g": b"small"})


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_each_compression_gives_the_uncompressed_layer(tmp_path, kind: str) -> None:
    blob = blob_in_layout(tmp_path, compress(LAYER, kind))
    out = tmp_path / "out.tar"
    materialize(blob, sha(LAYER), str(out), "src")
    assert out.read_bytes() == LAYER


def test_concatenated_gzip_members_are_read_whole(tmp_path) -> None:
    half = len(LAYER) // 2
    blob = blob_in_layout(tmp_path, compress(LAYER[:half], "gzip") + compress(LAYER[half:], "gzip"))
    materialize(blob, sha(LAYER), str(tmp_path / "out.tar"), "src")
    assert (tmp_path / "out.tar").read_bytes() == LAYER


def check_fails(tmp_path, blob: BlobRef, diff_id: str, message: str) -> None:
    out = tmp_path / "out.tar"
    with pytest.raises(TarexportError, match=message):
        materialize(blob, diff_id, str(out), "src")
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out.tar")]  # no temporaries left


def test_wrong_diff_id(tmp_path) -> None:
    blob = blob_in_layout(tmp_path, compress(LAYER, "gzip"))
    check_fails(tmp_path, blob, "sha256:" + "0" * 64, f"uncompressed layer has digest {sha(LAYER)}, expected diff_id")


def test_wrong_blob_digest(tmp_path) -> None:
    data = compress(LAYER, "gzip")
    blob = blob_in_layout(tmp_path, data)
    bad = BlobRef(blob.source_kind, blob.source_path, blob.member, "sha256:" + "1" * 64, blob.size)
    check_fails(tmp_path, bad, sha(LAYER), f"layer blob has digest {sha(data)}, expected sha256:1111")


def test_wrong_size(tmp_path) -> None:
    blob = blob_in_layout(tmp_path, LAYER)
    bad = BlobRef(blob.source_kind, blob.source_path, blob.member, blob.digest, blob.size + 1)
    check_fails(tmp_path, bad, sha(LAYER), "the manifest says")


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_truncated_stream(tmp_path, kind: str) -> None:
    data = compress(LAYER, kind)[:-100]
    blob = blob_in_layout(tmp_path, data)
    check_fails(tmp_path, blob, sha(LAYER), f"layer is not valid {kind}")


def test_corrupt_gzip(tmp_path) -> None:
    data = bytearray(compress(LAYER, "gzip"))
    data[len(data) // 2] ^= 0xFF
    blob = blob_in_layout(tmp_path, bytes(data))
    check_fails(tmp_path, blob, sha(LAYER), "not valid gzip|expected diff_id")


def source_file(blob: BlobRef) -> str:
    return os.path.join(blob.source_path, blob.member)


@pytest.mark.parametrize(("kind", "keep"), [("none", False), ("gzip", True), ("zstd", True)])
def test_a_blob_stored_as_it_is_is_hard_linked_after_checking(tmp_path, kind: str, keep: bool) -> None:
    data = compress(LAYER, kind)
    blob = blob_in_layout(tmp_path, data)
    out = tmp_path / "build" / "out.tar"
    materialize(blob, sha(LAYER), str(out), "src", keep_compressed=keep)
    assert os.path.samefile(out, source_file(blob))  # no second copy of the bytes
    assert out.read_bytes() == data
    assert not [p for p in os.listdir(out.parent) if p.endswith(".part")]  # the temporary link is gone


def test_a_decompressed_layer_is_never_linked(tmp_path) -> None:
    blob = blob_in_layout(tmp_path, compress(LAYER, "gzip"))
    out = tmp_path / "out.tar"
    materialize(blob, sha(LAYER), str(out), "src")
    assert not os.path.samefile(out, source_file(blob))
    assert out.read_bytes() == LAYER


def test_a_linked_blob_that_fails_its_check_leaves_no_link(tmp_path) -> None:
    blob = blob_in_layout(tmp_path, LAYER)
    check_fails(tmp_path, blob, "sha256:" + "0" * 64, "expected diff_id")
    assert os.stat(source_file(blob)).st_nlink == 1  # the temporary link is gone too


def test_across_file_systems_the_blob_is_copied(tmp_path) -> None:
    shared_memory = "/dev/shm"
    if not os.path.isdir(shared_memory) or os.stat(shared_memory).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second file system at /dev/shm")
    with tempfile.TemporaryDirectory(dir=shared_memory) as other:
        blob = blob_in_layout(pathlib.Path(other), LAYER)
        out = tmp_path / "out.tar"
        materialize(blob, sha(LAYER), str(out), "src")
        assert not os.path.samefile(out, source_file(blob))
        assert out.read_bytes() == LAYER
        assert os.stat(out).st_mode & 0o777 == 0o644


def test_highly_compressed_members_come_out_whole_in_bounded_pieces(tmp_path) -> None:
    # zeros deflate about 1000:1, so one read of the blob holds many output pieces
    layer = make_layer({"zeros": bytes(40 << 20), "tail": os.urandom(1000)})
    half = len(layer) // 3
    blob = blob_in_layout(tmp_path, compress(layer[:half], "gzip") + compress(layer[half:], "gzip"))
    out = tmp_path / "out.tar"
    materialize(blob, sha(layer), str(out), "src")
    assert sha(out.read_bytes()) == sha(layer)


@pytest.mark.parametrize("module", ["zlib", "isal.isal_zlib"])
def test_inflating_in_small_bounded_pieces_gives_every_byte(monkeypatch, module: str) -> None:
    from tarexport import inflate as inflate_module

    inflate = pytest.importorskip(module)
    monkeypatch.setattr(inflate_module, "PIECE", 1000)  # a byte of deflated zeros gives up to ~1030 bytes
    data = bytes(300_000) + os.urandom(5000)
    stream = compress(data, "gzip")
    one_byte_chunks = (stream[i : i + 1] for i in range(len(stream)))
    pieces = list(inflate_module.decompress(one_byte_chunks, lambda: inflate.decompressobj(wbits=31), "gzip"))
    assert b"".join(pieces) == data
    assert max(map(len, pieces)) <= 1000


def zstd_frames(*parts: bytes, checksum: bool = False) -> bytes:
    import zstandard

    compressor = zstandard.ZstdCompressor(write_checksum=checksum)
    return b"".join(compressor.compress(part) for part in parts)


def test_zstd_inflates_in_bounded_pieces(monkeypatch) -> None:
    from tarexport import inflate as inflate_module

    monkeypatch.setattr(inflate_module, "PIECE", 1000)
    data = bytes(3_000_000) + os.urandom(5000)  # one RLE block of zeros gives 128 KiB
    stream = zstd_frames(data[:1_000_000], data[1_000_000:], checksum=True)
    pieces = list(inflate_module.unzstd(iter([stream])))
    assert b"".join(pieces) == data
    assert max(map(len, pieces)) <= 1000


def test_a_zstd_bomb_is_inflated_in_bounded_memory(tmp_path) -> None:
    """One zstd frame of 1 GiB of zeros, about 32 KiB compressed and read as one chunk:
    it comes out in bounded pieces and the process stays small (python-zstandard's
    decompressobj would inflate the whole chunk at once). In a child process, so that
    its peak memory is its own: VmHWM, as getrusage's maxrss keeps the high-water mark of
    the process it was forked from (here pytest, itself about 300 MB by then)."""
    script = f"""
import sys, zstandard
sys.path.insert(0, {os.path.join(os.path.dirname(__file__), "..", "workflow")!r})
from tarexport import inflate as inflate_module
writer = zstandard.ZstdCompressor().compressobj()
zeros = bytes(16 << 20)
stream = b"".join([writer.compress(zeros) for _ in range(64)]) + writer.flush()
total = sum(len(piece) for piece in inflate_module.unzstd(iter([stream])))
peak_kb = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(len(stream), total, int(peak_kb) // 1024)
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    compressed, total, peak_mb = map(int, done.stdout.split())
    assert compressed < 1 << 20 and total == 1 << 30
    assert peak_mb < 200, f"inflating 1 GiB of zstd took {peak_mb} MB of memory"


@pytest.mark.parametrize("checksum", [False, True])
def test_a_zstd_stream_cut_anywhere_is_truncated(checksum: bool) -> None:
    from tarexport.inflate import ZstdFrames

    skippable = (0x184D2A53).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    import zstandard

    # and a frame of many blocks (RLE ones among them), with a window descriptor
    writer = zstandard.ZstdCompressor(write_checksum=checksum).compressobj()
    streamed = writer.compress(bytes(300_000) + os.urandom(2000)) + writer.flush()
    assert streamed[4] & 0x20 == 0, "expected a frame with a window descriptor"
    parts = (b"hello " * 50, os.urandom(300), b"")
    frames = [skippable, streamed] + [zstd_frames(part, checksum=checksum) for part in parts]
    stream = b"".join(frames)
    whole = ZstdFrames()
    whole.feed(stream)
    assert whole.complete
    ends = {sum(map(len, frames[: count + 1])) for count in range(len(frames))}
    for cut in range(1, len(stream)):
        walker = ZstdFrames()
        for start in range(0, cut, 5):  # fed in small pieces, as chunks arrive
            walker.feed(stream[start : min(start + 5, cut)])
        assert walker.complete == (cut in ends), cut


def test_a_zstd_stream_of_empty_blocks_is_refused_early(tmp_path) -> None:
    # each empty block costs a step of the frame walk and gives no byte for the expansion limit
    frame_start = (0xFD2FB528).to_bytes(4, "little") + bytes([0x20, 0])  # one segment, size 0
    stream = frame_start + b"\0\0\0" * 300_000 + b"\x01\0\0"  # raw blocks of 0 bytes, then the last
    blob = blob_in_layout(tmp_path, stream)
    check_fails(tmp_path, blob, sha(b""), "zstd blocks and frames gave only 0 bytes")


def test_a_gzip_stream_of_empty_members_is_refused_early(tmp_path) -> None:
    """Each member costs a new decompressor and gives nothing: 20 bytes each, they took a
    second per MiB to walk (the rest of the chunk was copied out after every member)."""
    import gzip
    import time

    empty = gzip.compress(b"", mtime=0)
    blob = blob_in_layout(tmp_path, empty * 200_000 + compress(LAYER, "gzip"))
    start = time.monotonic()
    check_fails(tmp_path, blob, sha(LAYER), "1025 gzip members gave only 0 bytes")
    assert time.monotonic() - start < 2


def test_many_small_gzip_members_cost_time_by_their_bytes(tmp_path) -> None:
    """60,000 members of 33 bytes, each giving one tar record (512 bytes, the least each
    must give): all read, in time proportional to their bytes. Measured here: 0.3 s; it was
    1.7 s, a copy of the rest of the 1 MiB chunk after every member."""
    import gzip
    import time

    records = [(b"%08d" % i) * 64 for i in range(60_000)]
    layer = make_layer({"f": b"x"})
    data = compress(layer, "gzip") + b"".join(gzip.compress(record, mtime=0) for record in records)
    blob = blob_in_layout(tmp_path, data)
    start = time.monotonic()
    # the records are no part of the tar: the digest tells, after every member was read
    expected = sha(layer + b"".join(records))
    with pytest.raises(TarexportError, match=f"uncompressed layer has digest {expected}"):
        materialize(blob, sha(layer), str(tmp_path / "out.tar"), "src")
    assert time.monotonic() - start < 1.2


@pytest.mark.parametrize("tail", [b"\x28\xb5\x2f", b"\x28\xb5\x2f\xfd\x20"])
def test_the_start_of_a_frame_after_the_last_is_truncation(tmp_path, tail: bytes) -> None:
    # the decoder itself ends quietly here: only the frame walk notices
    blob = blob_in_layout(tmp_path, zstd_frames(LAYER) + tail)
    check_fails(tmp_path, blob, sha(LAYER), "layer is not valid zstd")


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_a_read_buffer_smaller_than_anything_still_gives_every_byte(tmp_path, monkeypatch, kind: str) -> None:
    from tarexport import layers

    monkeypatch.setattr(layers, "CHUNK", 7)  # every piece is a view into one 7-byte buffer, reused
    small = make_layer({"f": os.urandom(20_000), "g": b"small"})
    half = len(small) // 2
    data = small if kind == "none" else compress(small[:half], kind) + compress(small[half:], kind)
    blob = blob_in_layout(tmp_path, data)
    out = tmp_path / "out.tar"
    materialize(blob, sha(small), str(out), "src", link=False)
    assert out.read_bytes() == small


def test_a_blob_we_may_not_touch_is_copied_not_linked(tmp_path, monkeypatch) -> None:
    blob = blob_in_layout(tmp_path, LAYER)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(source_file(blob)).st_uid + 1)  # someone else's file
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # that we may not write
    out = tmp_path / "out.tar"
    materialize(blob, sha(LAYER), str(out), "src")
    assert not os.path.samefile(out, source_file(blob))
    assert out.read_bytes() == LAYER


@pytest.mark.parametrize("variant", ["legacy", "docker25"])
def test_docker_save_layers_are_read_at_the_offset_found_while_planning(tmp_path, variant: str) -> None:
    from tarexport.sources.loading import SourceSpec, load_images
    from tests.imagefactory import make_image, write_docker25_archive, write_docker_archive

    image = make_image([{"a": os.urandom(5000)}, {"b": b"second"}])
    path = str(tmp_path / "saved.tar")
    if variant == "legacy":
        write_docker_archive(path, [(image, ["app:1"])])
    else:
        write_docker25_archive(path, [(image, ["app:1"])], str(tmp_path / "work"))
    (loaded,) = load_images(SourceSpec(path, path), "linux/amd64").images
    for layer, data in zip(loaded.layers, image.layers, strict=True):
        assert layer.blob.offset > 0 and layer.blob.size == len(data)
        with open(path, "rb") as handle:
            handle.seek(layer.blob.offset)
            assert handle.read(layer.blob.size) == data
        out = tmp_path / f"{layer.diff_id[7:]}.tar"
        materialize(layer.blob, layer.diff_id, str(out), path)
        assert out.read_bytes() == data


def test_a_small_layer_is_recorded_by_its_whole_content_a_large_one_by_samples(tmp_path) -> None:
    small, large = tmp_path / "small.tar", tmp_path / "large.tar"
    small.write_bytes(LAYER[:WHOLE_HASH_LIMIT])
    large.write_bytes(LAYER[: WHOLE_HASH_LIMIT + 1])
    # the text the shell's small-layer job writes (printf) must be exactly this
    assert fingerprint(str(small)) == f'{{"size": {WHOLE_HASH_LIMIT}, "sha256": "{sha(LAYER[:WHOLE_HASH_LIMIT])[7:]}"}}'
    assert fingerprint(str(large)).startswith(f'{{"size": {WHOLE_HASH_LIMIT + 1}, "sampled_sha256": "')
    for path in (small, large):
        write_record(str(path))
        verify_layer_file(str(path), sha(path.read_bytes()), full=True)


def test_a_small_layer_changed_anywhere_is_noticed_by_the_quick_check(tmp_path) -> None:
    stored = tmp_path / "layer.tar"
    stored.write_bytes(LAYER[:600_000])
    write_record(str(stored))
    with open(stored, "r+b") as handle:  # a byte that no sample of the old records covers
        handle.seek(100_000)
        handle.write(b"X" if LAYER[100_000:100_001] != b"X" else b"Y")
    with pytest.raises(TarexportError, match="changed after it was made"):
        verify_layer_file(str(stored), sha(LAYER[:600_000]), full=False)


def test_records_made_before_whole_content_records_still_hold(tmp_path) -> None:
    stored = tmp_path / "layer.tar"
    stored.write_bytes(LAYER[:600_000])
    with open(record_path(str(stored)), "w") as handle:
        handle.write(fingerprint(str(stored), sampled=True))  # as every layer was recorded before
    verify_layer_file(str(stored), sha(LAYER[:600_000]), full=True)
    with open(stored, "r+b") as handle:
        handle.write(b"X" if LAYER[:1] != b"X" else b"Y")
    with pytest.raises(TarexportError, match="changed after it was made"):
        verify_layer_file(str(stored), sha(LAYER[:600_000]), full=False)


def test_only_a_regular_tar_of_the_planned_size_inside_the_layout_goes_to_the_shell(tmp_path) -> None:
    layer = make_layer({"f": b"small"})
    blob = blob_in_layout(tmp_path, layer)
    root, member = blob.source_path, blob.member
    assert checked_blob_path(root, member, len(layer)) == os.path.realpath(source_file(blob))
    assert checked_blob_path(root, member, len(layer) + 1) is None  # the manifest's size differs
    assert checked_blob_path(root, "blobs/sha256/" + "0" * 64, len(layer)) is None  # missing
    not_tar = blob_in_layout(tmp_path, b"x" * 2048)
    assert checked_blob_path(root, not_tar.member, 2048) is None
    outside = tmp_path / "outside.tar"
    outside.write_bytes(layer)
    link = os.path.join(root, "blobs", "sha256", "1" * 64)
    os.symlink(outside, link)
    assert checked_blob_path(root, "blobs/sha256/" + "1" * 64, len(layer)) is None
    fifo = os.path.join(root, "blobs", "sha256", "2" * 64)
    os.mkfifo(fifo)
    assert checked_blob_path(root, "blobs/sha256/" + "2" * 64, 0) is None  # and it does not hang


SMALL_LAYER_JOB = os.path.join(os.path.dirname(__file__), "..", "workflow", "tarexport", "small_layer.sh")


def small_layer_job(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """The shell's small-layer job as Snakemake runs it (bash, errexit and pipefail on)."""
    script = f'set -euo pipefail; source {shlex.quote(SMALL_LAYER_JOB)}; tarexport_small "$@"'
    env = {**os.environ, **({"PATH": path} if path is not None else {})}
    return subprocess.run(["/bin/bash", "-c", script, "bash", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("link", ["1", "0"])
def test_the_shell_job_stores_a_small_blob_with_the_record_python_writes(tmp_path, link: str) -> None:
    blob = blob_in_layout(tmp_path, LAYER[:300_000])
    out = tmp_path / "build" / "layer.tar"
    out.parent.mkdir()
    record = record_path(str(out))
    job = small_layer_job(source_file(blob), blob.digest[7:], str(blob.size), link, str(out), record, "false")
    assert job.returncode == 0, job.stderr
    assert out.read_bytes() == LAYER[:300_000]
    assert os.path.samefile(out, source_file(blob)) == (link == "1")
    assert pathlib.Path(record_path(str(out))).read_text() == fingerprint(str(out))


@pytest.mark.parametrize("case", ["wrong digest", "no sha256sum", "unreadable"])
def test_the_shell_job_hands_anything_odd_to_the_python_job(tmp_path, case: str) -> None:
    blob = blob_in_layout(tmp_path, LAYER[:300_000])
    out = tmp_path / "build" / "layer.tar"
    out.parent.mkdir()
    digest, source, path = blob.digest[7:], source_file(blob), None
    if case == "wrong digest":
        digest = "0" * 64
    elif case == "no sha256sum":
        path = str(tmp_path / "bin")
        os.mkdir(path)
        for tool in ("ln", "cp", "rm", "touch"):
            os.symlink(shutil.which(tool) or tool, os.path.join(path, tool))
    else:
        source = str(tmp_path / "missing")
    marker = tmp_path / "fallback"
    record = record_path(str(out))
    job = small_layer_job(source, digest, str(blob.size), "1", str(out), record, "touch", str(marker), path=path)
    assert job.returncode == 0, job.stderr
    assert marker.exists()  # the Python job ran, with the arguments after the six
    assert not out.exists() and not os.path.exists(record_path(str(out)))
    assert os.stat(source_file(blob)).st_nlink == 1


def test_the_space_guard_stops_a_layer_before_the_disk_fills(tmp_path, monkeypatch) -> None:
    free = {"bytes": 200 << 20}

    class Stat:
        f_frsize = 4096

        @property
        def f_bavail(self) -> int:
            return free["bytes"] // 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Stat())
    guard = SpaceGuard(str(tmp_path / "layer.tar"), keep_free=64 << 20)
    written = 0
    with pytest.raises(
        TarexportError, match=r"would leave less than 64 MiB free .* free space there or lower keep_free_mib"
    ):
        while written < 1 << 30:  # each piece written takes its space, as on a real disk
            written += 1 << 20
            free["bytes"] -= 1 << 20
            guard.check(1000, written, writing=True)
    assert 64 << 20 > free["bytes"] >= (64 - 16) << 20  # stopped within one check's span


def test_the_space_guard_counts_only_what_is_written_and_caps_any_layer(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(os, "statvfs", lambda path: pytest.fail("asked for free space while writing nothing"))
    SpaceGuard(str(tmp_path / "x"), keep_free=1 << 40).check(10, 5 << 30, writing=False)  # a kept blob
    SpaceGuard(str(tmp_path / "x")).check(10, 5 << 30, writing=False)  # no ratio limit by default
    with pytest.raises(TarexportError, match=r"expands past 8 MiB \(max_layer_mib\)"):
        SpaceGuard(str(tmp_path / "x"), max_bytes=8 << 20).check(10, (8 << 20) + 1, writing=False)
    with pytest.raises(TarexportError, match="expands past 100 times its 1048576 bytes"):
        SpaceGuard(str(tmp_path / "x"), max_expansion=100).check(1 << 20, (100 << 20) + 1, writing=False)
    SpaceGuard(str(tmp_path / "x"), max_expansion=2).check(10, 64 << 20, writing=False)  # 64 MiB always allowed


@pytest.mark.parametrize("size", [600_000, WHOLE_HASH_LIMIT + 1])
def test_the_full_check_compares_the_whole_content_with_the_digest(tmp_path, size: int) -> None:
    """A file and its record changed together pass the quick check; only the digest tells."""
    stored = tmp_path / "layer.tar"
    stored.write_bytes(LAYER[:size])
    write_record(str(stored))  # the record made for these (other) bytes
    other = "sha256:" + "0" * 64
    verify_layer_file(str(stored), other, full=False)
    with pytest.raises(TarexportError, match=f"no longer has digest {other}"):
        verify_layer_file(str(stored), other, full=True)
    verify_layer_file(str(stored), sha(LAYER[:size]), full=True)


def test_a_damaged_stored_layer_is_made_again_from_what_its_job_was_given(tmp_path) -> None:
    blob = blob_in_layout(tmp_path, compress(LAYER, "gzip"))
    build = tmp_path / "build"
    relative = f"layers/{sha(LAYER)[7:]}.tar"
    stored = str(build / relative)
    recipe, source = LayerRecipe(sha(LAYER)).to_text(), LayerSource(blob, "src", None, None, 0, False).to_text()
    run_layer_job(recipe, source, stored)
    plan = tmp_path / "repairs.json"
    plan.write_text(remakes_json({relative: LayerRemake(recipe, source, "app:1", False)}))
    repair = StoredLayerRepair(str(build), str(plan), str(tmp_path / "published"))
    assert repair.knows(stored) and not repair.knows(str(build / "layers" / "other.tar"))

    with open(stored, "r+b") as handle:
        handle.write(b"X")
    with pytest.raises(StoredLayerChanged) as found:
        verify_layer_file(stored, sha(LAYER), full=False)
    repair.remake(stored, found.value.finding)
    verify_layer_file(stored, sha(LAYER), full=True)
    published = tmp_path / "published" / relative
    assert published.read_bytes() == LAYER  # left for remote storage (repair.put_back)
    assert (tmp_path / "published" / (relative + ".check")).read_text() == fingerprint(stored)

    os.remove(source_file(blob))  # nothing left to make it from: one message naming both
    with open(stored, "r+b") as handle:
        handle.write(b"Y")
    with pytest.raises(TarexportError, match=r"changed after it was made, and making it again failed: .*source src"):
        repair.remake(stored, f"stored layer {stored} changed after it was made")
