"""Registry credentials, found the way docker and podman find them.

Order: the environment variables named in the source; then each auth file
(`$REGISTRY_AUTH_FILE`, podman's `$XDG_RUNTIME_DIR/containers/auth.json`, then
`$DOCKER_CONFIG/config.json`), where, as in Docker, a `credHelpers` entry for the host
wins over `credsStore`, which wins over `auths`. An `auths` key may name a repository
path (`quay.io/org`), as podman allows: the longest one matching the repository wins.
Helpers are run as `docker-credential-<name> get` with the server on stdin.
Nothing here is ever printed: errors name the file or helper, never a secret.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.parse
from dataclasses import dataclass

from ..errors import TarexportError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # the key Docker files docker.io credentials under
HELPER_TIMEOUT = 60  # seconds; a helper may ask a keychain or a cloud


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token (`identitytoken`, or a helper's `<token>` user)

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def auth_files() -> list[str]:
    docker_config = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    paths = [
        os.environ.get("REGISTRY_AUTH_FILE", ""),
        os.path.join(runtime, "containers", "auth.json") if runtime else "",
        os.path.join(docker_config, "config.json"),
    ]
    return [path for path in paths if path and os.path.isfile(path)]


def find_credentials(
    host: str, repository: str = "", username_env: str = "", password_env: str = ""
) -> Credentials | None:
    if username_env:
        return Credentials(os.environ.get(username_env, ""), os.environ.get(password_env, ""))
    for path in auth_files():
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if not isinstance(data, dict):
                raise ValueError
        except (OSError, ValueError):
            raise TarexportError(f"auth file {path} is not readable JSON; fix or remove it") from None
        found = _from_auth_file(data, host, repository, path)
        if found is not None:
            return found
    return None


def _scope_of(key: str) -> tuple[str, str]:
    """Auth keys are `host`, `host/path` (podman) or `https://host/v1/` (Docker): the host
    and the repository path they cover ("" for the whole host)."""
    parts = urllib.parse.urlsplit(key if "://" in key else "//" + key)
    netloc = "docker.io" if parts.netloc in ("index.docker.io", "registry-1.docker.io") else parts.netloc
    scope = "" if "://" in key else parts.path.strip("/")  # a URL's path is an API version
    return netloc, scope


def _from_auth_file(data: dict, host: str, repository: str, path: str) -> Credentials | None:
    helpers = data.get("credHelpers") or {}
    server = DOCKER_HUB_KEY if host == "docker.io" else host
    if isinstance(helpers, dict):
        for key in (server, host):
            if isinstance(helpers.get(key), str):
                return run_helper(helpers[key], server)
    if isinstance(data.get("credsStore"), str) and data["credsStore"]:
        return run_helper(data["credsStore"], server)
    auths = data.get("auths") or {}
    matching = []
    for key, entry in auths.items() if isinstance(auths, dict) else ():
        netloc, scope = _scope_of(key)
        if netloc == host and isinstance(entry, dict) and (not scope or f"{repository}/".startswith(f"{scope}/")):
            matching.append((len(scope), entry))
    for _, entry in sorted(matching, key=lambda match: -match[0]):
        if entry.get("identitytoken"):
            return Credentials(identity_token=str(entry["identitytoken"]))
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, TypeError, UnicodeDecodeError):  # TypeError: not a string
                raise TarexportError(
                    f"auth file {path}: the `auth` entry for {host} is not base64 user:password"
                ) from None
            return Credentials(user, password)
    return None


def run_helper(name: str, server: str) -> Credentials | None:
    """Ask `docker-credential-<name>`; "not found" means anonymous, as in Docker."""
    program = f"docker-credential-{name}"
    try:
        done = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=HELPER_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise TarexportError(
            f"credential helper {program} is not on PATH; install it or change the auth file"
        ) from None
    except subprocess.TimeoutExpired:
        raise TarexportError(f"credential helper {program} did not answer in {HELPER_TIMEOUT} s") from None
    if done.returncode != 0:
        if b"credentials not found" in done.stdout + done.stderr:
            return None
        # never its output: a failing helper may still have printed the secret
        raise TarexportError(
            f"credential helper {program} failed (exit status {done.returncode}); run `{program} get` to see why"
        )
    try:
        answer = json.loads(done.stdout)
        username, secret = str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError):
        raise TarexportError(f"credential helper {program} gave no Username/Secret JSON") from None
    if username == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(username, secret)
