"""The Docker 20.10 oracle: images built and saved by a real engine, and the real loaders."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass

from tests.engines import DockerEngine, Podman, require
from tests.imagefactory import Image, make_image, write_docker_archive

APP_DOCKERFILE = """FROM base:1
COPY c.txt /c.txt
ENV A="x<y>&z" B=ünïcødé C='quote " and \\\\ backslash'
LABEL "k<"="v&" z=1 "org.example/ü"="✓"
EXPOSE 80/tcp 53/udp
VOLUME /data /logs
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=4 CMD ["/bin/true"]
ONBUILD COPY a /a
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-c"]
CMD ["run", "--flag"]
ENTRYPOINT ["/entry"]
WORKDIR /work
USER 1000:1000
"""


def load_image(engine: DockerEngine, root: str, image: Image, tag: str) -> str:
    path = write_docker_archive(os.path.join(root, f"load-{tag.replace(':', '-')}.tar"), [(image, [tag])])
    engine.docker("load", "-i", path)
    return image.image_id


@dataclass
class Oracle:
    engine: DockerEngine
    root: str
    ids: dict[str, str]  # scenario -> image ID

    def save(self, name: str, *images: str) -> str:
        path = os.path.join(self.root, name)
        self.engine.docker("save", "-o", path, *images)
        return path


def start_oracle(root: str):
    """Build the scenario images in a private engine; yields the Oracle, then stops it."""
    engine = DockerEngine()
    context = os.path.join(root, "context")
    os.makedirs(context)
    for name, text in {"a.txt": "alpha\n", "b.txt": "bravo\n", "c.txt": "charlie\n"}.items():
        with open(os.path.join(context, name), "w") as handle:
            handle.write(text)
    try:
        ids = {
            "base": engine.build(context, "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n", "base:1"),
            "app": engine.build(context, APP_DOCKERFILE, "app:1", "registry.example:5000/team/app:v2"),
            # the app's COPY c.txt layer again, on another chain
            "solo": engine.build(context, "FROM scratch\nCOPY c.txt /c.txt\nLABEL solo=1\n", "solo:1"),
            # one diff repeated within one image: the builder cannot make one, `docker load` can
            "rep": load_image(engine, root, make_image([{"a": b"A"}, {"b": b"B"}, {"a": b"A"}]), "rep:1"),
            "untagged": engine.build(context, 'FROM scratch\nCOPY b.txt /x/b.txt\nCMD ["x"]\n'),
            # one step on base:1, so the builder records base:1 as its parent
            "child": engine.build(context, "FROM base:1\nCOPY c.txt /c2.txt\n", "child:1"),
        }
        engine.docker("tag", "base:1", "base:latest")
        yield Oracle(engine, root, ids)
    finally:
        engine.stop()


MULTI = ["base", "app:1", "solo:1", "rep:1"]


def members(path: str) -> dict[str, tuple[str, int, bytes | str]]:
    """name -> (type, mtime, content or link target)."""
    out = {}
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            if member.issym():
                out[member.name] = ("sym", member.mtime, member.linkname)
            elif member.isdir():
                out[member.name] = ("dir", member.mtime, b"")
            else:
                out[member.name] = ("file", member.mtime, archive.extractfile(member).read())  # type: ignore[union-attr]
    return out


def resolved(path: str) -> dict[str, bytes]:
    """name -> bytes, symlinks followed: what a loader sees, whichever copy Docker kept."""
    entries = members(path)
    out = {}
    for name, (kind, _, content) in entries.items():
        while kind == "sym":
            name_target = os.path.normpath(os.path.join(os.path.dirname(name), str(content)))
            kind, _, content = entries[name_target]
        if kind == "file":
            out[name] = content
    return out


def assert_same_as_docker(ours: str, docker: str) -> None:
    """File for file; mtimes too, except where Docker writes the time of the save.

    manifest.json is compared by the callers: its order is Docker's map order.
    """
    our_entries, docker_entries = members(ours), members(docker)
    assert sorted(our_entries) == sorted(docker_entries)
    our_files, docker_files = resolved(ours), resolved(docker)
    del our_files["manifest.json"], docker_files["manifest.json"]
    assert our_files == docker_files
    symlinked_dirs = {n.split("/")[0] for n, e in docker_entries.items() if e[0] == "sym"}
    symlinked_dirs |= {n.split("/")[0] for n, e in our_entries.items() if e[0] == "sym"}
    # a v1 dir several images share gets the `created` of whichever Docker saved first (map order)
    users: dict[str, set[int]] = {}
    for item in manifest_of(docker):
        created = docker_entries[str(item["Config"])][1]
        for layer in item["Layers"]:  # type: ignore[attr-defined]
            users.setdefault(layer.split("/")[0], set()).add(created)
    for name, (_kind, mtime, _) in docker_entries.items():
        directory = name.split("/")[0]
        if directory in symlinked_dirs:
            continue  # Docker leaves the save time on these (moby #42766)
        if len(users.get(directory, ())) > 1:
            assert {mtime, our_entries[name][1]} <= users[directory], f"mtime of {name}"
            continue
        assert our_entries[name][1] == mtime, f"mtime of {name}"
    with tarfile.open(ours) as archive:
        for member in archive.getmembers():
            assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "root", "root")


def manifest_of(path: str) -> list[dict[str, object]]:
    with tarfile.open(path) as archive:
        return json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]


def member_bytes(path: str, name: str) -> bytes:
    with tarfile.open(path) as archive:
        return archive.extractfile(name).read()  # type: ignore[union-attr]


def expected_tags(oracle: Oracle) -> dict[str, set[str]]:
    return {
        oracle.ids["base"]: {"base:1", "base:latest"},
        oracle.ids["app"]: {"app:1"},
        oracle.ids["solo"]: {"solo:1"},
        oracle.ids["rep"]: {"rep:1"},
        oracle.ids["untagged"]: set(),
    }


def familiar(name: str) -> str:
    for prefix in ("localhost/", "docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def assert_docker_loads(archive: str, oracle: Oracle, expected: dict[str, set[str]] | None = None) -> None:
    """A fresh Docker 20.10 engine loads the archive: the same IDs, tags, layers and config."""
    expected = expected if expected is not None else expected_tags(oracle)
    fresh = DockerEngine()
    try:
        fresh.docker("load", "-i", archive)
        assert fresh.images() == expected
        for image_id in expected:
            inspect = json.loads(fresh.docker("image", "inspect", image_id))[0]
            original = json.loads(oracle.engine.docker("image", "inspect", image_id))[0]
            assert inspect["RootFS"] == original["RootFS"]
            assert inspect["Config"] == original["Config"]
    finally:
        fresh.stop()


def assert_podman_loads(archive: str, expected: dict[str, set[str]]) -> None:
    require("podman")
    podman = Podman()
    try:
        podman.podman("load", "-i", archive)
        loaded = {image_id: {familiar(n) for n in names} for image_id, names in podman.images().items()}
        assert loaded == expected
    finally:
        podman.stop()


def skopeo(*args: str) -> bytes:
    return subprocess.run(["skopeo", *args], capture_output=True, check=True).stdout


def assert_skopeo_reads(archive: str, expected: dict[str, set[str]], transport: str = "docker-archive") -> None:
    """skopeo finds each tag with its config; with oci-archive, by ref name (the tag alone)."""
    require("skopeo")
    for image_id, tags in expected.items():
        for tag in tags:
            ref = f"{transport}:{archive}:{tag if transport == 'docker-archive' else tag.rsplit(':', 1)[1]}"
            raw = skopeo("inspect", "--raw", "--config", ref)
            assert "sha256:" + hashlib.sha256(raw).hexdigest() == image_id
            info = json.loads(skopeo("inspect", ref))
            assert len(info["Layers"]) == len(json.loads(raw)["rootfs"]["diff_ids"])
