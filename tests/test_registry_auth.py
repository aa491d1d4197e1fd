"""Where registry credentials come from: the same precedence as docker and podman, with
real `docker-credential-*` helper programs written by the test."""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable, Iterator

import pytest

from tarexport.errors import TarexportError
from tarexport.sources.registry import RegistryContainer, RegistrySettings
from tarexport.sources.registry_auth import Credentials, find_credentials

pytestmark = pytest.mark.unit


def basic(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def home(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """An empty DOCKER_CONFIG, no REGISTRY_AUTH_FILE or podman runtime file, a bin dir on PATH."""
    docker = tmp_path / "docker"
    docker.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path


def write(path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def helper(home, name: str, user: str, secret: str) -> None:
    """A credential helper that logs the server it is asked for and answers for any."""
    script = home / "bin" / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\nread server\n"
        f'echo "$server" >> "{home}/{name}.log"\n'
        f'printf \'{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}\' "$server"\n'
    )
    script.chmod(0o755)


def asked(home, name: str) -> list[str]:
    log = home / f"{name}.log"
    return log.read_text().split() if log.exists() else []


def test_environment_variables_first(home, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home / "docker" / "config.json", {"auths": {"r.example": basic("file", "x")}})
    monkeypatch.setenv("U", "env-user")
    monkeypatch.setenv("P", "env-pass")
    assert find_credentials("r.example", "team/app", "U", "P") == Credentials("env-user", "env-pass")


def test_docker_precedence_helpers_then_store_then_auths(home) -> None:
    helper(home, "one", "from-helper", "s1")
    helper(home, "store", "from-store", "s2")
    config = home / "docker" / "config.json"
    write(config, {"credHelpers": {"r.example": "one"}, "credsStore": "store", "auths": {"r.example": basic("a", "b")}})
    assert find_credentials("r.example", "x") == Credentials("from-helper", "s1")
    assert find_credentials("other.example", "x") == Credentials("from-store", "s2")  # the store serves the rest
    assert asked(home, "one") == ["r.example"] and asked(home, "store") == ["other.example"]
    write(config, {"auths": {"https://r.example/v1/": basic("a", "b:c")}})
    assert find_credentials("r.example", "x") == Credentials("a", "b:c")  # a password may hold ':'
    assert find_credentials("s.example", "x") is None


def test_docker_hub_keys(home) -> None:
    helper(home, "desktop", "hub-user", "hub-secret")
    write(home / "docker" / "config.json", {"credHelpers": {"https://index.docker.io/v1/": "desktop"}})
    assert find_credentials("docker.io", "library/alpine") == Credentials("hub-user", "hub-secret")
    assert asked(home, "desktop") == ["https://index.docker.io/v1/"]
    write(home / "docker" / "config.json", {"auths": {"https://index.docker.io/v1/": basic("u", "p")}})
    assert find_credentials("docker.io", "library/alpine") == Credentials("u", "p")


def test_podman_repository_scoped_keys(home) -> None:
    auth = home / "run" / "containers" / "auth.json"  # podman's default auth file
    keys = {"quay.io": basic("any", "0"), "quay.io/orga": basic("a", "1"), "quay.io/orgb": basic("b", "2")}
    write(auth, {"auths": keys})
    assert find_credentials("quay.io", "orgb/tool") == Credentials("b", "2")
    assert find_credentials("quay.io", "orga/app") == Credentials("a", "1")
    assert find_credentials("quay.io", "orgab/app") == Credentials("any", "0")  # a path prefix, not a string one


def test_identity_tokens(home) -> None:
    helper(home, "oauth", "<token>", "refresh-123")
    write(home / "docker" / "config.json", {"credHelpers": {"r.example": "oauth"}})
    assert find_credentials("r.example", "x") == Credentials(identity_token="refresh-123")
    write(home / "docker" / "config.json", {"auths": {"s.example": {"identitytoken": "refresh-456"}}})
    assert find_credentials("s.example", "x") == Credentials(identity_token="refresh-456")


def test_helper_problems_are_one_line(home) -> None:
    config = home / "docker" / "config.json"
    write(config, {"credsStore": "absent"})
    with pytest.raises(TarexportError, match="docker-credential-absent is not on PATH"):
        find_credentials("r.example", "x")
    script = home / "bin" / "docker-credential-broken"
    # a helper failing after it printed the secret: none of its output may reach the error
    script.write_text(
        '#!/bin/sh\necho \'{"Username":"u","Secret":"hunter2"}\'\necho \'keychain hunter2\' >&2\nexit 3\n'
    )
    script.chmod(0o755)
    write(config, {"credsStore": "broken"})
    with pytest.raises(TarexportError, match=r"docker-credential-broken failed \(exit status 3\)") as failed:
        find_credentials("r.example", "x")
    assert "hunter2" not in str(failed.value)
    script.write_text("#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n")
    assert find_credentials("r.example", "x") is None  # anonymous, as in Docker
    write(config, {"auths": {"r.example": {"auth": 12345}}})
    with pytest.raises(TarexportError, match=r"the `auth` entry for r\.example is not base64"):
        find_credentials("r.example", "x")
    config.write_text("{not json")
    with pytest.raises(TarexportError, match="is not readable JSON"):
        find_credentials("r.example", "x")


@contextlib.contextmanager
def refusing_registry(token: Callable[[int], str]) -> Iterator[tuple[RegistryContainer, list[str]]]:
    """A registry that answers 401 to everything but its token server, which gives
    `token(number of requests so far)`; yields a client of it and the paths asked."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path.startswith("/token"):
                body = json.dumps({"token": token(len(seen))}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = RegistrySettings(url=f"http://127.0.0.1:{server.server_address[1]}", insecure=True, retries=0)
        yield RegistryContainer(settings, "private/app", "test-registry"), seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_registry_that_refuses_every_token_is_not_asked_forever(home) -> None:
    """Like Docker Hub for a private or misspelled repository: each token works at the token
    server, and the registry still answers 401. One new token per request, then one line."""
    with refusing_registry(lambda count: f"t{count}") as (registry, seen):  # a new token each time
        with pytest.raises(TarexportError, match=r"refused access \(401\) to /v2/private/app/manifests/1"):
            registry.resolve_tag("1")
        assert len(seen) <= 8, seen  # HEAD, then GET: each at most 401, token, 401


def test_a_token_no_header_can_carry_is_refused_without_quoting_it(home) -> None:
    """http.client refuses a header value with CR or LF and quotes the value in its error:
    a token server's answer must not reach a traceback or a message."""
    with refusing_registry(lambda count: "secret-part\r\nX-Injected: 1") as (registry, _):
        with pytest.raises(TarexportError, match="gave a token no HTTP header can carry") as refused:
            registry.resolve_tag("1")
        assert "secret-part" not in str(refused.value)
