"""Talking to a registry: TLS, the auth dance (anonymous, basic, bearer tokens from the
challenge's realm, OAuth2 refresh tokens), retries with backoff, and answers read against
byte and time limits. It knows URLs and credentials, not images (registry.py reads those).

Credentials belong to one origin (scheme, host, port of the registry's URL), as in Docker,
which answers only the challenges of the registry it pinged: they, and the tokens they
buy, go to that origin and to the token server a challenge from that origin names, never
to a host a redirect leads to. An https registry's token server must be https.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import TarexportError
from .challenges import Challenge, ChallengeError, choose_challenge, parse_challenges
from .download import backoff
from .origins import origin_of, registry_origin
from .registry_auth import Credentials, find_credentials

# Worth another try: rate limits, timeouts and a server or proxy that is briefly unwell.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


TOKEN_ANSWER_BYTES = 1 << 20  # a token server's JSON: a few KB in practice


class _RefusedRedirect(Exception):
    """A token request's redirect that is not followed (carries the one-line message)."""


class _TokenRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects of a token request: never to plain http for an https registry, and never
    to another origin while the request carries credentials (urllib would drop the header,
    but not a refresh token in a POST body, and Go's client re-sends a body on a 307)."""

    def __init__(self, https_only: bool, carries_credentials: bool):
        super().__init__()
        self.https_only = https_only
        self.carries_credentials = carries_credentials

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        target, source = origin_of(newurl), origin_of(req.full_url)
        refusal = ""
        if target is None:
            refusal = "the registry's auth server redirected to something that is not an http(s) URL"
        elif self.https_only and target.scheme != "https":
            refusal = f"the registry's auth server redirected to plain http ({target}); the registry is https"
        elif self.carries_credentials and target != source:
            refusal = (
                f"the registry's auth server redirected the credentials to another origin ({target}); tarexport"
                " sends them only to the token server the registry names: have the registry name that one"
            )
        if refusal:
            fp.close()
            raise _RefusedRedirect(refusal)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def read_bounded(response: Any, limit: int, seconds: float, what: str, label: str, member: str = "") -> bytes:
    """A whole response body, refused past `limit` bytes or `seconds` in all: the socket
    timeout alone lets a server trickle an endless body one byte at a time."""
    deadline = time.monotonic() + seconds
    parts: list[bytes] = []
    size = 0
    while chunk := response.read1(1 << 16):
        size += len(chunk)
        if size > limit:
            raise TarexportError(f"{what} is over the {limit}-byte limit", source=label, member=member)
        if time.monotonic() > deadline:
            raise TarexportError(f"{what} took over {seconds:g} s to arrive; run again", source=label, member=member)
        parts.append(chunk)
    return b"".join(parts)


@dataclass(frozen=True)
class RegistrySettings:
    """How to reach one registry; serialized into job recipes (names of secrets only)."""

    url: str = ""  # scheme://host[:port]; "" in a source that serves every other host
    insecure: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    timeout: float = 60.0
    username_env: str = ""
    password_env: str = ""
    retries: int = 5  # per request and per broken download, with backoff
    progress_interval: float = 10.0  # seconds between progress lines of a long download; 0: none
    name_host: str = ""  # the host names use, when the API lives elsewhere (docker.io)

    def __post_init__(self) -> None:
        if self.url:  # "": a source serving the hosts no other names (plan.py gives it urls)
            registry_origin(self.url)

    @property
    def host(self) -> str:
        return self.name_host or urllib.parse.urlsplit(self.url).netloc

    def to_text(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> RegistrySettings:
        return cls(**json.loads(text))


class RegistryTransport:
    """Requests to one repository of a registry, authorized for pulling from it."""

    def __init__(self, settings: RegistrySettings, repository: str, label: str):
        self.settings, self.repository, self.label = settings, repository, label
        self._authorization = ""
        self.origin = registry_origin(settings.url)  # what the credentials belong to
        scheme = self.origin.scheme
        if scheme == "http" and not settings.insecure:
            raise TarexportError("plain http needs `insecure: true`", source=label)
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file or None)
        if settings.insecure and scheme == "https":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._context = context
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def request(self, url: str, accept: str = "") -> Any:
        """GET with the registry's auth dance (anonymous, basic, bearer token)."""
        return self.send(urllib.request.Request(url, headers={"Accept": accept} if accept else {}))

    def send(self, request: urllib.request.Request) -> Any:
        """Send with the registry's auth dance; retry 429, 5xx and broken connections."""
        path = urllib.parse.urlsplit(request.full_url).path
        failures = 0
        refreshed = False  # a new token at most once per request: servers mint a new one each time
        while True:
            if self._authorization:
                # unredirected: a blob redirect to storage elsewhere must not carry our token
                request.add_unredirected_header("Authorization", self._authorization)
            try:
                return self._opener.open(request, timeout=self.settings.timeout)
            except urllib.error.HTTPError as error:
                retry_after = error.headers.get("Retry-After")
                challenges = error.headers.get_all("WWW-Authenticate") or []
                # where the 401 came from after urllib followed redirects (HTTPError.url; its
                # filename is the same and is set even when the error has no body)
                answered = origin_of(error.filename or request.full_url)
                error.close()
                if error.code == 401 and answered != self.origin:
                    # a redirect led elsewhere: Docker answers only the registry's own challenges
                    elsewhere = str(answered) if answered else "a host that is not an http(s) URL"
                    raise TarexportError(
                        f"the registry sent {path} on to {elsewhere}, which asks for credentials (401);"
                        " they are given only to the registry and its token server: ask the registry's"
                        " operator for redirects that need none (signed URLs)",
                        source=self.label,
                    ) from None
                # first contact, or a bearer token expired during a long run: authorize once
                if error.code == 401 and not refreshed and not self._authorization.startswith("Basic "):
                    refreshed = True
                    self._authorization = self._authorize(challenges, path)
                    continue
                if error.code == 401:
                    raise TarexportError(
                        f"registry refused access (401) to {path}: check the credentials and that the"
                        " repository exists",
                        source=self.label,
                    ) from None
                if error.code in RETRY_STATUSES and failures < self.settings.retries:
                    time.sleep(backoff(failures, retry_after))
                    failures += 1
                    continue
                tries = f" after {failures + 1} attempts" if failures else ""
                raise TarexportError(
                    f"registry answered {error.code} {error.reason} for {path}{tries}", source=self.label
                ) from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                reason = getattr(error, "reason", error)
                if isinstance(reason, ssl.SSLCertVerificationError) or failures >= self.settings.retries:
                    tries = f" after {failures + 1} attempts" if failures else ""
                    raise TarexportError(f"cannot reach the registry ({reason}){tries}", source=self.label) from None
                time.sleep(backoff(failures))
                failures += 1

    def _authorize(self, headers: list[str], path: str) -> str:
        """The Authorization the registry's own 401 asks for (its WWW-Authenticate headers)."""
        try:
            challenges = parse_challenges(headers)
        except ChallengeError as error:
            raise TarexportError(f"the registry's auth challenge is malformed ({error})", source=self.label) from None
        challenge = choose_challenge(challenges)
        if not challenges:
            raise TarexportError(
                f"registry refused access (401) to {path} and named no way to authorize: check that the"
                " repository exists",
                source=self.label,
            )
        if challenge is None:
            schemes = ", ".join(sorted({found.scheme for found in challenges if len(found.scheme) <= 30})[:3])
            raise TarexportError(
                f"the registry asks for an auth scheme tarexport does not speak ({schemes}); it speaks Bearer"
                " and Basic",
                source=self.label,
            )
        credentials = find_credentials(
            self.settings.host, self.repository, self.settings.username_env, self.settings.password_env
        )
        if challenge.scheme == "basic":
            if not credentials or credentials.identity_token:
                raise TarexportError(
                    "registry needs a user name and password and none are configured", source=self.label
                )
            return credentials.basic()
        realm = self._realm(challenge)
        answer = self._token(realm, challenge.params.get("service", ""), credentials)
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise TarexportError("the registry's auth server gave no token", source=self.label)
        if not (token.isascii() and token.isprintable()):  # http.client would quote it in its error
            raise TarexportError("the registry's auth server gave a token no HTTP header can carry", source=self.label)
        return "Bearer " + token

    def _realm(self, challenge: Challenge) -> str:
        """The token server a Bearer challenge of the registry names: an http(s) URL, https
        when the registry is (as go-containerregistry requires; `insecure` only lets the
        registry skip TLS checks, it does not send the password in clear)."""
        realm = challenge.params.get("realm", "")
        where = origin_of(realm)
        if where is None:
            raise TarexportError(
                "the registry's auth challenge names no token server (an http(s) URL)", source=self.label
            )
        if self.origin.scheme == "https" and where.scheme != "https":
            raise TarexportError(
                f"the registry names a plain-http token server ({where}), which would see the credentials in"
                " clear: the registry is https, its token server must be too",
                source=self.label,
            )
        return realm

    def _token(self, realm: str, service: str, credentials: Credentials | None) -> dict[str, Any]:
        """A pull token for this repository: GET (anonymous or basic), or the OAuth2 POST
        with a refresh token when the credentials are an identity token."""
        scope = f"repository:{self.repository}:pull"
        if credentials and credentials.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": credentials.identity_token, "service": service,
                    "scope": scope, "client_id": "tarexport"}  # fmt: skip
            request = urllib.request.Request(realm, data=urllib.parse.urlencode(form).encode(), method="POST")
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        else:
            query = urllib.parse.urlencode({k: v for k, v in (("service", service), ("scope", scope)) if v})
            request = urllib.request.Request(realm + ("&" if "?" in realm else "?") + query)
            if credentials:
                request.add_unredirected_header("Authorization", credentials.basic())
        redirects = _TokenRedirects(self.origin.scheme == "https", credentials is not None)
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self._context), redirects)
        try:
            with opener.open(request, timeout=self.settings.timeout) as response:
                body = read_bounded(response, TOKEN_ANSWER_BYTES, self.settings.timeout, "the token answer", self.label)
            answer = json.loads(body)
        except _RefusedRedirect as refused:
            raise TarexportError(str(refused), source=self.label) from None
        except urllib.error.HTTPError as error:
            error.close()
            refused = " (refused the credentials)" if error.code in (401, 403) else ""
            raise TarexportError(
                f"the registry's auth server answered {error.code}{refused}", source=self.label
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise TarexportError(
                f"cannot get a token from the registry's auth server ({reason})", source=self.label
            ) from None
        return answer if isinstance(answer, dict) else {}
