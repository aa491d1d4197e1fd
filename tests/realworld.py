"""A real-world corpus, made on the test machine by the tools users have.

Docker 20.10 builds a debootstrapped Debian 12 and images on it holding every file kind a
layer can carry; skopeo converts them to gzip and zstd layouts; umoci and buildah/podman
write images of their own, with their own tar writers. The tests export them all and hold
the result against Docker's own `docker save` and the four loaders.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass

from tests.engines import DockerEngine
from tests.imagefactory import Image, LayoutEntry, make_config, write_docker_archive, write_oci_layout

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Where `.ci/run` starts debootstrap early, in the background, so its download overlaps
# other tests; without it the corpus runs debootstrap itself.
PREPARED_ROOT = "TAREXPORT_DEBIAN_ROOT"

CAP_NET_RAW = 13


def run(*command: str, cwd: str | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, cwd=cwd, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return result.stdout.decode(errors="replace")


def debootstrap(root: str) -> None:
    run("debootstrap", "--variant=minbase", DEBIAN_SUITE, root, DEBIAN_MIRROR)


def debian_root(base: str) -> str:
    """A minimal Debian 12 root file system from debootstrap (or the one CI prepared)."""
    prepared = os.environ.get(PREPARED_ROOT, "")
    if prepared:
        done = prepared + ".done"
        deadline = time.monotonic() + 900
        while not os.path.exists(done) and time.monotonic() < deadline:
            time.sleep(1)
        if os.path.isfile(os.path.join(prepared, "etc", "debian_version")):
            return prepared
    root = os.path.join(base, "debian")
    debootstrap(root)
    return root


def prepare_in_background(root: str) -> None:
    """debootstrap into `root`, then write `root`.done (what tests/run-all.sh starts early)."""
    try:
        debootstrap(root)
        outcome = "ok"
    except RuntimeError as error:
        outcome = str(error)
    with open(root + ".done", "w") as handle:
        handle.write(outcome + "\n")


def root_tar(root: str, path: str) -> str:
    """GNU tar of the root, xattrs and numeric owners kept; apt's downloaded .debs left out."""
    run(
        "tar",
        "--create",
        "--file",
        path,
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
        "--exclude=./var/cache/apt/archives/*.deb",
        "--exclude=./dev/*",
        "-C",
        root,
        ".",
    )
    return path


def file_capability(cap: int) -> bytes:
    """security.capability for +ep of one capability (VFS_CAP_REVISION_2, effective bit set)."""
    return struct.pack("<IIIII", 0x02000001, 1 << cap, 0, 0, 0)


def _entry(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1_700_000_000
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def kinds_tar(path: str) -> str:
    """Every file kind a layer can carry, as a tar that `ADD` extracts into the image."""
    big = random.Random(7).randbytes(12 << 20)
    long_dir = "d" * 90
    very_long = "/".join(["x" * 100] * 3)  # a path past 255 bytes, each name within NAME_MAX
    latin1 = b"caf\xe9-\xff.bin".decode("utf-8", "surrogateescape")  # not UTF-8
    files: list[tuple[tarfile.TarInfo, bytes]] = [
        (_entry("plain"), b"plain\n"),
        (_entry("empty"), b""),
        (_entry("big.bin"), big),
        (_entry("setuid", mode=0o4755), b"#!/bin/sh\n"),
        (_entry("setgid", mode=0o2755), b"#!/bin/sh\n"),
        (_entry("owned", uid=1000, gid=1000, uname="app", gname="app"), b"mine\n"),
        (
            _entry(
                "caps",
                mode=0o755,
                pax_headers={
                    "SCHILY.xattr.security.capability": file_capability(CAP_NET_RAW).decode("utf-8", "surrogateescape"),
                    "SCHILY.xattr.user.note": "kept by ADD, dropped by Docker's tar writer",
                },
            ),
            b"\x7fELF-ish\n",
        ),
        (_entry(f"{long_dir}/{'f' * 60}"), b"over 100 bytes\n"),
        (_entry(f"{very_long}/leaf"), b"over 255 bytes\n"),
        (_entry(latin1), b"latin-1 name\n"),
        (_entry("ünïcødé-✓"), b"utf-8 name\n"),
    ]
    others = [
        _entry("sticky", tarfile.DIRTYPE, 0o1777),
        _entry(long_dir, tarfile.DIRTYPE, 0o755),
        _entry("hard", tarfile.LNKTYPE, linkname="plain"),
        _entry("relative", tarfile.SYMTYPE, 0o777, linkname="plain"),
        _entry("absolute", tarfile.SYMTYPE, 0o777, linkname="/etc/os-release"),
        _entry("dangling", tarfile.SYMTYPE, 0o777, linkname="nowhere"),
        _entry("null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3),
        _entry("loop9", tarfile.BLKTYPE, 0o660, devmajor=7, devminor=9),
        _entry("fifo", tarfile.FIFOTYPE, 0o600),
    ]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape") as archive:
        for info in others[:2]:
            archive.addfile(info)
        for info, data in files:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in others[2:]:
            archive.addfile(info)
    return path


def sparse_file(path: str, size: int) -> str:
    """A file of `size` bytes with three small extents and holes between."""
    with open(path, "wb") as handle:
        for offset in (0, size // 2, size - 4096):
            handle.seek(offset)
            handle.write(random.Random(offset).randbytes(4096))
    return path


def gnu_sparse_layer(base: str) -> bytes:
    """A layer tar GNU tar writes with --sparse (PAX sparse 1.0 headers), as some pipelines do."""
    tree = os.path.join(base, "sparse-tree")
    os.makedirs(os.path.join(tree, "data"))
    sparse_file(os.path.join(tree, "data", "holes.img"), 8 << 20)
    with open(os.path.join(tree, "data", "notes"), "w") as handle:
        handle.write("beside the holes\n")
    path = os.path.join(base, "sparse-layer.tar")
    run("tar", "--create", "--sparse", "--format=posix", "--mtime=@1700000000", "--file", path, "-C", tree, "data")
    with open(path, "rb") as handle:
        return handle.read()


def sparse_layout(base: str) -> tuple[str, str]:
    """An OCI layout whose one layer GNU tar wrote with --sparse. Docker 20.10 loads such
    a layer but cannot save it again ("could not verify layer data": its tar-split
    rebuilds a sparse entry from the expanded file), so it stays out of Docker's save."""
    layers = [gnu_sparse_layer(base)]
    image = Image(layers, make_config(layers, config={"Cmd": ["/bin/sh"]}))
    name = "docker.io/sparse/gnu:1"
    return write_oci_layout(os.path.join(base, "sparse-layout"), [LayoutEntry(image, [name])]), name


def whiteout_layers() -> list[bytes]:
    """Files, then a layer deleting one of them (.wh.) and emptying a directory (opaque)."""

    def layer(entries: list[tuple[str, bytes | None]]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for name, data in entries:
                if data is None:
                    archive.addfile(_entry(name, tarfile.DIRTYPE, 0o755))
                else:
                    info = _entry(name)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    first = layer([("etc", None), ("etc/gone", b"x"), ("etc/kept", b"y"), ("cache", None), ("cache/a", b"a")])
    second = layer([("etc", None), ("etc/.wh.gone", b""), ("cache", None), ("cache/.wh..wh..opq", b"")])
    return [first, second]


@dataclass
class DockerBuilt:
    """The images Docker 20.10 built or loaded, and its own save of them."""

    engine: DockerEngine
    tags: list[str]
    ids: dict[str, str]  # tag -> image ID
    save: str


KINDS_DOCKERFILE = """FROM realworld/debian:12
ADD kinds.tar /kinds/
COPY sparse.img /kinds/sparse.img
COPY empty/ /
LABEL org.example.empty-layers="ENV, LABEL and a COPY of nothing"
ENV KIND=all
"""


def build_docker_images(engine: DockerEngine, base: str, rootfs_tar: str) -> DockerBuilt:
    context = os.path.join(base, "context")
    os.makedirs(os.path.join(context, "empty"))
    os.link(rootfs_tar, os.path.join(context, "debian.tar"))
    kinds_tar(os.path.join(context, "kinds.tar"))
    sparse_file(os.path.join(context, "sparse.img"), 64 << 20)
    for number in range(60):
        with open(os.path.join(context, f"step{number}"), "w") as handle:
            handle.write(f"step {number}\n")
    chain = "FROM scratch\n" + "".join(f"COPY step{n} /chain/step{n}\n" for n in range(60)) + 'CMD ["/x"]\n'
    ids = {
        "realworld/debian:12": engine.build(
            context, 'FROM scratch\nADD debian.tar /\nENV LANG=C.UTF-8\nCMD ["bash"]\n', "realworld/debian:12"
        ),
        "realworld/kinds:1": engine.build(context, KINDS_DOCKERFILE, "realworld/kinds:1"),
        "realworld/chain:60": engine.build(context, chain, "realworld/chain:60"),
    }
    # Docker 20.10's builder makes no layer for a COPY of nothing: load one
    layers = [*whiteout_layers(), bytes(1024)]
    loaded = Image(layers, make_config(layers, config={"Cmd": ["/bin/sh"]}))
    engine.docker(
        "load", "-i", write_docker_archive(os.path.join(base, "loaded.tar"), [(loaded, ["realworld/loaded:1"])])
    )
    ids["realworld/loaded:1"] = loaded.image_id
    save = os.path.join(base, "docker-save.tar")
    engine.docker("save", "-o", save, *ids)
    return DockerBuilt(engine, list(ids), ids, save)


def skopeo_layout(save: str, tags: list[str], layout: str, compression: str) -> dict[str, str]:
    """Each tag of a docker-save archive copied into one OCI layout, layers recompressed.

    Returns tag -> the layout's ref name (the tag with the repository prefixed by the
    compression, so several layouts can sit in one bundle under distinct names)."""
    names = {}
    for tag in tags:
        repository, version = tag.rsplit(":", 1)
        name = f"{compression}/{repository}:{version}"
        run(
            "skopeo",
            "copy",
            "--dest-compress",
            "--dest-compress-format",
            compression,
            f"docker-archive:{save}:{tag}",
            f"oci:{layout}:{name}",
        )
        names[tag] = name
    return names


def umoci_layout(base: str) -> tuple[str, list[str]]:
    """Two images written by umoci (its own tar writer, gzip), the second deleting a file."""
    layout = os.path.join(base, "umoci")
    bundle = os.path.join(base, "umoci-bundle")
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:one")
    run("umoci", "unpack", "--image", f"{layout}:one", bundle)
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(rootfs, "srv", "sub"))
    for name, text in {"srv/a": "a\n", "srv/sub/b": "b\n", "srv/gone": "soon deleted\n"}.items():
        with open(os.path.join(rootfs, name), "w") as handle:
            handle.write(text)
    os.link(os.path.join(rootfs, "srv", "a"), os.path.join(rootfs, "srv", "a-hard"))
    os.symlink("sub/b", os.path.join(rootfs, "srv", "b-link"))
    os.chmod(os.path.join(rootfs, "srv", "a"), 0o4755)
    os.mkfifo(os.path.join(rootfs, "srv", "fifo"))
    os.mknod(os.path.join(rootfs, "srv", "zero"), 0o666 | 0o020000, os.makedev(1, 5))
    os.setxattr(os.path.join(rootfs, "srv", "sub", "b"), "user.origin", b"umoci")
    run("umoci", "repack", "--image", f"{layout}:one", bundle)
    run("umoci", "config", "--image", f"{layout}:one", "--config.cmd", "/srv/a", "--tag", "one")
    run("umoci", "tag", "--image", f"{layout}:one", "two")
    os.unlink(os.path.join(rootfs, "srv", "gone"))
    with open(os.path.join(rootfs, "srv", "new"), "w") as handle:
        handle.write("second image\n")
    run("umoci", "repack", "--image", f"{layout}:two", bundle)
    return layout, ["one", "two"]


class Buildah:
    """buildah and podman sharing one private store (vfs), as on a build host."""

    def __init__(self, base: str) -> None:
        # podman refuses a run root past 50 characters (pytest's, under -n, are longer)
        self.runroot = tempfile.mkdtemp(prefix="txbr", dir="/tmp")
        self.options = ["--root", os.path.join(base, "store"), "--runroot", self.runroot, "--storage-driver", "vfs"]

    def stop(self) -> None:
        subprocess.run(["umount", "-R", self.runroot], capture_output=True)
        shutil.rmtree(self.runroot, ignore_errors=True)

    def buildah(self, *args: str) -> str:
        return run("buildah", *self.options, *args).strip()

    def podman(self, *args: str) -> str:
        return run("podman", *self.options, *args).strip()


def buildah_sources(base: str) -> tuple[str, str, list[str]]:
    """Two images buildah committed (docker format), saved by podman as one docker-archive,
    and pushed by buildah to an OCI layout. Returns (archive, layout, names)."""
    tool = Buildah(os.path.join(base, "buildah"))
    try:
        return buildah_images(tool, base)
    finally:
        tool.stop()


def buildah_images(tool: Buildah, base: str) -> tuple[str, str, list[str]]:
    tree = os.path.join(base, "buildah-tree")
    os.makedirs(os.path.join(tree, "app"))
    with open(os.path.join(tree, "app", "run.sh"), "w") as handle:
        handle.write("#!/bin/sh\necho hi\n")
    os.chmod(os.path.join(tree, "app", "run.sh"), 0o755)
    os.symlink("run.sh", os.path.join(tree, "app", "start"))
    first = tool.buildah("from", "scratch")
    tool.buildah("copy", first, os.path.join(tree, "app"), "/app")
    tool.buildah("config", "--cmd", "/app/start", "--label", "made.by=buildah", first)
    tool.buildah("commit", "--format", "docker", first, "localhost/built/first:1")
    second = tool.buildah("from", "localhost/built/first:1")
    with open(os.path.join(tree, "extra"), "w") as handle:
        handle.write("on top\n")
    tool.buildah("copy", second, os.path.join(tree, "extra"), "/app/extra")
    tool.buildah("commit", "--format", "oci", second, "localhost/built/second:1")
    names = ["localhost/built/first:1", "localhost/built/second:1"]
    archive = os.path.join(base, "podman-save.tar")
    tool.podman("save", "-m", "--format", "docker-archive", "-o", archive, *names)
    layout = os.path.join(base, "buildah-layout")
    for name in names:
        tool.buildah("push", name, f"oci:{layout}:{name.replace('localhost/built/', 'pushed/')}")
    return archive, layout, names


if __name__ == "__main__":
    prepare_in_background(sys.argv[1])
