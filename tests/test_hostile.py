"""Hostile sources: each fails with its own one-line message naming what is wrong, writes
nothing outside the build and output directories, leaves no archive, and a later run with
the good source succeeds in the same directory."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import zstandard

from tests.imagefactory import LayoutEntry, compress, make_image, make_layer, sha, write_oci_layout
from tests.workflowrun import snakemake, write_config

IMAGE = make_image([{"a": b"A" * 100}, {"b": b"B"}])
TAG = "victim:1"
CONFIG_NAME = IMAGE.image_id.split(":")[1] + ".json"
LAYER_NAMES = [d.split(":")[1] + "/layer.tar" for d in IMAGE.diff_ids]


@dataclass
class Member:
    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    link: str = ""


@dataclass
class Archive:
    """A legacy docker-save archive as members, to be bent before it is written."""

    manifest: list[dict] = field(
        default_factory=lambda: [{"Config": CONFIG_NAME, "RepoTags": [TAG], "Layers": list(LAYER_NAMES)}]
    )
    members: list[Member] = field(
        default_factory=lambda: (
            [Member(CONFIG_NAME, IMAGE.config)]
            + [Member(name, layer) for name, layer in zip(LAYER_NAMES, IMAGE.layers, strict=True)]
        )
    )

    def write(self, path: str) -> str:
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
            for member in [*self.members, Member("manifest.json", json.dumps(self.manifest).encode())]:
                info = tarfile.TarInfo(member.name)
                info.type = member.kind
                info.linkname = member.link
                info.size = len(member.data) if member.kind == tarfile.REGTYPE else 0
                archive.addfile(info, io.BytesIO(member.data) if member.kind == tarfile.REGTYPE else None)
        return path


def legacy(bend: Callable[[Archive], None]) -> Callable[[str], str]:
    def build(root: str) -> str:
        archive = Archive()
        bend(archive)
        return archive.write(os.path.join(root, "source.tar"))

    return build


def rename_config(name: str) -> Callable[[Archive], None]:
    """The config under another name: a digest claim its bytes do not bear out."""

    def bend(archive: Archive) -> None:
        archive.members[0] = Member(name, IMAGE.config)
        archive.manifest[0]["Config"] = name

    return bend


def replace_layer(archive: Archive, index: int, member: Member) -> None:
    archive.members = [m for m in archive.members if m.name != LAYER_NAMES[index]] + [member]


def layout(bend: Callable[[str], None], compression: str = "gzip") -> Callable[[str], str]:
    def build(root: str) -> str:
        path = write_oci_layout(
            os.path.join(root, "layout"), [LayoutEntry(IMAGE, ["docker.io/library/" + TAG], compression=compression)]
        )
        bend(path)
        return path

    return build


def layout_json(path: str, name: str) -> dict:
    with open(os.path.join(path, name)) as handle:
        return json.load(handle)


def manifest_file(path: str) -> str:
    digest = layout_json(path, "index.json")["manifests"][0]["digest"]
    return os.path.join(path, "blobs", "sha256", digest.split(":")[1])


def rewrite_manifest(path: str, change: Callable[[dict], None]) -> None:
    """Change the image manifest and re-point index.json at it (digests stay consistent)."""
    with open(manifest_file(path)) as handle:
        manifest = json.load(handle)
    change(manifest)
    data = json.dumps(manifest).encode()
    with open(os.path.join(path, "blobs", "sha256", sha(data).split(":")[1]), "wb") as handle:
        handle.write(data)
    index = layout_json(path, "index.json")
    index["manifests"][0].update(digest=sha(data), size=len(data))
    write_file(path, "index.json", json.dumps(index).encode())


def write_file(path: str, name: str, data: bytes) -> None:
    with open(os.path.join(path, name), "wb") as handle:
        handle.write(data)


def layer_blob(path: str, index: int) -> str:
    with open(manifest_file(path)) as handle:
        digest = json.load(handle)["layers"][index]["digest"]
    return os.path.join(path, "blobs", "sha256", digest.split(":")[1])


def set_layer(path: str, index: int, blob: bytes, size: int | None = None) -> None:
    """Replace a layer blob, with a descriptor that matches it (so only the content is wrong)."""

    def change(manifest: dict) -> None:
        manifest["layers"][index].update(digest=sha(blob), size=len(blob) if size is None else size)

    write_file(path, os.path.join("blobs", "sha256", sha(blob).split(":")[1]), blob)
    rewrite_manifest(path, change)


def set_config(path: str, config: bytes) -> None:
    def change(manifest: dict) -> None:
        manifest["config"].update(digest=sha(config), size=len(config))

    write_file(path, os.path.join("blobs", "sha256", sha(config).split(":")[1]), config)
    rewrite_manifest(path, change)


def edit_blob(path: str, change: Callable[[bytes], bytes]) -> None:
    """Change the first layer's blob in place, its descriptor untouched."""
    with open(layer_blob(path, 0), "rb") as handle:
        data = handle.read()
    with open(layer_blob(path, 0), "wb") as handle:
        handle.write(change(data))


def corrupt_in_place(path: str) -> None:
    blob = layer_blob(path, 0)
    with open(blob, "r+b") as handle:
        data = bytearray(handle.read())
        data[len(data) // 2] ^= 0xFF
        handle.seek(0)
        handle.write(bytes(data))


def symlink_out(path: str, name: str) -> None:
    target = os.path.join(os.path.dirname(path), "secret")
    with open(target, "wb") as handle:
        handle.write(b"not yours")
    os.unlink(os.path.join(path, name))
    os.symlink(target, os.path.join(path, name))


def nest_indexes(path: str, depth: int) -> None:
    descriptor = dict(layout_json(path, "index.json")["manifests"][0])
    descriptor.pop("annotations", None)
    for _ in range(depth):
        child = dict(descriptor, platform={"os": "linux", "architecture": "amd64"})
        data = json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [child]}
        ).encode()
        write_file(path, os.path.join("blobs", "sha256", sha(data).split(":")[1]), data)
        descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(data), "size": len(data)}
    descriptor["annotations"] = {"io.containerd.image.name": "docker.io/library/" + TAG}
    write_file(path, "index.json", json.dumps({"schemaVersion": 2, "manifests": [descriptor]}).encode())


def with_config_diff_ids(diff_ids: list[str]) -> bytes:
    config = json.loads(IMAGE.config)
    config["rootfs"]["diff_ids"] = diff_ids
    return json.dumps(config).encode()


def garbage_layer(path: str) -> None:
    garbage = b"this is not a tar archive, only text pretending to be a layer\n" * 20
    set_config(path, with_config_diff_ids([sha(garbage), IMAGE.diff_ids[1]]))
    set_layer(path, 0, garbage)


def rewrite_manifest_raw(path: str, data: bytes) -> None:
    write_file(path, os.path.join("blobs", "sha256", sha(data).split(":")[1]), data)
    index = layout_json(path, "index.json")
    index["manifests"][0].update(digest=sha(data), size=len(data))
    write_file(path, "index.json", json.dumps(index).encode())


def with_config_and(config: bytes, **fields: object) -> bytes:
    document = json.loads(config)
    document.update(fields)
    return json.dumps(document).encode()


def set_layer_with_diff(path: str, kind: str) -> None:
    """A bomb whose digests are all consistent: only its expansion gives it away."""
    tar = make_layer({"zeros": bytes(80 << 20)})
    set_config(path, with_config_diff_ids([sha(tar), IMAGE.diff_ids[1]]))
    set_layer(path, 0, compress(tar, kind))


def set_annotation(path: str, name: str) -> None:
    index = layout_json(path, "index.json")
    index["manifests"][0]["annotations"] = {"io.containerd.image.name": name}
    write_file(path, "index.json", json.dumps(index).encode())


def rewrite_index(path: str, change: Callable[[dict], None]) -> None:
    index = layout_json(path, "index.json")
    change(index)
    write_file(path, "index.json", json.dumps(index).encode())


def set_index_digest(path: str, change: Callable[[str], str]) -> None:
    index = layout_json(path, "index.json")
    index["manifests"][0]["digest"] = change(index["manifests"][0]["digest"])
    write_file(path, "index.json", json.dumps(index).encode())


def replace_by_fifo(path: str, which: str) -> None:
    with open(manifest_file(path)) as handle:
        manifest = json.load(handle)
    digest = manifest["config"]["digest"] if which == "config" else manifest["layers"][0]["digest"]
    blob = os.path.join(path, "blobs", "sha256", digest.split(":")[1])
    os.unlink(blob)
    os.mkfifo(blob)


def add_conflicting_tag(path: str) -> None:
    other = make_image([{"other": b"O"}])
    second = write_oci_layout(path + "-other", [LayoutEntry(other, ["docker.io/library/" + TAG])])
    index = layout_json(path, "index.json")
    index["manifests"] += layout_json(second, "index.json")["manifests"]
    for name in os.listdir(os.path.join(second, "blobs", "sha256")):
        with open(os.path.join(second, "blobs", "sha256", name), "rb") as handle:
            write_file(path, os.path.join("blobs", "sha256", name), handle.read())
    write_file(path, "index.json", json.dumps(index).encode())


def write_raw(root: str, data: bytes) -> str:
    path = os.path.join(root, "source.tar")
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def metadata_bomb(root: str, kind: bytes) -> str:
    """A tar whose first header is a metadata record (PAX, GNU long name) claiming 2 GiB:
    tarfile reads such a record whole into memory (a sparse file makes it cheap to send).
    The file here is short: the refusal must come from the declared size alone."""
    info = tarfile.TarInfo("././@LongLink" if kind == b"L" else "PaxHeaders.0/x")
    info.type, info.size = kind, 2 << 30
    return write_raw(root, info.tobuf(tarfile.GNU_FORMAT if kind == b"L" else tarfile.USTAR_FORMAT) + bytes(8192))


def sparse_garbage(root: str) -> str:
    """A PAX sparse map that is not numbers (tarfile raises ValueError on it)."""
    path = os.path.join(root, "source.tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("manifest.json")
        info.pax_headers = {"GNU.sparse.map": "x,y"}
        archive.addfile(info, io.BytesIO(b""))
    return path


OUT = "../../../outside"
CASES: dict[str, tuple[Callable[[str], str], str, dict]] = {
    # -- paths in manifest.json
    "config-dotdot": (legacy(lambda a: a.manifest[0].update(Config="../x.json")), "path leaves the source", {}),
    "config-absolute": (legacy(lambda a: a.manifest[0].update(Config="/etc/passwd")), "path is absolute", {}),
    "layer-dotdot": (legacy(lambda a: a.manifest[0]["Layers"].__setitem__(0, OUT)), "path leaves the source", {}),
    "layer-absolute": (legacy(lambda a: a.manifest[0]["Layers"].__setitem__(0, "/etc/shadow")), "path is absolute", {}),
    "config-not-digest": (
        legacy(lambda a: a.manifest[0].update(Config="blobs/sha256/ZZZ")),
        "is not blobs/sha256/<64 hex>",
        {},
    ),
    "layer-blob-dotdot": (
        legacy(lambda a: a.manifest[0]["Layers"].__setitem__(0, "blobs/sha256/../../etc")),
        "is not blobs/sha256/<64 hex>",
        {},
    ),
    # -- links inside the archive
    "symlink-absolute": (
        legacy(lambda a: replace_layer(a, 0, Member(LAYER_NAMES[0], kind=tarfile.SYMTYPE, link="/etc/passwd"))),
        "symlink points outside the archive",
        {},
    ),
    "symlink-dotdot": (
        legacy(lambda a: replace_layer(a, 0, Member(LAYER_NAMES[0], kind=tarfile.SYMTYPE, link=OUT))),
        "path leaves the source",
        {},
    ),
    "symlink-loop": (
        legacy(
            lambda a: (
                replace_layer(a, 0, Member(LAYER_NAMES[0], kind=tarfile.SYMTYPE, link="../loop/layer.tar")),
                a.members.append(Member("loop/layer.tar", kind=tarfile.SYMTYPE, link="../" + LAYER_NAMES[0])),
            )
        ),
        "symlinks loop or nest too deep",
        {},
    ),
    "hardlink-dotdot": (
        legacy(lambda a: replace_layer(a, 0, Member(LAYER_NAMES[0], kind=tarfile.LNKTYPE, link="../outside"))),
        "path leaves the source",
        {},
    ),
    # Docker removes the name before linking: the link finds nothing and `docker load` fails
    "hardlink-self": (
        legacy(lambda a: replace_layer(a, 0, Member(LAYER_NAMES[0], kind=tarfile.LNKTYPE, link=LAYER_NAMES[0]))),
        "hard link's target is not in the archive before it",
        {},
    ),
    # `docker load` extracts in a chroot: it writes d/<config> through the link over <config>,
    # and /<config> as <config>; either way it reads another file than the names say
    "member-through-symlink": (
        legacy(lambda a: a.members.extend([Member("d", kind=tarfile.SYMTYPE, link="."), Member("d/" + CONFIG_NAME)])),
        "member is under a symlink",
        {},
    ),
    "member-absolute-name": (
        legacy(lambda a: a.members.append(Member("/" + CONFIG_NAME))),
        "member name is absolute or leaves the archive",
        {},
    ),
    "layer-is-directory": (
        legacy(lambda a: replace_layer(a, 0, Member(LAYER_NAMES[0], kind=tarfile.DIRTYPE))),
        "is not a regular file",
        {},
    ),
    # -- digests
    "digest-short": (
        layout(lambda p: rewrite_manifest(p, lambda m: m["layers"][0].update(digest="sha256:abc"))),
        "'sha256:abc' is not a sha256 digest",
        {},
    ),
    "digest-algorithm": (
        layout(lambda p: rewrite_manifest(p, lambda m: m["layers"][0].update(digest="sha512:" + "a" * 128))),
        "is not a sha256 digest",
        {},
    ),
    "digest-uppercase": (
        layout(lambda p: rewrite_manifest(p, lambda m: m["layers"][0].update(digest="sha256:" + "A" * 64))),
        "is not a sha256 digest",
        {},
    ),
    "digest-traversal": (
        layout(lambda p: rewrite_manifest(p, lambda m: m["layers"][0].update(digest="sha256:../../../etc/passwd"))),
        "is not a sha256 digest",
        {},
    ),
    "index-digest-bad": (
        layout(lambda p: write_file(p, "index.json", b'{"manifests":[{"digest":"md5:x","size":1}]}')),
        "manifest digest 'md5:x' is not a sha256 digest",
        {},
    ),
    "diff-id-bad": (
        layout(lambda p: set_config(p, with_config_diff_ids(["sha256:xyz", IMAGE.diff_ids[1]]))),
        "diff_id 'sha256:xyz' is not a sha256 digest",
        {},
    ),
    # -- symlinks in an OCI layout
    "blob-symlink-out": (
        layout(lambda p: symlink_out(p, os.path.relpath(layer_blob(p, 0), p))),
        "resolves outside the source",
        {},
    ),
    "index-symlink-out": (layout(lambda p: symlink_out(p, "index.json")), "resolves outside the source", {}),
    # -- metadata that is not what it claims
    "index-not-json": (layout(lambda p: write_file(p, "index.json", b"{not json")), "index.json is not valid JSON", {}),
    # JSON that Go's decoder refuses, and that Python's takes
    "index-size-float": (
        layout(lambda p: rewrite_index(p, lambda index: index["manifests"][0].update(size=710.0))),
        "index.json: manifests[0].size is not an integer",
        {},
    ),
    "manifest-nan": (  # in a field nothing reads: Go fails on the whole document
        layout(lambda p: rewrite_manifest(p, lambda m: m.update(note=float("nan")))),
        "manifest is not valid JSON (NaN is not a JSON number",
        {},
    ),
    "legacy-layer-sources-size-past-int64": (
        legacy(
            lambda a: a.manifest[0].update(
                LayerSources={IMAGE.diff_ids[0]: {"mediaType": "m", "size": 2**63, "digest": IMAGE.diff_ids[0]}}
            )
        ),
        "manifest.json: [0].LayerSources[0].size is out of range for an int64",
        {},
    ),
    "oci-layout-version": (
        layout(lambda p: write_file(p, "oci-layout", b'{"imageLayoutVersion": "2.0.0"}')),
        "imageLayoutVersion is not 1.0.0",
        {},
    ),
    "index-not-object": (
        layout(lambda p: write_file(p, "index.json", b"[1, 2]")),
        "index.json is not a JSON object",
        {},
    ),
    "index-no-manifests": (
        layout(lambda p: write_file(p, "index.json", b'{"manifests": 3}')),
        "index.json: manifests is not a JSON list",
        {},
    ),
    "index-too-big": (
        layout(lambda p: write_file(p, "index.json", b'{"manifests": [], "pad": "' + b"x" * (17 << 20) + b'"}')),
        "over the 16777216-byte limit for metadata",
        {},
    ),
    "manifest-not-json": (
        layout(lambda p: rewrite_manifest_raw(p, b"\x00\x01 binary")),
        "manifest is not valid JSON",
        {},
    ),
    "manifest-no-config": (
        layout(lambda p: rewrite_manifest(p, lambda m: m.pop("config"))),
        "manifest has no config descriptor",
        {},
    ),
    "manifest-layer-count": (
        layout(lambda p: rewrite_manifest(p, lambda m: m["layers"].pop())),
        "manifest lists 1 layers but the config has 2 diff_ids",
        {},
    ),
    "config-not-json": (layout(lambda p: set_config(p, b"\xff\xfe not json")), "config is not valid JSON", {}),
    "config-not-object": (layout(lambda p: set_config(p, b'"a string"')), "config is not a JSON object", {}),
    "config-no-rootfs": (layout(lambda p: set_config(p, b'{"os": "linux"}')), "config has no rootfs.diff_ids list", {}),
    "config-wrong-type": (
        layout(lambda p: set_config(p, with_config_and(IMAGE.config, created=12))),
        "created must be a string",
        {},
    ),
    "legacy-not-list": (
        legacy(lambda a: a.manifest.clear() or a.manifest.append("x")),
        "manifest.json: [0] is not a JSON object",
        {},
    ),
    "legacy-layer-count": (
        legacy(lambda a: a.manifest[0]["Layers"].pop()),
        "Layers lists 1 files but the config has 2 diff_ids",
        {},
    ),
    "legacy-config-missing": (legacy(lambda a: a.members.pop(0)), "is not in the archive", {}),
    "legacy-config-misnamed": (legacy(rename_config("f" * 64 + ".json")), "config is named by digest sha256:fff", {}),
    "docker25-config-misnamed": (
        legacy(rename_config("blobs/sha256/" + "e" * 64)),
        f"config is named by digest sha256:{'e' * 64} but its content has digest {IMAGE.image_id}",
        {},
    ),
    # -- blobs whose bytes are wrong
    "blob-truncated": (layout(lambda p: edit_blob(p, lambda b: b[:-10])), "the manifest says", {}),
    "blob-overlong": (layout(lambda p: edit_blob(p, lambda b: b + b"extra")), "the manifest says", {}),
    "blob-corrupted": (layout(corrupt_in_place), "layer blob has digest", {}),
    "config-corrupted": (
        layout(
            lambda p: write_file(
                p, os.path.join("blobs", "sha256", IMAGE.image_id.split(":")[1]), IMAGE.config[:-1] + b" "
            )
        ),
        "config content has digest",
        {},
    ),
    "legacy-layer-wrong": (
        legacy(lambda a: replace_layer(a, 0, Member(LAYER_NAMES[0], IMAGE.layers[1]))),
        f"uncompressed layer has digest {IMAGE.diff_ids[1]}, expected diff_id {IMAGE.diff_ids[0]}",
        {},
    ),
    # the ratio limit is opt-in; by default a bomb meets the space guards (test_compressible_layers)
    "gzip-bomb": (
        layout(lambda p: set_layer_with_diff(p, "gzip")),
        "expands past 1000 times its",
        {"max_layer_expansion": 1000},
    ),
    "gzip-bomb-cap": (
        layout(lambda p: set_layer_with_diff(p, "gzip")),
        "layer expands past 16 MiB (max_layer_mib)",
        {"max_layer_mib": 16},
    ),
    "zstd-bomb": (
        layout(lambda p: set_layer_with_diff(p, "zstd")),
        "expands past 50 times its",
        {"max_layer_expansion": 50},
    ),
    "layer-not-tar": (layout(garbage_layer, compression="none"), "layer is not a tar archive", {}),
    "gzip-corrupt": (layout(lambda p: set_layer(p, 0, b"\x1f\x8b\x08\x00garbage" * 10)), "layer is not valid gzip", {}),
    "gzip-truncated": (
        layout(lambda p: set_layer(p, 0, gzip.compress(IMAGE.layers[0])[:-12])),
        "layer is not valid gzip (gzip stream is truncated)",
        {},
    ),
    "zstd-corrupt": (
        layout(lambda p: set_layer(p, 0, zstandard.ZstdCompressor().compress(IMAGE.layers[0])[:8] + b"\xff" * 40)),
        "layer is not valid zstd",
        {},
    ),
    # -- names
    "tag-conflict": (layout(add_conflicting_tag), "tag victim:1 names", {}),
    "annotation-uppercase": (
        layout(lambda p: set_annotation(p, "docker.io/library/UPPER:1")),
        "repository name must be lowercase",
        {},
    ),
    "annotation-bad-tag": (layout(lambda p: set_annotation(p, "victim:bad tag")), "invalid reference format", {}),
    # Go's \w is ASCII: Docker refuses this tag, so an archive holding it would not load
    "annotation-non-ascii-tag": (
        layout(lambda p: set_annotation(p, "docker.io/library/victim:t\u00e4g")),
        "invalid reference format",
        {},
    ),
    # `$` matches before a final newline: a digest must end where its 64 hex digits do
    "digest-trailing-newline": (
        layout(lambda p: set_index_digest(p, lambda digest: digest + "\n")),
        "is not a sha256 digest",
        {},
    ),
    # Go matches struct fields case-insensitively and keeps the last: docker load would
    # read the second config, Python the first
    "manifest-json-config-twice": (
        legacy(lambda a: a.manifest[0].update(config="0" * 64 + ".json")),
        "which Go reads as one field",
        {},
    ),
    "index-manifests-twice": (
        layout(lambda p: rewrite_index(p, lambda index: index.update(Manifests=[]))),
        "which Go reads as one field",
        {},
    ),
    "long-s-in-a-key": (
        layout(lambda p: rewrite_manifest(p, lambda m: m.update({"layer\u017f": []}))),  # Go: "layers"
        "which Go reads as one field",
        {},
    ),
    # memory bombs that are not compressed data: a header claiming gigabytes of metadata
    "pax-header-claims-gigabytes": (lambda root: metadata_bomb(root, b"x"), "over the 1048576-byte limit", {}),
    "long-name-claims-gigabytes": (lambda root: metadata_bomb(root, b"L"), "over the 1048576-byte limit", {}),
    "pax-sparse-map-garbage": (sparse_garbage, "is not a readable tar archive", {}),
    # opening a FIFO for reading waits for a writer: planning and jobs would hang
    "config-is-a-fifo": (layout(lambda p: replace_by_fifo(p, "config")), "is not a regular file", {}),
    "layer-is-a-fifo": (layout(lambda p: replace_by_fifo(p, "layer")), "is not a regular file", {}),
    "repotag-without-tag": (legacy(lambda a: a.manifest[0].update(RepoTags=["victim"])), "is not name:tag", {}),
    "repotag-not-string": (
        legacy(lambda a: a.manifest[0].update(RepoTags=[7])),
        "manifest.json: [0].RepoTags[0] is not a string",
        {},
    ),
    # -- not a source at all
    "not-a-tar": (
        lambda root: write_raw(root, b"just some bytes, not a tar file" * 40),
        "is neither an OCI layout directory",
        {},
    ),
    "no-manifest-json": (
        legacy(lambda a: None),
        "has neither manifest.json nor an OCI index.json",
        {"drop_manifest": True},
    ),
    "no-oci-layout-file": (layout(lambda p: os.unlink(os.path.join(p, "oci-layout"))), "has no oci-layout file", {}),
    "index-nesting": (layout(lambda p: nest_indexes(p, 5)), "image indexes nest too deep", {}),
}


def snapshot(root: str, skip: str) -> dict[str, tuple[int, int, str]]:
    """Every file under root (outside `skip`) with its size, mtime and content digest."""
    out = {}
    for directory, dirs, files in os.walk(root):
        if os.path.abspath(directory).startswith(skip):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):  # a FIFO would block the reading
                out[path] = (info.st_mode, info.st_mtime_ns, "")
                continue
            with open(path, "rb") as handle:
                out[path] = (info.st_size, info.st_mtime_ns, sha(handle.read()))
    return out


def linked_into(work: str, path: str) -> bool:
    """Is this source file hard-linked as a stored layer (`link_layers`)? Snakemake touches
    every output after its job, so such a blob's mtime changes, never its content."""
    layers = os.path.join(work, "build", "layers")
    return os.path.isdir(layers) and any(os.path.samefile(path, os.path.join(layers, n)) for n in os.listdir(layers))


def assert_sources_untouched(before: dict[str, tuple[int, int, str]], work: str, root: str) -> None:
    after = snapshot(root, work)
    assert after.keys() == before.keys()  # nothing written outside the work dir
    for path, (size, mtime, digest) in before.items():
        assert after[path][0::2] == (size, digest), path  # nor changed
        assert after[path][1] == mtime or linked_into(work, path), path  # nor touched, but linked blobs


# Limits on each hostile run, Snakemake and its jobs together. Measured: about 110 MiB and
# 3 s per case; a header bomb took 2-4 GB, a trickle or a hang forever.
CASE_MAX_RSS_MIB = 400
CASE_MAX_SECONDS = 60


def good_source(root: str) -> str:
    return write_oci_layout(os.path.join(root, "good"), [LayoutEntry(IMAGE, ["docker.io/library/" + TAG])])


@pytest.mark.workflow
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_source(tmp_path, case: str) -> None:
    build, expected, options = CASES[case]
    options = dict(options)
    drop_manifest = options.pop("drop_manifest", False)
    source = build(str(tmp_path))
    if drop_manifest:  # an archive with only blobs in it
        with tarfile.open(source) as original:
            keep = [(m, original.extractfile(m).read()) for m in original.getmembers() if m.name != "manifest.json"]  # type: ignore[union-attr]
        with tarfile.open(source, "w") as rewritten:
            for member, data in keep:
                rewritten.addfile(member, io.BytesIO(data))
    work = str(tmp_path / "work")
    os.makedirs(work)
    before = snapshot(str(tmp_path), work)
    run = snakemake(work, configfile=write_config(work, sources=[source], images=[TAG], **options))
    assert run.returncode != 0
    # bombs in headers and bodies took gigabytes and minutes: every case stays small and quick
    assert run.max_rss_mib < CASE_MAX_RSS_MIB and run.seconds < CASE_MAX_SECONDS, (run.max_rss_mib, run.seconds)
    lines = [line for line in run.output.splitlines() if line.startswith("tarexport: error:")]
    assert lines and "Traceback" not in run.output, run.output[-3000:]
    assert expected in lines[0], lines[0]
    assert os.path.relpath(source, work) in lines[0] or source in lines[0] or "victim:1" in lines[0], lines[0]
    assert not os.path.exists(os.path.join(work, "results", "images.tar"))
    assert_sources_untouched(before, work, str(tmp_path))
    if "Error in rule" not in run.output:
        return  # refused while planning: nothing was built that a later run could trip on
    # refused by a job: the same directory, a good source, and the run completes
    fixed = snakemake(work, configfile=write_config(work, sources=[good_source(str(tmp_path))], images=[TAG]))
    assert fixed.returncode == 0, fixed.output[-3000:]
    assert os.path.isfile(os.path.join(work, "results", "images.tar"))


@pytest.mark.unit
def test_there_are_over_sixty_cases_as_the_readme_says() -> None:
    assert len(CASES) > 60
