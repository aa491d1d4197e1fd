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


# -- docker-save archives read as `docker load` extracts them (moby pkg/archive Unpack)

UNTAR_IMAGES = {"A": make_image([{"a": b"first"}]), "B": make_image([{"b": b"second"}])}


def image_files(which: str, config: str, layer: str) -> list[tuple[str, str, bytes | str]]:
    image = UNTAR_IMAGES[which]
    return [(config, "file", image.config), (layer, "file", image.layers[0])]


def listing(config: str, layer: str) -> tuple[str, str, bytes | str]:
    """A manifest.json member naming one config and one layer for victim:1."""
    return (
        "manifest.json",
        "file",
        json.dumps([{"Config": config, "RepoTags": ["victim:1"], "Layers": [layer]}]).encode(),
    )


# case -> (members in order, what tarexport reads: an image or the refusal's words, what
# Docker 20.10's `docker load` loads for victim:1: an image, or "fails"). Checked against a
# real engine by tests/test_docker_untar.py.
UNTAR_CASES: dict[str, tuple[list[tuple[str, str, bytes | str]], str, str]] = {
    # the link takes the first copy's inode; the second copy replaces the name only
    "hard-link-to-a-name-written-again": (
        [
            *image_files("A", "x.json", "y.tar"),
            ("c.json", "link", "x.json"),
            ("l.tar", "link", "y.tar"),
            *image_files("B", "x.json", "y.tar"),
            listing("c.json", "l.tar"),
        ],
        "A",
        "A",
    ),
    "later-copy-wins": (
        [*image_files("A", "c.json", "l.tar"), *image_files("B", "c.json", "l.tar"), listing("c.json", "l.tar")],
        "B",
        "B",
    ),
    "dot-slash-is-the-same-path": (
        [
            *image_files("A", "a.json", "a.tar"),
            *image_files("B", "b.json", "b.tar"),
            listing("a.json", "a.tar"),
            ("./manifest.json", "file", listing("b.json", "b.tar")[2]),
        ],
        "B",
        "B",
    ),
    # a hard link to a symlink is that symlink in the link's directory
    "hard-link-to-a-symlink": (
        [
            *image_files("A", "x.json", "y.tar"),
            *image_files("B", "s/x.json", "s/y.tar"),
            ("s/c.json", "symlink", "x.json"),
            ("s/l.tar", "symlink", "y.tar"),
            ("c.json", "link", "s/c.json"),
            ("l.tar", "link", "s/l.tar"),
            listing("c.json", "l.tar"),
        ],
        "A",
        "A",
    ),
    # Docker writes d/manifest.json through the link, over manifest.json
    "written-through-a-symlinked-directory": (
        [
            *image_files("A", "a.json", "a.tar"),
            *image_files("B", "b.json", "b.tar"),
            listing("a.json", "a.tar"),
            ("d", "symlink", "."),
            ("d/manifest.json", "file", listing("b.json", "b.tar")[2]),
        ],
        "member is under a symlink",
        "B",
    ),
    # extracted in a chroot: /manifest.json is manifest.json
    "absolute-name": (
        [
            *image_files("A", "a.json", "a.tar"),
            *image_files("B", "b.json", "b.tar"),
            listing("a.json", "a.tar"),
            ("/manifest.json", "file", listing("b.json", "b.tar")[2]),
        ],
        "member name is absolute or leaves the archive",
        "B",
    ),
    "hard-link-before-its-target": (
        [
            ("c.json", "link", "x.json"),
            ("l.tar", "link", "y.tar"),
            *image_files("A", "x.json", "y.tar"),
            listing("c.json", "l.tar"),
        ],
        "hard link's target is not in the archive before it",
        "fails",
    ),
    # a name's byte that is not UTF-8 reads as a surrogate in Python; JSON's "\\udcff" is
    # that surrogate to Python and U+FFFD to Go, so Docker looks for another file
    "lone-surrogate-in-a-path": (
        [*image_files("A", "c\udcff.json", "l.tar"), listing("c\udcff.json", "l.tar")],
        "is not in the archive",
        "fails",
    ),
    "contiguous-file-type": (
        [*image_files("A", "c.json", "l.tar"), ("manifest.json", "contiguous", listing("c.json", "l.tar")[2])],
        "which docker load cannot extract",
        "fails",
    ),
}
UNTAR_TYPES = {
    "file": tarfile.REGTYPE,
    "contiguous": tarfile.CONTTYPE,
    "link": tarfile.LNKTYPE,
    "symlink": tarfile.SYMTYPE,
}


def write_untar_case(path: str, members: list[tuple[str, str, bytes | str]]) -> str:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = UNTAR_TYPES[kind]
            if isinstance(payload, bytes):
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = payload
                archive.addfile(info)
    return path


@pytest.mark.parametrize("case", sorted(UNTAR_CASES))
def test_docker_archive_is_read_as_docker_extracts_it(tmp_path, case: str) -> None:
    """Planning and the layer job read the files `docker load` would, or refuse one line."""
    members, ours, _ = UNTAR_CASES[case]
    path = write_untar_case(str(tmp_path / "case.tar"), members)
    spec = SourceSpec(path, path)
    if ours not in UNTAR_IMAGES:
        with pytest.raises(TarexportError, match=ours) as refusal:
            load_images(spec, "linux/amd64")
        assert path in str(refusal.value) and "\n" not in str(refusal.value)
        return
    (image,) = load_images(spec, "linux/amd64").images
    assert image.image_id == UNTAR_IMAGES[ours].image_id
    (layer,) = image.layers
    assert layer.diff_id == UNTAR_IMAGES[ours].diff_ids[0]
    materialize(layer.blob, layer.diff_id, str(tmp_path / "layer.tar"), path)  # checks the bytes read
    with open(tmp_path / "layer.tar", "rb") as handle:
        assert handle.read() == UNTAR_IMAGES[ours].layers[0]
