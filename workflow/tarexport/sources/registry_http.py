"""Talking to a registry: TLS, the auth dance (anonymous, basic, bearer tokens from the
challenge's realm, OAuth2 refresh tokens), retries with backoff, and answers read against
byte and time limits. It knows URLs and credentials, not images (registry.py reads those).
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import TarexportError
from .download import backoff
from .registry_auth import Credentials, find_credentials

# Worth another try: rate limits, timeouts and a server or proxy that is briefly unwell.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


TOKEN_ANSWER_BYTES = 1 << 20  # a token server's JSON: a few KB in practice


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

    url: str  # scheme://host[:port]
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
        scheme = urllib.parse.urlsplit(settings.url).scheme
        if scheme == "http" and not settings.insecure:
            raise TarexportError("plain http needs `insecure: true`", source=label)
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file or None)
        if settings.insecure and scheme == "https":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
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
                challenge = error.headers.get("WWW-Authenticate", "")
                error.close()
                # first contact, or a bearer token expired during a long run: authorize once
                if error.code == 401 and not refreshed and not self._authorization.startswith("Basic "):
                    refreshed = True
                    self._authorization = self._authorize(challenge)
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

    def _authorize(self, challenge: str) -> str:
        scheme, _, params = challenge.partition(" ")
        credentials = find_credentials(
            self.settings.host, self.repository, self.settings.username_env, self.settings.password_env
        )
        if scheme.lower() == "basic":
            if not credentials or credentials.identity_token:
                raise TarexportError(
                    "registry needs a user name and password and none are configured", source=self.label
                )
            return credentials.basic()
        if scheme.lower() != "bearer":
            raise TarexportError(f"unsupported registry auth scheme {scheme!r}", source=self.label)
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if not fields.get("realm", "").startswith(("https://", "http://")):
            raise TarexportError("the registry's auth challenge names no token server", source=self.label)
        answer = self._token(fields["realm"], fields.get("service", ""), credentials)
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise TarexportError("the registry's auth server gave no token", source=self.label)
        if not (token.isascii() and token.isprintable()):  # http.client would quote it in its error
            raise TarexportError("the registry's auth server gave a token no HTTP header can carry", source=self.label)
        return "Bearer " + token

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
        try:
            with self._opener.open(request, timeout=self.settings.timeout) as response:
                body = read_bounded(response, TOKEN_ANSWER_BYTES, self.settings.timeout, "the token answer", self.label)
            answer = json.loads(body)
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
