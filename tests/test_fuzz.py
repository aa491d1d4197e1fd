"""Fuzzing the source readers: any input either loads or raises the project's own error,
never another exception, a hang, or a write outside the output asked for."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tarexport.errors import TarexportError
from tarexport.layers import materialize
from tarexport.sources.loading import SourceSpec, load_images
from tests.imagefactory import LayoutEntry, make_image, sha, write_oci_layout

pytestmark = pytest.mark.unit

SEED = make_image([{"f": b"fuzz"}, {"g": b"more"}])
HEXES = [SEED.image_id.split(":")[1], *[d.split(":")[1] for d in SEED.diff_ids], "0" * 64]
NAMES = st.sampled_from(
    [
        "manifest.json",
        "index.json",
        "oci-layout",
        "repositories",
        f"{HEXES[0]}.json",
        f"{HEXES[1]}/layer.tar",
        *[f"blobs/sha256/{h}" for h in HEXES],
        "../escape",
        "/absolute",
        "a/../../b",
        "dir/",
        "",
    ]
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | NAMES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | NAMES, inner, max_size=5),
    max_leaves=20,
)
DIGESTS = st.sampled_from([f"sha256:{h}" for h in HEXES] + ["sha256:xyz", "md5:1", "", "sha256:" + "A" * 64])
DESCRIPTOR = st.fixed_dictionaries(
    {"digest": DIGESTS},
    optional={
        "mediaType": st.sampled_from(
            [
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "text/plain",
            ]
        ),
        "size": st.integers(-5, 5000),
        "annotations": st.dictionaries(
            st.sampled_from(["io.containerd.image.name", "org.opencontainers.image.ref.name"]),
            st.sampled_from(["victim:1", "docker.io/library/v:1", "UPPER", "x@sha256:abc", "1"]),
        ),
        "platform": st.fixed_dictionaries({"os": st.just("linux"), "architecture": st.sampled_from(["amd64", "arm"])}),
    },
)
# documents shaped like the real ones, so the fuzzer gets past the first checks
MANIFEST_JSON = st.lists(
    st.fixed_dictionaries(
        {"Config": NAMES | JSON},
        optional={
            "Layers": st.lists(NAMES, max_size=3) | JSON,
            "RepoTags": st.lists(st.text(max_size=10), max_size=2) | JSON,
        },
    ),
    max_size=2,
)
INDEX_JSON = st.fixed_dictionaries({"manifests": st.lists(DESCRIPTOR, max_size=3) | JSON})
IMAGE_MANIFEST = st.fixed_dictionaries(
    {"config": DESCRIPTOR | JSON, "layers": st.lists(DESCRIPTOR, max_size=3) | JSON},
    optional={"mediaType": st.just("application/vnd.oci.image.manifest.v1+json"), "manifests": st.lists(DESCRIPTOR)},
)
CONTENT = (
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | MANIFEST_JSON.map(lambda v: json.dumps(v).encode())
    | INDEX_JSON.map(lambda v: json.dumps(v).encode())
    | IMAGE_MANIFEST.map(lambda v: json.dumps(v).encode())
    | st.sampled_from([SEED.config, *SEED.layers, b'{"imageLayoutVersion": "1.0.0"}'])
)
MEMBER = st.tuples(NAMES, st.sampled_from(["file", "file", "file", "symlink", "hardlink", "dir"]), CONTENT, NAMES)


def write_archive(path: str, members: list[tuple[str, str, bytes, str]]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name or "empty")
            if kind == "file":
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                continue
            info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "dir": tarfile.DIRTYPE}[kind]
            info.linkname = link
            archive.addfile(info)


def exercise(spec: SourceSpec, scratch: str) -> None:
    """Load a source and materialize every layer it names, as the jobs would."""
    try:
        contents = load_images(spec, "linux/amd64", all_platforms=True)
        for image in contents.images:
            for number, layer in enumerate(image.layers):
                materialize(layer.blob, layer.diff_id, os.path.join(scratch, f"layer{number}.tar"), spec.path)
    except TarexportError as error:
        assert "\n" not in str(error)


def files_under(root: str) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(members=st.lists(MEMBER, max_size=8))
def test_docker_archive_reader(members: list[tuple[str, str, bytes, str]]) -> None:
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "fuzz.tar")
        write_archive(path, members)
        scratch = os.path.join(root, "scratch")
        os.mkdir(scratch)
        exercise(SourceSpec(path, path), scratch)
        assert files_under(root) - files_under(scratch) == {path}  # nothing written but layers in scratch


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    index=INDEX_JSON.map(lambda v: json.dumps(v).encode()) | CONTENT,
    blobs=st.dictionaries(st.sampled_from(HEXES), CONTENT, max_size=4),
    symlink=st.sampled_from(["", "../outside", "/etc/hostname", "blobs/sha256/" + HEXES[1]]),
)
def test_oci_layout_reader(index: bytes, blobs: dict[str, bytes], symlink: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        layout = write_oci_layout(os.path.join(root, "layout"), [LayoutEntry(SEED, ["victim:1"])])
        with open(os.path.join(layout, "index.json"), "wb") as handle:
            handle.write(index)
        for hex_digest, data in blobs.items():
            with open(os.path.join(layout, "blobs", "sha256", hex_digest), "wb") as handle:
                handle.write(data)
        if symlink:
            target = os.path.join(layout, "blobs", "sha256", HEXES[0])
            os.unlink(target) if os.path.exists(target) else None
            os.symlink(symlink, target)
        scratch = os.path.join(root, "scratch")
        os.mkdir(scratch)
        before = files_under(layout)
        exercise(SourceSpec(layout, layout), scratch)
        assert files_under(layout) == before


def test_the_seed_itself_loads(tmp_path) -> None:
    """The fuzzers start from a valid image, so they reach deep code paths."""
    layout = write_oci_layout(str(tmp_path / "layout"), [LayoutEntry(SEED, ["docker.io/library/victim:1"])])
    contents = load_images(SourceSpec(layout, layout), "linux/amd64")
    assert [image.image_id for image in contents.images] == [SEED.image_id]
    assert sha(SEED.config) == SEED.image_id


@settings(max_examples=200, deadline=5000)
@given(
    parts=st.lists(st.binary(max_size=3000), min_size=1, max_size=40),
    levels=st.lists(st.integers(0, 9), min_size=1, max_size=40),
    chunk=st.integers(1, 5000),
    cut=st.integers(0, 64),
)
def test_gzip_members_in_any_split(parts: list[bytes], levels: list[int], chunk: int, cut: int) -> None:
    """Members of any size (empty too), read through any buffer size: every byte, in order;
    a stream cut inside a member is truncation, never a quiet end or another exception (cut
    at a member's end, it is a valid shorter stream: the layer's digest tells)."""
    import gzip

    from tarexport.inflate import gunzip

    members = [gzip.compress(part, levels[i % len(levels)], mtime=0) for i, part in enumerate(parts)]
    data = b"".join(members)
    ends = {sum(map(len, members[: i + 1])) for i in range(len(members))}

    def chunks(stream: bytes):
        for start in range(0, len(stream), chunk):
            yield stream[start : start + chunk]

    assert b"".join(bytes(piece) for piece in gunzip(chunks(data))) == b"".join(parts)
    if 0 < cut < len(data) and len(data) - cut not in ends:  # at a member's end, a shorter stream
        try:
            out = b"".join(bytes(piece) for piece in gunzip(chunks(data[:-cut])))
        except EOFError as error:
            assert "truncated" in str(error), error
        else:
            raise AssertionError(f"a stream cut by {cut} bytes read quietly ({len(out)} bytes)")
