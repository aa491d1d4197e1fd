"""Image references as Docker 20.10 parses them (distribution/reference).

`ubuntu` is `docker.io/library/ubuntu`, a missing tag is `latest` where Docker
applies it, and names are written back in familiar form (`ubuntu:latest`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .digests import is_digest, is_hex
from .errors import TarexportError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
NAME_MAX = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Go's \w: ASCII only
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
_TAG_RE = re.compile(_TAG)


@dataclass(frozen=True, order=True)
class Reference:
    """A normalized named reference: `domain/path`, optional tag, optional digest."""

    name: str
    tag: str = ""
    digest: str = ""

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def familiar_name(self) -> str:
        domain, _, path = self.name.partition("/")
        if domain != DEFAULT_DOMAIN:
            return self.name
        if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX) :]:
            return path[len(OFFICIAL_PREFIX) :]
        return path

    def familiar(self) -> str:
        return self.familiar_name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _split_domain(text: str) -> tuple[str, str]:
    head, sep, rest = text.partition("/")
    if not sep or ("." not in head and ":" not in head and head != "localhost"):
        domain, remainder = DEFAULT_DOMAIN, text
    else:
        domain, remainder = head, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse_normalized(text: str) -> Reference:
    """ParseNormalizedNamed: a reference with Docker Hub defaults applied."""
    if is_hex(text):
        raise TarexportError(f"invalid reference {text!r}: a 64-character hex string is an image ID, not a name")
    domain, remainder = _split_domain(text)
    name_part = remainder.split("@", 1)[0].split(":", 1)[0]
    if name_part.lower() != name_part:
        raise TarexportError(f"invalid reference {text!r}: repository name must be lowercase")
    match = _REFERENCE_RE.fullmatch(f"{domain}/{remainder}")
    if not match:
        raise TarexportError(f"invalid reference format {text!r}")
    name, tag, digest = match.group(1), match.group(2) or "", match.group(3) or ""
    if len(name) > NAME_MAX:
        raise TarexportError(f"invalid reference {text!r}: repository name longer than {NAME_MAX} characters")
    if digest and not is_digest(digest):
        raise TarexportError(f"invalid reference {text!r}: unsupported digest {digest!r}")
    return Reference(name, tag, digest)


def with_default_tag(ref: Reference) -> Reference:
    """TagNameOnly: a bare name means `:latest`."""
    if not ref.tag and not ref.digest:
        return Reference(ref.name, "latest", "")
    return ref


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.fullmatch(tag))


@dataclass(frozen=True)
class ImageIDRequest:
    """A request by full image ID (`sha256:<hex>` or bare 64 hex)."""

    image_id: str


def parse_request(text: str) -> Reference | ImageIDRequest:
    """ParseAnyReference: an image ID or a named reference."""
    if is_hex(text):
        return ImageIDRequest("sha256:" + text)
    if is_digest(text):
        return ImageIDRequest(text)
    return parse_normalized(text)
