"""A Docker token-auth server for the tests (the `auth: token:` scheme of CNCF distribution).

Stdlib only, plus the `openssl` CLI to make a key and sign tokens. Speaks both flows of the
distribution token spec: GET /token with HTTP Basic (or anonymous), and the OAuth2 POST /token
with `grant_type=password` or `grant_type=refresh_token` (identity tokens).

Tokens are RS256 JWTs whose header carries the signing certificate in `x5c`; the registry
verifies that chain against `rootcertbundle` (= `cert_file`, the same self-signed certificate).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.engines import free_port

EXPIRES_IN = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_scope(scope: str) -> dict[str, Any] | None:
    """`repository:NAME:pull,push` -> an `access` entry; None when malformed.

    The type is up to the first colon, the actions after the last (names may hold a port).
    """
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name or not actions:
        return None
    return {"type": kind, "name": name, "actions": [action for action in actions.split(",") if action]}


class TokenServer:
    """Issues registry bearer tokens on http://127.0.0.1:PORT/token from a daemon thread.

    users: name -> password; None lets anyone (anonymous included) have every requested action.
    `requests` records each token request: method, user (None: anonymous), scope (list of the
    requested scope strings), grant_type (None for GET), service, client_id and the answer's status.
    """

    def __init__(
        self,
        users: dict[str, str] | None = None,
        service: str = "tarexport-test-registry",
        issuer: str = "tarexport-test-issuer",
    ) -> None:
        self.users = users
        self.service = service
        self.issuer = issuer
        self.requests: list[dict[str, Any]] = []
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self.issued: list[str] = []  # every bearer token handed out, for secret scans
        self._lock = threading.Lock()
        self.base = tempfile.mkdtemp(prefix="txt", dir="/tmp")
        self.key_file = os.path.join(self.base, "token.key")
        self.cert_file = os.path.join(self.base, "token.crt")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=tarexport test token issuer", "-keyout", self.key_file, "-out", self.cert_file],
            check=True, capture_output=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", self.cert_file, "-outform", "DER"], check=True, capture_output=True
        ).stdout
        self._header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.realm = f"{self.url}/token"
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="tokenserver", daemon=True)
        self._thread.start()

    # -- tokens ---------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact RS256 JWS of the claims, with the certificate in the `x5c` header."""
        header = _b64url(json.dumps(self._header, separators=(",", ":")).encode())
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key_file],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def issue(self, user: str | None, scopes: list[str]) -> dict[str, Any]:
        """The JSON answer granting every requested action to `user` (None: anonymous)."""
        now = int(time.time())
        access = [entry for entry in map(parse_scope, scopes) if entry]
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,  # a string: distribution 2.8 does not take a list here
            "exp": now + EXPIRES_IN,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = self.sign(claims)
        with self._lock:
            self.issued.append(token)
        return {"token": token, "access_token": token, "expires_in": EXPIRES_IN, "issued_at": _rfc3339(now)}

    def new_refresh_token(self, user: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.refresh_tokens[token] = user
        return token

    def check_password(self, user: str | None, password: str | None) -> bool:
        """Without `users` any credentials pass (the server is open)."""
        if user is None or password is None:
            return False
        if self.users is None:
            return True
        expected = self.users.get(user)
        return expected is not None and secrets.compare_digest(expected.encode(), password.encode())

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


def _make_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, body: dict[str, Any], entry: dict[str, Any], basic: bool = False) -> None:
            entry["status"] = status
            server.record(entry)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if basic:
                self.send_header("WWW-Authenticate", 'Basic realm="tarexport-test-token"')
            self.end_headers()
            self.wfile.write(data)

        def _basic_user(self) -> tuple[str | None, str | None, bool]:
            """(user, password, present) from an Authorization: Basic header."""
            header = self.headers.get("Authorization", "")
            if not header.lower().startswith("basic "):
                return None, None, False
            try:
                user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None, None, True
            return user, password, True

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            scopes = [part for value in query.get("scope", []) for part in value.split(" ") if part]
            user, password, present = self._basic_user()
            entry = {
                "method": "GET",
                "user": user if present else None,
                "scope": scopes,
                "grant_type": None,
                "service": query.get("service", [None])[0],
                "client_id": query.get("client_id", [None])[0],
            }
            if url.path != "/token":
                return self._answer(404, {"errors": [{"code": "NOT_FOUND"}]}, entry)
            if entry["service"] not in (None, server.service):
                return self._answer(400, {"errors": [{"code": "INVALID_SERVICE"}]}, entry)
            if (present or server.users is not None) and not server.check_password(user, password):
                return self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]}, entry, basic=True)
            if not present:
                user = None
            body = server.issue(user, scopes)
            if user is not None and query.get("offline_token", [""])[0].lower() == "true":
                body["refresh_token"] = server.new_refresh_token(user)
            return self._answer(200, body, entry)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode(errors="replace"))

            def field(name: str) -> str | None:
                return form.get(name, [None])[0]

            scopes = [part for value in form.get("scope", []) for part in value.split(" ") if part]
            grant_type = field("grant_type")
            entry = {
                "method": "POST",
                "user": None,
                "scope": scopes,
                "grant_type": grant_type,
                "service": field("service"),
                "client_id": field("client_id"),
            }
            if urllib.parse.urlsplit(self.path).path != "/token":
                return self._answer(404, {"error": "not_found"}, entry)
            if entry["service"] not in (None, server.service):
                return self._answer(400, {"error": "invalid_request", "error_description": "service"}, entry)
            refresh_token = None
            if grant_type == "refresh_token":
                with server._lock:
                    user = server.refresh_tokens.get(field("refresh_token") or "")
                entry["user"] = user
                if user is None:
                    return self._answer(401, {"error": "invalid_grant"}, entry)
                refresh_token = field("refresh_token")
            elif grant_type == "password":
                user = field("username")
                entry["user"] = user
                if not server.check_password(user, field("password")):
                    return self._answer(401, {"error": "invalid_grant"}, entry)
                if field("access_type") == "offline":
                    refresh_token = server.new_refresh_token(user or "")
            else:
                return self._answer(400, {"error": "unsupported_grant_type"}, entry)
            body = server.issue(user, scopes)
            if refresh_token:
                body["refresh_token"] = refresh_token
            return self._answer(200, body, entry)

    return Handler
