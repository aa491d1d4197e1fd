"""Layers that compress extremely well are real images, not bombs: they export by default.
What stops a bomb is the space it would take: a cap per layer, and free space kept on
build_dir's file system, checked as the layer is written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import zlib
from collections.abc import Iterator

import pytest
import zstandard

from tests.workflowrun import export, snakemake, write_config

pytestmark = pytest.mark.workflow

MB = 1 << 20
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def zero_file_layer(size: int) -> Iterator[bytes]:
    """An uncompressed layer holding one zero-filled file of `size` bytes, in pieces."""
    info = tarfile.TarInfo("zeros")
    info.size = size
    info.mode = 0o644
    yield info.tobuf(format=tarfile.USTAR_FORMAT)
    piece = bytes(MB)
    for start in range(0, size, MB):
        yield piece[: min(MB, size - start)]
    yield bytes(-size % 512 + 1024)  # padding, then the end-of-archive blocks


def compressed_layer(size: int, kind: str) -> tuple[bytes, str]:
    """(the blob, the diff_id) of zero_file_layer(size), compressed without holding it whole."""
    diff = hashlib.sha256()
    out: list[bytes] = []
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if kind == "gzip" else zstandard.ZstdCompressor().compressobj()
    for piece in zero_file_layer(size):
        diff.update(piece)
        out.append(compressor.compress(piece))
    out.append(compressor.flush())
    return b"".join(out), "sha256:" + diff.hexdigest()


def write_blob(root: str, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(root, "blobs", "sha256", digest), "wb") as handle:
        handle.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def layout_of(root: str, layers: list[tuple[bytes, str, str]], tag: str) -> str:
    """An OCI layout of one image with these (blob, diff_id, media type) layers."""
    os.makedirs(os.path.join(root, "blobs", "sha256"))
    with open(os.path.join(root, "oci-layout"), "w") as handle:
        json.dump({"imageLayoutVersion": "1.0.0"}, handle)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": [diff for _, diff, _ in layers]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **write_blob(root, json.dumps(config).encode()),
        },
        "layers": [{"mediaType": media, **write_blob(root, blob)} for blob, _, media in layers],
    }
    entry = {"mediaType": manifest["mediaType"], **write_blob(root, json.dumps(manifest).encode())}
    entry["annotations"] = {
        "io.containerd.image.name": "docker.io/library/" + tag,
        "org.opencontainers.image.ref.name": tag.split(":")[1],
    }
    with open(os.path.join(root, "index.json"), "w") as handle:
        json.dump({"schemaVersion": 2, "manifests": [entry]}, handle)
    return root


def test_a_500_mb_zero_filled_file_exports_from_gzip_and_zstd_by_default(tmp_path) -> None:
    """About 500 KB of gzip and 16 KB of zstd, each for 500 MB: far past any ratio limit."""
    layers = []
    for kind, media in (
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
    ):
        blob, diff = compressed_layer(500 * MB + (kind == "zstd"), kind)  # two distinct layers
        assert len(blob) * 1000 < 500 * MB
        layers.append((blob, diff, media))
    source = layout_of(str(tmp_path / "layout"), layers, "zeros:1")
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[source], images=["zeros:1"])
    with tarfile.open(os.path.join(work, "results", "images.tar")) as archive:
        sizes = sorted(m.size for m in archive.getmembers() if m.name.endswith("/layer.tar"))
    assert sizes == sorted(len(b"".join(zero_file_layer(500 * MB + extra))) for extra in (0, 1))


@pytest.fixture
def small_disk(tmp_path) -> Iterator[str]:
    """A 96 MiB tmpfs, to hold build_dir."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = str(tmp_path / "small")
    os.makedirs(mount)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", mount], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", mount], check=False)


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("tarexport: error:")]
    assert lines and "Traceback" not in output, output[-3000:]
    return lines[0]


def test_a_bomb_that_would_fill_the_disk_is_stopped_before_it_does(tmp_path, small_disk: str) -> None:
    blob, diff = compressed_layer(400 * MB, "gzip")
    source = layout_of(
        str(tmp_path / "layout"), [(blob, diff, "application/vnd.oci.image.layer.v1.tar+gzip")], "bomb:1"
    )
    work = str(tmp_path / "work")
    os.makedirs(work)
    config = write_config(
        work, sources=[source], images=["bomb:1"], build_dir=os.path.join(small_disk, "build"), keep_free_mib=32
    )
    run = snakemake(work, configfile=config)
    assert run.returncode != 0
    line = one_line(run.output)
    assert "would leave less than 32 MiB free" in line and "bomb:1" in line, line
    assert "No space left" not in run.output  # stopped by the guard, not by a full disk
    assert not os.path.exists(os.path.join(work, "results", "images.tar"))
