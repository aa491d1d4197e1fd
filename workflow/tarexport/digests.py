"""Digest validation and the layer chain IDs Docker derives from diff IDs."""

from __future__ import annotations

import hashlib
import re

from .errors import TarexportError

# The one spelling of a digest tarexport accepts: they become file names.
_HEX_RE = re.compile(r"[a-f0-9]{64}")
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")


def is_digest(value: object) -> bool:
    """`sha256:<64 lowercase hex>`, to the end (no trailing newline)."""
    return isinstance(value, str) and bool(_DIGEST_RE.fullmatch(value))


def is_hex(value: object) -> bool:
    """A digest's 64 lowercase hex without its algorithm (an image ID as Docker prints it)."""
    return isinstance(value, str) and bool(_HEX_RE.fullmatch(value))


def check_digest(value: object, what: str) -> str:
    """Accept only `sha256:<64 lowercase hex>`: digests become file names."""
    if not is_digest(value):
        raise TarexportError(f"{what} {value!r} is not a sha256 digest (sha256:<64 hex>)")
    return value


def hex_of(digest: str) -> str:
    return digest.split(":", 1)[1]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i])."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            chains.append(sha256_digest(f"{chains[-1]} {diff_id}".encode()))
    return chains
