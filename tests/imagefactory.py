"""Build image sources in test code: layers, configs, OCI layouts, docker-save archives.

Independent of the package under test, so fixtures do not share its bugs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field

import zstandard

OCI_TYPES = {
    "index": "application/vnd.oci.image.index.v1+json",
    "manifest": "application/vnd.oci.image.manifest.v1+json",
    "config": "application/vnd.oci.image.config.v1+json",
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
DOCKER_TYPES = {
    "index": "application/vnd.docker.distribution.manifest.list.v2+json",
    "manifest": "application/vnd.docker.distribution.manifest.v2+json",
    "config": "application/vnd.docker.container.image.v1+json",
    "none": "application/vnd.docker.image.rootfs.diff.tar",
    "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "zstd": "application/vnd.docker.image.rootfs.diff.tar.zstd",
}


FOREIGN_TYPES = {
    kind: "application/vnd.oci.image.layer.nondistributable.v1.tar" + suffix
    for kind, suffix in (("none", ""), ("gzip", "+gzip"), ("zstd", "+zstd"))
}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_layer(files: dict[str, bytes], mtime: int = 1_700_000_000) -> bytes:
    """A deterministic uncompressed layer tar holding `files`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


@dataclass
class Image:
    layers: list[bytes]  # uncompressed
    config: bytes

    @property
    def image_id(self) -> str:
        return sha(self.config)

    @property
    def diff_ids(self) -> list[str]:
        return [sha(layer) for layer in self.layers]


def make_config(layers: list[bytes], created: str = "2024-01-02T03:04:05.123456789Z", **fields: object) -> bytes:
    document: dict[str, object] = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/app"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]},
        "history": [{"created": created, "created_by": "test"} for _ in layers],
    }
    document.update(fields)
    return json.dumps(document, indent=1).encode()


def make_image(files_per_layer: list[dict[str, bytes]], **fields: object) -> Image:
    layers = [make_layer(files) for files in files_per_layer]
    return Image(layers, make_config(layers, **fields))


@dataclass
class LayoutEntry:
    image: Image
    names: list[str] = field(default_factory=list)  # full refs, or bare tags (ref.name only)
    compression: str = "gzip"
    family: str = "oci"  # or "docker" media types
    name_style: str = "both"  # "both", "containerd", "ref"
    foreign: dict[int, list[str]] = field(default_factory=dict)  # layer index -> URLs: non-distributable
    omit_foreign: bool = False  # leave the foreign layers' blobs out, as registries do


def platform_image(arch: str) -> Image:
    """A one-layer image for `arch` (`arm64`, `arm/v7`...), its config saying so."""
    layers = [make_layer({"arch": arch.encode()})]
    cpu, _, variant = arch.partition("/")
    return Image(layers, make_config(layers, architecture=cpu, variant=variant))


def _write_blob(root: str, data: bytes) -> str:
    digest = sha(data)
    path = os.path.join(root, "blobs", "sha256", digest.split(":")[1])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return digest


def manifest_for(root: str, entry: LayoutEntry) -> tuple[bytes, dict[str, object]]:
    """Write an image's blobs; return its manifest bytes and descriptor."""
    types = OCI_TYPES if entry.family == "oci" else DOCKER_TYPES
    config_digest = _write_blob(root, entry.image.config)
    layer_descriptors = []
    for number, layer in enumerate(entry.image.layers):
        blob = compress(layer, entry.compression)
        descriptor: dict[str, object] = {
            "mediaType": types[entry.compression],
            "digest": _write_blob(root, blob),
            "size": len(blob),
        }
        if number in entry.foreign:
            descriptor["mediaType"] = FOREIGN_TYPES[entry.compression]
            descriptor["urls"] = entry.foreign[number]
            if entry.omit_foreign:
                os.unlink(os.path.join(root, "blobs", "sha256", str(descriptor["digest"]).split(":")[1]))
        layer_descriptors.append(descriptor)
    manifest = {
        "schemaVersion": 2,
        "mediaType": types["manifest"],
        "config": {"mediaType": types["config"], "digest": config_digest, "size": len(entry.image.config)},
        "layers": layer_descriptors,
    }
    data = json.dumps(manifest).encode()
    digest = _write_blob(root, data)
    return data, {"mediaType": types["manifest"], "digest": digest, "size": len(data)}


def write_oci_layout(root: str, entries: list[LayoutEntry]) -> str:
    """An OCI image layout directory; one index.json entry per name (or one unnamed)."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "oci-layout"), "w") as handle:
        json.dump({"imageLayoutVersion": "1.0.0"}, handle)
    index_entries = []
    for entry in entries:
        _, descriptor = manifest_for(root, entry)
        if not entry.names:
            index_entries.append(dict(descriptor))
        for name in entry.names:
            annotations = {}
            if entry.name_style in ("both", "containerd") and ("/" in name or ":" in name):
                annotations["io.containerd.image.name"] = name
            if entry.name_style in ("both", "ref"):
                annotations["org.opencontainers.image.ref.name"] = (
                    name.rsplit(":", 1)[-1] if entry.name_style == "both" else name
                )
            index_entries.append({**descriptor, "annotations": annotations})
    with open(os.path.join(root, "index.json"), "w") as handle:
        json.dump({"schemaVersion": 2, "mediaType": OCI_TYPES["index"], "manifests": index_entries}, handle)
    return root


def attestation_for(root: str, described: dict[str, object], platform: str) -> dict[str, object]:
    """An attestation manifest as BuildKit writes one for a platform image (an in-toto SLSA
    statement as its layer, a minimal config); returns its index entry."""
    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [
                {"name": f"pkg:docker/app?platform={platform}", "digest": {"sha256": str(described["digest"])[7:]}}
            ],
            "predicate": {"builder": {"id": "test"}, "buildType": "https://mobyproject.org/buildkit@v1"},
        }
    ).encode()
    config = json.dumps(
        {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha(statement)]},
        }
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_TYPES["manifest"],
        "config": {"mediaType": OCI_TYPES["config"], "digest": _write_blob(root, config), "size": len(config)},
        "layers": [
            {
                "mediaType": "application/vnd.in-toto+json",
                "digest": _write_blob(root, statement),
                "size": len(statement),
                "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
            }
        ],
    }
    data = json.dumps(manifest).encode()
    return {
        "mediaType": OCI_TYPES["manifest"],
        "digest": _write_blob(root, data),
        "size": len(data),
        "annotations": {
            "vnd.docker.reference.digest": described["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        },
        "platform": {"architecture": "unknown", "os": "unknown"},
    }


def write_multiplatform_layout(
    root: str, platforms: dict[str, Image], name: str, family: str = "oci", attestations: bool = False
) -> str:
    """An OCI layout whose one named entry is an index (or Docker manifest list) over several
    platforms; with `attestations`, BuildKit's attestation manifest for each, after them."""
    types = OCI_TYPES if family == "oci" else DOCKER_TYPES
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "oci-layout"), "w") as handle:
        json.dump({"imageLayoutVersion": "1.0.0"}, handle)
    children = []
    for platform, image in platforms.items():
        _, descriptor = manifest_for(root, LayoutEntry(image, family=family))
        parts = platform.split("/")
        plat = {"os": parts[0], "architecture": parts[1]}
        if len(parts) > 2:
            plat["variant"] = parts[2]
        children.append({**descriptor, "platform": plat})
    if attestations:
        children += [
            attestation_for(root, child, platform) for child, platform in zip(children, platforms, strict=True)
        ]
    index = json.dumps({"schemaVersion": 2, "mediaType": types["index"], "manifests": children}).encode()
    digest = _write_blob(root, index)
    top = {
        "mediaType": types["index"],
        "digest": digest,
        "size": len(index),
        "annotations": {"io.containerd.image.name": name},
    }
    with open(os.path.join(root, "index.json"), "w") as handle:
        json.dump({"schemaVersion": 2, "manifests": [top]}, handle)
    return root


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_docker_archive(
    path: str,
    images: list[tuple[Image, list[str]]],
    layer_sources: dict[str, dict[str, object]] | None = None,
    parents: dict[str, object] | None = None,
) -> str:
    """A legacy docker-save style archive (layers by diff_id, not Docker's v1 IDs).

    `layer_sources` (diff_id -> descriptor) marks foreign layers, as Docker records them;
    `parents` (image ID -> Parent value) links images, as Docker and go-containerregistry do.
    """
    manifest = []
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        written: set[str] = set()
        for image, tags in images:
            config_name = image.image_id.split(":")[1] + ".json"
            if config_name not in written:
                _add(archive, config_name, image.config)
                written.add(config_name)
            layer_names = []
            for layer in image.layers:
                name = sha(layer).split(":")[1] + "/layer.tar"
                if name not in written:
                    _add(archive, name, layer)
                    written.add(name)
                layer_names.append(name)
            item: dict[str, object] = {"Config": config_name, "RepoTags": tags or None, "Layers": layer_names}
            if image.image_id in (parents or {}):
                item["Parent"] = (parents or {})[image.image_id]
            foreign = {d: v for d, v in (layer_sources or {}).items() if d in image.diff_ids}
            if foreign:
                item["LayerSources"] = foreign
            manifest.append(item)
        _add(archive, "manifest.json", json.dumps(manifest).encode())
    return path


def oci_layout_from_docker_save(
    save_tar: str, root: str, compression: str = "gzip", family: str = "oci", name_style: str = "both"
) -> dict[str, str]:
    """Turn a real `docker save` archive into an OCI layout, config bytes kept.

    Returns image ID -> manifest digest.
    """
    with tarfile.open(save_tar) as archive:

        def read(name: str) -> bytes:
            member = archive.getmember(name)
            while member.issym():
                name = os.path.normpath(os.path.join(os.path.dirname(name), member.linkname))
                member = archive.getmember(name)
            return archive.extractfile(member).read()  # type: ignore[union-attr]

        manifest = json.loads(read("manifest.json"))
        entries = [
            LayoutEntry(
                Image([read(layer) for layer in item["Layers"]], read(item["Config"])),
                names=[_full_name(tag) for tag in item["RepoTags"] or []],
                compression=compression,
                family=family,
                name_style=name_style,
            )
            for item in manifest
        ]
    write_oci_layout(root, entries)
    with open(os.path.join(root, "index.json")) as handle:
        index = json.load(handle)
    digests = {}
    for descriptor in index["manifests"]:
        with open(os.path.join(root, "blobs", "sha256", descriptor["digest"].split(":")[1]), "rb") as handle:
            config_digest = json.load(handle)["config"]["digest"]
        digests[config_digest] = descriptor["digest"]
    return digests


def _full_name(familiar: str) -> str:
    name, _, tag = familiar.rpartition(":")
    first = name.split("/")[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    return f"{name}:{tag}"


def write_docker25_archive(path: str, images: list[tuple[Image, list[str]]], workdir: str) -> str:
    """The archive Docker 25+ writes: an OCI layout (uncompressed layers) plus manifest.json.
    As Docker does, index.json lists only tagged images (an image saved by ID is in
    manifest.json alone), and with none its manifests list is null (Go's nil slice)."""
    root = os.path.join(workdir, "docker25-layout")
    write_oci_layout(
        root, [LayoutEntry(image, [_full_name(t) for t in tags], compression="none") for image, tags in images]
    )
    with open(os.path.join(root, "index.json")) as handle:
        index = json.load(handle)
    index["manifests"] = [entry for entry in index["manifests"] if entry.get("annotations")] or None
    with open(os.path.join(root, "index.json"), "w") as handle:
        json.dump(index, handle)
    manifest = [
        {
            "Config": "blobs/sha256/" + image.image_id.split(":")[1],
            "RepoTags": tags or None,
            "Layers": ["blobs/sha256/" + d.split(":")[1] for d in image.diff_ids],
        }
        for image, tags in images
    ]
    with open(os.path.join(root, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for directory, _, files in sorted(os.walk(root)):
            for name in sorted(files):
                full = os.path.join(directory, name)
                archive.add(full, arcname=os.path.relpath(full, root))
    return path
