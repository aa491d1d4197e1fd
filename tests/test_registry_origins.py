"""Registry credentials belong to one origin: what a registry's answers may not make us do.

In-process servers on 127.0.0.1 play a registry (with its token server) and a second
origin on another port that a redirect leads to; the second records every request it
gets. Neither the registry's password, its refresh token, a credential helper's secret
nor the registry's bearer token may ever reach it, and every refusal is one line. Also:
the WWW-Authenticate parser against the RFCs' examples, Retry-After values that are not
ASCII digits or an HTTP date, and registry URLs that cannot be parsed."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import os
import re
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tarexport.errors import TarexportError
from tarexport.sources.challenges import Challenge, ChallengeError, choose_challenge, parse_challenges
from tarexport.sources.download import backoff
from tarexport.sources.registry import RegistryContainer, RegistrySettings
from tarexport.startup import FailedPlan, plan_export
from tests.engines import free_port
from tests.imagefactory import sha
from tests.workflowrun import ROOT

pytestmark = pytest.mark.unit

USER = "registry-user"
PASSWORD = "registry-password-" + os.urandom(8).hex()
REFRESH_TOKEN = "registry-refresh-" + os.urandom(8).hex()
REGISTRY_TOKEN = "registry-token-" + os.urandom(8).hex()
SECRETS = (PASSWORD, REFRESH_TOKEN, REGISTRY_TOKEN)
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
CONFIG_DIGEST = sha(CONFIG)
REPOSITORY = "team/app"


@dataclass
class Seen:
    method: str
    path: str
    authorization: str
    body: bytes


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 (https with `tls`) answering with `answer(seen)`
    and recording every request it gets."""

    def __init__(self, answer: Callable[[Seen], Answer], tls: ssl.SSLContext | None = None):
        self.answer = answer
        self.requests: list[Seen] = []
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, self.headers.get("Authorization", ""), self.rfile.read(length))
                server.requests.append(seen)
                reply = server.answer(seen)
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_HEAD = do_POST = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if tls:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def leaked(requests: list[Seen]) -> list[str]:
    """The registry's secrets among what these requests carried (headers, paths, bodies;
    a Basic header's base64 decoded)."""
    found = []
    for seen in requests:
        carried = [seen.authorization, urllib.parse.unquote(seen.path), urllib.parse.unquote(seen.body.decode())]
        if seen.authorization.lower().startswith("basic "):
            with contextlib.suppress(ValueError):
                carried.append(base64.b64decode(seen.authorization[6:]).decode(errors="replace"))
        found += [secret for secret in SECRETS if any(secret in text for text in carried)]
    return found


def token_answer(seen: Seen) -> Answer:
    """The registry's token server: the registry's token for its password or refresh token."""
    form = urllib.parse.parse_qs(seen.body.decode())
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    if seen.authorization == basic or form.get("refresh_token") == [REFRESH_TOKEN]:
        return Answer(200, [("Content-Type", "application/json")], json.dumps({"token": REGISTRY_TOKEN}).encode())
    return Answer(401, [("WWW-Authenticate", 'Basic realm="token"')])


def bearer_challenge(url: str, service: str) -> tuple[str, str]:
    return ("WWW-Authenticate", f'Bearer realm="{url}/token",service="{service}"')


@pytest.fixture
def home(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """No auth file but the test's own, a bin directory on PATH for credential helpers."""
    (tmp_path / "docker").mkdir()
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    return tmp_path


def with_credentials(kind: str, home, host: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Give the registry at `host` credentials of `kind`; the source keys they need."""
    config = home / "docker" / "config.json"
    if kind == "password":
        monkeypatch.setenv("REG_USER", USER)
        monkeypatch.setenv("REG_PASSWORD", PASSWORD)
        return {"username_env": "REG_USER", "password_env": "REG_PASSWORD"}
    if kind == "refresh token":
        config.write_text(json.dumps({"auths": {host: {"identitytoken": REFRESH_TOKEN}}}))
    else:  # a credential helper's answer
        helper = home / "bin" / "docker-credential-origins"
        helper.write_text(f'#!/bin/sh\necho \'{{"Username":"{USER}","Secret":"{PASSWORD}"}}\'\n')
        helper.chmod(0o755)
        config.write_text(json.dumps({"credHelpers": {host: "origins"}}))
    return {}


@contextlib.contextmanager
def redirecting_registry(elsewhere: Callable[[Seen, str], Answer], redirected: str) -> Iterator[tuple[Server, Server]]:
    """A registry whose bearer token is needed for everything but its token server; with it,
    requests for `redirected` (a path part) go on (307) to a second origin, which answers
    `elsewhere(request, its own URL)`."""
    second = Server(lambda seen: elsewhere(seen, second.url))

    def registry_answer(seen: Seen) -> Answer:
        if seen.path.startswith("/token"):
            return token_answer(seen)
        if seen.authorization != f"Bearer {REGISTRY_TOKEN}":
            return Answer(401, [bearer_challenge(first.url, "registry")])
        if redirected in seen.path:
            return Answer(307, [("Location", f"{second.url}/storage{seen.path}")])
        if seen.path.endswith("/tags/list"):
            return Answer(200, [("Content-Type", "application/json")], b'{"tags":["1"]}')
        return Answer(404)

    first = Server(registry_answer)
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def client(registry: Server, extra: dict[str, object]) -> RegistryContainer:
    settings = RegistrySettings(
        url=registry.url, insecure=registry.url.startswith("http:"), retries=0, progress_interval=0, **extra
    )  # type: ignore[arg-type]
    return RegistryContainer(settings, REPOSITORY, registry.url)


def asks_for_credentials(how: str) -> Callable[[Seen, str], Answer]:
    """A second origin whose storage answers 401 with a Bearer realm of its own (whose token
    server gives anyone a token) or a Basic challenge."""

    def answer(seen: Seen, own_url: str) -> Answer:
        if seen.path.startswith("/token"):
            return Answer(200, [("Content-Type", "application/json")], b'{"token":"second-origin-token"}')
        if seen.authorization == "Bearer second-origin-token":
            return Answer(200, [], CONFIG)
        if how == "bearer":
            return Answer(401, [bearer_challenge(own_url, "storage")])
        return Answer(401, [("WWW-Authenticate", 'Basic realm="storage"')])

    return answer


@pytest.mark.parametrize("challenge", ["bearer", "basic"])
@pytest.mark.parametrize("credentials", ["password", "refresh token", "helper"])
@pytest.mark.parametrize("endpoint", ["blobs", "manifests"])
def test_a_redirect_to_another_origin_never_gets_the_credentials(
    home, monkeypatch: pytest.MonkeyPatch, challenge: str, credentials: str, endpoint: str
) -> None:
    """The token the registry gave is in use (the tag list was read with it) when a blob or
    manifest request is sent on to a second origin whose 401 names a realm of its own: as
    in Docker, that challenge is not answered, and the run ends in one line."""
    with redirecting_registry(asks_for_credentials(challenge), f"/{endpoint}/") as (registry, second):
        source = with_credentials(credentials, home, f"127.0.0.1:{registry.port}", monkeypatch)
        container = client(registry, source)
        assert container.tags() == ["1"]
        with pytest.raises(TarexportError) as refused:
            if endpoint == "blobs":
                container.open(f"blobs/{CONFIG_DIGEST.replace(':', '/')}")
            else:
                container.read_small(f"blobs/{CONFIG_DIGEST.replace(':', '/')}")
        assert second.requests, "the redirect was not followed"
        assert leaked(second.requests) == []
        assert all(seen.authorization == "" for seen in second.requests)
        assert any(seen.path.startswith("/token") for seen in registry.requests)  # the registry's were used
        message = str(refused.value)
        assert f"on to http://127.0.0.1:{second.port}, which asks for credentials (401)" in message
        assert "\n" not in message and not [secret for secret in SECRETS if secret in message]


def test_the_registry_token_is_not_sent_where_a_redirect_leads(home, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob served by storage elsewhere (as most registries do): it gets the request, and
    nothing of the registry's authorization."""
    with redirecting_registry(lambda seen, own_url: Answer(200, [], CONFIG), "/blobs/") as (registry, second):
        container = client(registry, with_credentials("password", home, f"127.0.0.1:{registry.port}", monkeypatch))
        assert container.read_small(f"blobs/{CONFIG_DIGEST.replace(':', '/')}", kind="config") == CONFIG
        assert [seen.authorization for seen in second.requests] == [""]
        assert any(seen.authorization == f"Bearer {REGISTRY_TOKEN}" for seen in registry.requests)


@pytest.mark.parametrize("credentials", ["password", "refresh token"])
def test_the_token_request_does_not_follow_a_redirect_to_another_origin(
    home, monkeypatch: pytest.MonkeyPatch, credentials: str
) -> None:
    """The registry's token server sends the token request (Basic GET, or the OAuth2 POST
    with the refresh token in its body) on to a second origin: refused in one line."""
    second = Server(lambda seen: Answer(200, [("Content-Type", "application/json")], b'{"token":"other"}'))

    def registry_answer(seen: Seen) -> Answer:
        if seen.path.startswith("/token"):
            return Answer(307, [("Location", f"{second.url}/token")])
        return Answer(401, [bearer_challenge(registry.url, "registry")])

    registry = Server(registry_answer)
    try:
        container = client(registry, with_credentials(credentials, home, f"127.0.0.1:{registry.port}", monkeypatch))
        with pytest.raises(TarexportError) as refused:
            container.tags()
        assert leaked(second.requests) == []
        assert f"redirected the credentials to another origin (http://127.0.0.1:{second.port})" in str(refused.value)
    finally:
        registry.stop()
        second.stop()


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server context with a self-signed certificate for 127.0.0.1, and that certificate."""
    base = tmp_path_factory.mktemp("tls")
    key, cert = str(base / "server.key"), str(base / "server.crt")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert


@pytest.mark.parametrize("insecure", [False, True])
def test_an_https_registry_may_not_name_a_plain_http_token_server(
    home, monkeypatch: pytest.MonkeyPatch, tls_context: tuple[ssl.SSLContext, str], insecure: bool
) -> None:
    """The password would cross the network in clear; `insecure` skips the registry's
    certificate checks, it does not give up TLS (go-containerregistry refuses it too)."""
    context, cert = tls_context
    token_server = Server(token_answer)  # plain http
    registry = Server(lambda seen: Answer(401, [bearer_challenge(token_server.url, "registry")]), context)
    try:
        source = with_credentials("password", home, f"127.0.0.1:{registry.port}", monkeypatch)
        settings = RegistrySettings(
            url=registry.url, retries=0, insecure=insecure, ca_file="" if insecure else cert, **source
        )  # type: ignore[arg-type]
        container = RegistryContainer(settings, REPOSITORY, registry.url)
        with pytest.raises(TarexportError) as refused:
            container.tags()
        assert registry.requests and leaked(token_server.requests) == [] and token_server.requests == []
        assert f"plain-http token server (http://127.0.0.1:{token_server.port})" in str(refused.value)
    finally:
        registry.stop()
        token_server.stop()


def test_an_https_token_server_may_not_redirect_to_plain_http(home, tls_context: tuple[ssl.SSLContext, str]) -> None:
    """Anonymous too: the token that comes back is as good as a password for this repository."""
    context, cert = tls_context
    plain = Server(lambda seen: Answer(200, [("Content-Type", "application/json")], b'{"token":"t"}'))

    def registry_answer(seen: Seen) -> Answer:
        if seen.path.startswith("/token"):
            return Answer(307, [("Location", f"{plain.url}/token")])
        return Answer(401, [bearer_challenge(registry.url, "registry")])

    registry = Server(registry_answer, context)
    try:
        container = RegistryContainer(RegistrySettings(url=registry.url, retries=0, ca_file=cert), REPOSITORY, "r")
        with pytest.raises(TarexportError, match=r"redirected to plain http \(http://127\.0\.0\.1:\d+\)"):
            container.tags()
        assert plain.requests == []
    finally:
        registry.stop()
        plain.stop()


# -- WWW-Authenticate -----------------------------------------------------------------------


def test_the_rfc_examples() -> None:
    # RFC 9110 §11.6.1 (and RFC 7235 §4.1): two challenges in one header, an escaped quote
    example = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'
    assert parse_challenges([example]) == [
        Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        Challenge("basic", {"realm": "simple"}),
    ]
    # RFC 7617 §2.1, RFC 6750 §3
    assert parse_challenges(['Basic realm="foo", charset="UTF-8"']) == [
        Challenge("basic", {"realm": "foo", "charset": "UTF-8"})
    ]
    rfc6750 = 'Bearer realm="example", error="invalid_token", error_description="The access token expired"'
    assert parse_challenges([rfc6750])[0].params["error_description"] == "The access token expired"
    # the distribution token spec's: commas inside a quoted scope
    docker = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push"'
    assert parse_challenges([docker])[0].params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:a/b:pull,push",
    }


def test_the_grammar_around_them() -> None:
    # several headers; case-insensitive scheme and names; token68; BWS around '='; empty elements
    headers = ['NEGOTIATE YIIBhg==, BASIC REALM = "Simple"', ' , Bearer Realm="https://a/t", SCOPE="x"']
    assert parse_challenges(headers) == [
        Challenge("negotiate", token68="YIIBhg=="),
        Challenge("basic", {"realm": "Simple"}),
        Challenge("bearer", {"realm": "https://a/t", "scope": "x"}),
    ]
    assert parse_challenges(["Basic"]) == [Challenge("basic")]
    assert parse_challenges(["Basic, Bearer"]) == [Challenge("basic"), Challenge("bearer")]
    assert parse_challenges(['Bearer realm="a\\\\b\\,c"']) == [Challenge("bearer", {"realm": "a\\b,c"})]
    assert parse_challenges(["Bearer realm=x, token=y"])[0].params == {"realm": "x", "token": "y"}
    assert parse_challenges([]) == []
    assert parse_challenges(["Bearer realm="]) == [Challenge("bearer", token68="realm=")]  # token68's padding
    for malformed in [
        'Bearer realm="never ends',
        'Bearer realm="x" service="y"',  # no comma between parameters
        'Bearer realm="x", realm="y"',  # which realm?
        'Bearer realm="a\x00b"',
        '=x, Basic realm="y"',
        'Bearer"x"',
        "Bearer realm=a b",
        "Bear€r realm=x",
    ]:
        with pytest.raises(ChallengeError):
            parse_challenges([malformed])
    try:
        parse_challenges(['Bearer realm="secret-part'])
    except ChallengeError as error:
        assert "secret-part" not in str(error)  # messages never quote the header


def test_bearer_is_chosen_when_offered() -> None:
    basic, bearer = Challenge("basic", {"realm": "r"}), Challenge("bearer", {"realm": "https://t"})
    assert choose_challenge([basic, bearer]) == bearer
    assert choose_challenge([Challenge("negotiate"), basic]) == basic
    assert choose_challenge([Challenge("negotiate", token68="abc")]) is None


def challenging_registry(headers: list[tuple[str, str]]) -> Server:
    """A registry that wants its bearer token, and says so with `headers`."""

    def answer(seen: Seen) -> Answer:
        if seen.path.startswith("/token"):
            return Answer(200, [("Content-Type", "application/json")], json.dumps({"token": REGISTRY_TOKEN}).encode())
        if seen.authorization == f"Bearer {REGISTRY_TOKEN}":
            return Answer(200, [("Content-Type", "application/json")], b'{"tags":["1"]}')
        return Answer(401, [(name, value.replace("SELF", server.url)) for name, value in headers])

    server = Server(answer)
    return server


@pytest.mark.parametrize(
    "headers",
    [
        [("WWW-Authenticate", 'Basic realm="registry"'), ("WWW-Authenticate", 'Bearer realm="SELF/token"')],
        [("WWW-Authenticate", 'Negotiate, Basic realm="registry", BEARER REALM="SELF/token",SERVICE="r"')],
        [("WWW-Authenticate", 'Bearer service="a,b",realm="SELF/token?x=\\"y\\""')],
    ],
    ids=["two headers", "three in one", "quoted commas and escapes"],
)
def test_the_registry_challenge_is_read_whole(home, headers: list[tuple[str, str]]) -> None:
    registry = challenging_registry(headers)
    try:
        assert client(registry, {}).tags() == ["1"]
        token_requests = [seen.path for seen in registry.requests if seen.path.startswith("/token")]
        assert token_requests and all(
            path.startswith('/token?x="y"&') == ("x=" in str(headers)) for path in token_requests
        )
    finally:
        registry.stop()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Negotiate", r"asks for an auth scheme tarexport does not speak \(negotiate\); it speaks Bearer and Basic"),
        ('Bearer realm="unterminated', r"auth challenge is malformed \(the quoted-string at character 14"),
        ("", r"refused access \(401\) to /v2/team/app/tags/list and named no way to authorize"),
        ('Bearer realm="/relative"', r"names no token server \(an http\(s\) URL\)"),
    ],
)
def test_a_challenge_tarexport_cannot_answer_is_one_line(home, header: str, expected: str) -> None:
    registry = challenging_registry([("WWW-Authenticate", header)] if header else [])
    try:
        with pytest.raises(TarexportError, match=expected) as refused:
            client(registry, {}).tags()
        assert "\n" not in str(refused.value)
    finally:
        registry.stop()


# -- Retry-After ----------------------------------------------------------------------------


def test_retry_after_is_ascii_seconds_or_an_http_date() -> None:
    default = backoff(1)
    assert default == 1.0
    for ignored in [
        "\u0663",
        "\uff15",
        "\u00b2",
        "1.5",
        "-1",
        "1e3",
        "3 s",
        "soon",
        "",
        "Wed, 99 Oct 2015 07:28:00 GMT",
    ]:
        assert backoff(1, ignored) == default, ignored
    assert backoff(1, " 7 ") == 7.0
    assert backoff(1, "9" * 5000) == 60.0  # capped, and int() would refuse so many digits
    assert backoff(1, email.utils.formatdate(time.time() + 3600, usegmt=True)) == 60.0
    assert 20 <= backoff(1, email.utils.formatdate(time.time() + 30, usegmt=True)) <= 30
    assert backoff(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past: now


def test_a_registry_retry_after_in_other_digits_waits_the_default(home) -> None:
    """Once `²` made float() raise a ValueError out of the Snakefile."""
    answers = iter([Answer(503, [("Retry-After", "²")]), Answer(200, [], b'{"tags":["1"]}')])
    registry = Server(lambda seen: next(answers))
    try:
        settings = RegistrySettings(url=registry.url, insecure=True, retries=1)
        started = time.monotonic()
        assert RegistryContainer(settings, REPOSITORY, registry.url).tags() == ["1"]
        assert time.monotonic() - started < 5
    finally:
        registry.stop()


# -- registry URLs --------------------------------------------------------------------------

SCHEMA = os.path.join(ROOT, "schemas", "config.schema.yaml")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://[::1", r"source https://\[::1: registry url has an IPv6 address without its closing '\]'"),
        ("https://[zz]:5000", "between .* that is not an IPv6 address"),
        ("https://127.0.0.1:99999", "source https://127.0.0.1:99999: registry url has a port that is not a number"),
        ("https://127.0.0.1:0", "has a port that is not a number from 1 to 65535"),
        (
            "https://r.example:٣",
            r"source '?https://r\.example:\\u0663'?: registry url is not http\(s\)://host\[:port\]",
        ),
        ("https://:443", "source https://:443: registry url names no host"),
        ("https://u:hunter2@r.example", r"source https://\.\.\.@r\.example: registry url holds a user name"),
        ("https://r.example?x=1", r"registry url is not http\(s\)://host\[:port\]: no path, query"),
        ("https://r_1.example:", "has a port that is not a number"),
    ],
)
def test_a_malformed_registry_url_is_one_line_naming_it(tmp_path, monkeypatch, url: str, expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    failed = plan_export({"sources": [{"type": "registry", "url": url}], "images": ["r.example/a:1"]}, SCHEMA, ".")
    assert isinstance(failed, FailedPlan)
    assert failed.message.startswith("tarexport: error: source ") and "\n" not in failed.message
    assert "hunter2" not in failed.message
    assert re.search(expected, failed.message), failed.message


def test_a_registry_source_without_url_and_a_name_with_a_bad_port(tmp_path, monkeypatch) -> None:
    """A source without url serves the hosts no other names; the URL made from a name's
    host is checked like a configured one."""
    monkeypatch.chdir(tmp_path)
    config = {"sources": [{"type": "registry", "retries": 0}], "images": ["127.0.0.1:99999/a:1"]}
    failed = plan_export(config, SCHEMA, ".")
    assert isinstance(failed, FailedPlan)
    assert failed.message == (
        "tarexport: error: source https://127.0.0.1:99999: registry url has a port that is not a number from 1 to 65535"
    )
