"""Materializing one layer: decompression, both digests checked, nothing partial left."""

from __future__ import annotations

import os

import pytest

from tarexport.errors import TarexportError
from tarexport.layers import materialize
from tarexport.sources.base import BlobRef
from tests.imagefactory import compress, make_layer, sha


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
