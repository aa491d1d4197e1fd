"""Registry sources against a real registry (CNCF distribution 2.8 on 127.0.0.1):
the same archive as from a layout, each blob downloaded once, auth and TLS."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess

import pytest

from tests.engines import Registry, require
from tests.imagefactory import Image, LayoutEntry, compress, make_config, make_layer, sha, write_oci_layout
from tests.workflowrun import export, sha256_file, snakemake, write_config

pytestmark = pytest.mark.engines

BASE = make_layer({"base": os.urandom(200_000)})
A = Image([BASE, make_layer({"app": b"a1"})], b"")
A.config = make_config(A.layers, config={"Cmd": ["a"]})
B = Image([BASE, make_layer({"app": b"b1"})], b"")
B.config = make_config(B.layers, config={"Cmd": ["b"]})
C = Image([BASE, make_layer({"app": b"a2"})], b"")
C.config = make_config(C.layers, config={"Cmd": ["a2"]})


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The images to push, named by bare ref names (a, b, c) as skopeo's oci: transport wants."""
    require("docker-registry")
    require("skopeo")
    entries = [LayoutEntry(A, ["a"]), LayoutEntry(B, ["b"]), LayoutEntry(C, ["c"])]
    return write_oci_layout(str(tmp_path_factory.mktemp("push") / "layout"), entries)


@pytest.fixture
def registry(layout: str):
    server = Registry()
    server.push(layout, "a", "bench/a:1")
    server.push(layout, "b", "bench/b:1")
    yield server
    server.stop()


def blob(layer: bytes) -> str:
    """The digest of a layer as pushed: gzip-compressed by the test layout, kept by skopeo."""
    return sha(compress(layer, "gzip"))


def archive(work: str) -> str:
    return os.path.join(work, "results", "images.tar")


def source_of(server: Registry, **extra: object) -> dict[str, object]:
    return {"type": "registry", "url": server.url, "insecure": server.url.startswith("http:"), **extra}


def test_same_archive_as_from_a_layout(registry: Registry, tmp_path) -> None:
    names = [f"{registry.host}/bench/a:1", f"{registry.host}/bench/b:1"]
    from_registry = str(tmp_path / "registry")
    from_layout = str(tmp_path / "layout")
    os.makedirs(from_registry)
    os.makedirs(from_layout)
    export(from_registry, sources=[source_of(registry)], images=names)
    local = write_oci_layout(str(tmp_path / "local"), [LayoutEntry(A, [names[0]]), LayoutEntry(B, [names[1]])])
    export(from_layout, sources=[local], images=names)
    assert sha256_file(archive(from_registry)) == sha256_file(archive(from_layout))
    for fmt in ("oci",):  # the OCI layout too, uncompressed layers
        work = str(tmp_path / fmt)
        os.makedirs(work)
        export(work, sources=[source_of(registry)], images=names, format=fmt)


def test_each_blob_is_downloaded_once(registry: Registry, layout: str, tmp_path) -> None:
    work = str(tmp_path)
    names = [f"{registry.host}/bench/a:1", f"{registry.host}/bench/b:1"]
    export(work, sources=[source_of(registry)], images=names)
    first = registry.blob_downloads()
    # each config and layer blob once; the shared base layer once for both images
    assert sorted(first) == sorted({A.image_id, B.image_id, blob(BASE), blob(A.layers[1]), blob(B.layers[1])})

    again = export(work, sources=[source_of(registry)], images=names)
    assert registry.blob_downloads() == first and again.nothing_to_do

    registry.push(layout, "c", "bench/a:1")  # the tag moves
    moved = export(work, sources=[source_of(registry)], images=names)
    new = registry.blob_downloads()[len(first) :]
    assert sorted(new) == sorted([C.image_id, blob(C.layers[1])])  # its config and its new layer only
    assert moved.jobs["layer_tar"] == 1


def test_digest_reference(registry: Registry, tmp_path) -> None:
    digest = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{registry.host}/bench/b:1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    work = str(tmp_path)
    export(work, sources=[source_of(registry)], images=[f"{registry.host}/bench/b@{digest}"])
    import json
    import tarfile

    with tarfile.open(archive(work)) as result:
        manifest = json.load(result.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] is None and manifest[0]["Config"] == B.image_id.split(":")[1] + ".json"


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("tarexport: error:")]
    assert lines and "Traceback" not in output, output[-3000:]
    return lines[0]


def failed_line(work: str, secrets: tuple[str, ...] = (), **config: object) -> str:
    """Export with `config` in a new directory `work`, expecting failure: its one error line.
    No secret may be in the output or in any file the failed run wrote."""
    os.makedirs(work, exist_ok=True)
    run = snakemake(work, configfile=write_config(work, **config))
    assert run.returncode != 0
    for secret in secrets:
        assert secret not in run.output
        assert_secret_nowhere(work, secret)
    return one_line(run.output)


def basic_secrets(user: str, password: str) -> tuple[str, str]:
    """A password, and the form it travels in (HTTP Basic)."""
    return password, base64.b64encode(f"{user}:{password}".encode()).decode()


# published beside the archive: the provenance statement records the configuration
EVERY_SIDE_FILE = ["sha256", "images", "provenance"]


def assert_secret_nowhere(work: str, secret: str) -> None:
    """Not in any file of the work directory: Snakemake's metadata, logs, build files, the
    archive and the files beside it, the job scripts Snakemake writes."""
    for directory, _, files in os.walk(work):
        for file in files:
            with open(os.path.join(directory, file), "rb") as handle:
                assert secret.encode() not in handle.read(), file


def test_plain_http_needs_insecure(registry: Registry, tmp_path) -> None:
    line = failed_line(
        str(tmp_path), sources=[{"type": "registry", "url": registry.url}], images=[f"{registry.host}/bench/a:1"]
    )
    assert "plain http needs `insecure: true`" in line


def test_basic_auth(layout: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cret-pa55word"
    server = Registry(user=("alice", secret))
    try:
        server.push(layout, "a", "bench/a:1", user=("alice", secret))
        source = source_of(server, username_env="TX_USER", password_env="TX_PASSWORD")
        name = f"{server.host}/bench/a:1"
        monkeypatch.setenv("TX_USER", "alice")
        monkeypatch.setenv("TX_PASSWORD", "wr0ng-pa55")
        bad = str(tmp_path / "bad")
        assert "401" in failed_line(bad, basic_secrets("alice", "wr0ng-pa55"), sources=[source], images=[name])
        assert not os.path.exists(archive(bad))
        monkeypatch.setenv("TX_PASSWORD", secret)
        # the right password, then a failure (a missing image): the secret is nowhere either
        missing = str(tmp_path / "missing")
        line = failed_line(missing, basic_secrets("alice", secret), sources=[source], images=[name + "-gone"])
        assert "bench/a:1-gone" in line
        good = str(tmp_path / "good")
        os.makedirs(good)
        run = export(good, sources=[source], images=[name], side_files=EVERY_SIDE_FILE)
        assert secret not in run.output
        assert os.path.isfile(archive(good) + ".provenance.json")  # so the scan below read it
        assert_secret_nowhere(good, secret)
    finally:
        server.stop()


def test_tls_with_a_custom_ca(layout: str, tmp_path) -> None:
    server = Registry(tls=True)
    try:
        server.push(layout, "a", "bench/a:1")
        name = f"{server.host}/bench/a:1"
        untrusted = str(tmp_path / "untrusted")
        line = failed_line(untrusted, sources=[{"type": "registry", "url": server.url}], images=[name])
        assert "CERTIFICATE_VERIFY_FAILED" in line
        trusted = str(tmp_path / "trusted")
        os.makedirs(trusted)
        export(trusted, sources=[{"type": "registry", "url": server.url, "ca_file": server.ca_file}], images=[name])
        assert os.path.isfile(archive(trusted))
    finally:
        server.stop()


def test_token_auth(layout: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bearer tokens from the challenge's realm, for this repository's pull scope."""
    from tests.tokenserver import TokenServer

    tokens = TokenServer(users={"alice": "t0ken-pa55"})
    server = Registry(token=tokens)
    try:
        server.push(layout, "a", "bench/a:1", user=("alice", "t0ken-pa55"))
        name = f"{server.host}/bench/a:1"
        source = source_of(server, username_env="TX_USER", password_env="TX_PASSWORD")
        monkeypatch.setenv("TX_USER", "alice")
        monkeypatch.setenv("TX_PASSWORD", "n0pe-pa55")
        line = failed_line(str(tmp_path / "bad"), basic_secrets("alice", "n0pe-pa55"), sources=[source], images=[name])
        assert "auth server answered 401 (refused the credentials)" in line
        monkeypatch.setenv("TX_PASSWORD", "t0ken-pa55")
        # tokens granted, then a failure (a missing image): neither password nor token anywhere
        tokens.issued.clear()
        missing = str(tmp_path / "missing")
        failed_line(missing, sources=[source], images=[f"{server.host}/bench/gone:1"])
        assert tokens.issued
        for secret in (*basic_secrets("alice", "t0ken-pa55"), *tokens.issued):
            assert_secret_nowhere(missing, secret)
        tokens.requests.clear()
        good = str(tmp_path / "good")
        os.makedirs(good)
        export(good, sources=[source], images=[name], side_files=EVERY_SIDE_FILE)
        assert os.path.isfile(archive(good) + ".provenance.json")
        for secret in (*basic_secrets("alice", "t0ken-pa55"), *tokens.issued):
            assert_secret_nowhere(good, secret)
        asked = [r for r in tokens.requests if r["status"] == 200]
        assert asked and all(r["user"] == "alice" and r["scope"] == ["repository:bench/a:pull"] for r in asked)
        # the image's own bytes came through
        with open(os.path.join(good, "build", "configs", A.image_id.split(":")[1] + ".json"), "rb") as handle:
            assert handle.read() == A.config
    finally:
        server.stop()
        tokens.stop()


def test_identity_token_from_the_auth_file(layout: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `identitytoken` (what `docker login` stores for OAuth registries) is exchanged by
    the OAuth2 POST with grant_type=refresh_token."""
    import json

    from tests.tokenserver import TokenServer

    tokens = TokenServer(users={"alice": "pw"})
    server = Registry(token=tokens)
    try:
        server.push(layout, "a", "bench/a:1", user=("alice", "pw"))
        config_dir = tmp_path / "docker"
        config_dir.mkdir()
        refresh = tokens.new_refresh_token("alice")
        tokens.requests.clear()  # the push's own
        (config_dir / "config.json").write_text(json.dumps({"auths": {server.host: {"identitytoken": refresh}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
        monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
        work = str(tmp_path / "work")
        os.makedirs(work)
        export(work, sources=[source_of(server)], images=[f"{server.host}/bench/a:1"])
        grants = {(r["method"], r["grant_type"], r["client_id"]) for r in tokens.requests if r["status"] == 200}
        assert grants == {("POST", "refresh_token", "tarexport")}, tokens.requests
    finally:
        server.stop()
        tokens.stop()


HELPER = """#!/bin/sh
# a docker credential helper: `get` reads the server on stdin, answers JSON
read server
echo "$server" >> "{log}"
case "$server" in
  {host}) printf '{{"ServerURL":"%s","Username":"alice","Secret":"{secret}"}}' "$server" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


@pytest.mark.parametrize("style", ["credHelpers", "credsStore"])
def test_credential_helpers(layout: str, tmp_path, monkeypatch: pytest.MonkeyPatch, style: str) -> None:
    import json

    secret = "h3lper-secret"
    server = Registry(user=("alice", secret))
    try:
        server.push(layout, "a", "bench/a:1", user=("alice", secret))
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        helper = bin_dir / "docker-credential-txtest"
        log = tmp_path / "helper.log"
        helper.write_text(HELPER.format(log=log, host=server.host, secret=secret))
        helper.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
        config_dir = tmp_path / "docker"
        config_dir.mkdir()
        settings = {"credHelpers": {server.host: "txtest"}} if style == "credHelpers" else {"credsStore": "txtest"}
        # an `auths` entry for the host is ignored when a helper serves it, as in Docker
        settings["auths"] = {server.host: {"auth": "d3Jvbmc6d3Jvbmc="}}
        (config_dir / "config.json").write_text(json.dumps(settings))
        monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
        monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
        work = str(tmp_path / "work")
        os.makedirs(work)
        run = export(work, sources=[source_of(server)], images=[f"{server.host}/bench/a:1"])
        assert set(log.read_text().split()) == {server.host}
        assert secret not in run.output
        assert_secret_nowhere(work, secret)
        # a helper that knows no credentials for the host: anonymous, refused by the registry
        helper.write_text(HELPER.format(log=log, host="elsewhere", secret=secret))
        line = failed_line(str(tmp_path / "again"), sources=[source_of(server)], images=[f"{server.host}/bench/a:1"])
        assert "registry needs a user name and password and none are configured" in line
    finally:
        server.stop()


def test_a_missing_credential_helper(layout: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    server = Registry(user=("alice", "pw"))
    try:
        server.push(layout, "a", "bench/a:1", user=("alice", "pw"))
        (tmp_path / "config.json").write_text(json.dumps({"credsStore": "txabsent"}))
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
        monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
        line = failed_line(str(tmp_path / "work"), sources=[source_of(server)], images=[f"{server.host}/bench/a:1"])
        assert "credential helper docker-credential-txabsent is not on PATH" in line
    finally:
        server.stop()


def test_a_helper_failing_after_printing_its_secret_leaves_it_nowhere(
    layout: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure is reported by the helper's exit status; what it printed (here, the
    secret) is in no message and no file."""
    import json

    secret = "l3aked-by-helper"
    server = Registry(user=("alice", secret))
    try:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        helper = bin_dir / "docker-credential-txleak"
        helper.write_text(
            "#!/bin/sh\nread server\n"
            f'printf \'{{"ServerURL":"%s","Username":"alice","Secret":"{secret}"}}\' "$server"\n'
            f"echo 'Authorization: Basic {basic_secrets('alice', secret)[1]}' >&2\nexit 3\n"
        )
        helper.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
        (tmp_path / "config.json").write_text(json.dumps({"credsStore": "txleak"}))
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
        monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
        line = failed_line(
            str(tmp_path / "work"),
            basic_secrets("alice", secret),
            sources=[source_of(server)],
            images=[f"{server.host}/bench/a:1"],
        )
        assert "docker-credential-txleak" in line and "exit status 3" in line, line
    finally:
        server.stop()


def test_client_certificate(layout: str, tmp_path) -> None:
    server = Registry(tls=True, client_certs=True)
    try:
        server.push(layout, "a", "bench/a:1")
        name = f"{server.host}/bench/a:1"
        source = {"type": "registry", "url": server.url, "ca_file": server.ca_file, "retries": 0}
        assert "cannot reach the registry" in failed_line(str(tmp_path / "without"), sources=[source], images=[name])
        client = server.client_dir
        source |= {"cert_file": f"{client}/client.cert", "key_file": f"{client}/client.key"}
        work = str(tmp_path / "with")
        os.makedirs(work)
        export(work, sources=[source], images=[name])
        assert os.path.isfile(archive(work))
    finally:
        server.stop()


def push_multiplatform(server: Registry, root: str, attestations: bool = False) -> dict[str, Image]:
    """An index over linux/amd64 and linux/arm64 (with BuildKit's attestation manifests),
    pushed with `skopeo copy --all` as multi:1; returns its images by platform."""
    import json

    from tests.imagefactory import write_multiplatform_layout

    images = {}
    for arch in ("amd64", "arm64"):
        layers = [make_layer({"arch": arch.encode()})]
        images[f"linux/{arch}"] = Image(layers, make_config(layers, architecture=arch))
    layout = write_multiplatform_layout(root, images, "multi", attestations=attestations)
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = "multi"  # skopeo's oci: name
    with open(os.path.join(layout, "index.json"), "w") as handle:
        json.dump(index, handle)
    subprocess.run(["skopeo", "copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi",
                    f"docker://{server.host}/multi:1"], check=True, capture_output=True)  # fmt: skip
    return images


def test_platform_is_picked_from_an_index(tmp_path) -> None:
    """A tag naming a multi-platform index (pushed with `skopeo copy --all`): `platform` picks."""
    import json
    import tarfile

    server = Registry()
    try:
        images = push_multiplatform(server, str(tmp_path / "multi"))
        for platform, image in images.items():
            work = str(tmp_path / platform.replace("/", "-"))
            os.makedirs(work)
            export(work, sources=[source_of(server)], images=[f"{server.host}/multi:1"], platform=platform)
            with tarfile.open(archive(work)) as result:
                manifest = json.load(result.extractfile("manifest.json"))  # type: ignore[arg-type]
            assert manifest[0]["Config"] == image.image_id.split(":")[1] + ".json", platform
    finally:
        server.stop()


def test_attestations_come_from_a_registry_with_all_platforms(tmp_path) -> None:
    """An index pushed with its attestation manifests (as BuildKit pushes them): with
    `platforms: all` and format oci, layer jobs download their blobs and the archive keeps them."""
    import tarfile

    server = Registry()
    try:
        push_multiplatform(server, str(tmp_path / "multi"), attestations=True)
        work = str(tmp_path / "work")
        os.makedirs(work)
        config = {"sources": [source_of(server)], "images": [f"{server.host}/multi:1"], "format": "oci"}
        export(work, **config, platforms="all")
        with tarfile.open(archive(work)) as result:
            blobs = {m.name.rsplit("/", 1)[-1]: result.extractfile(m).read() for m in result if m.isfile()}  # type: ignore[union-attr]
        statements = [data for data in blobs.values() if b"https://in-toto.io/Statement" in data]
        assert len(statements) == 2  # one per platform, downloaded by their jobs
        downloaded = server.blob_downloads()
        assert all("sha256:" + hashlib.sha256(data).hexdigest() in downloaded for data in statements)
    finally:
        server.stop()
