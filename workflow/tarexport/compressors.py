"""The whole-archive compressors, and which library versions give reproducible bytes.

A compressed archive is the same bytes for the same tar only with the same compressor:
the level is fixed here, and no name or time goes into a header, but a compression
library does not promise the same output across its versions (zstd 1.5.5 and 1.5.6
differ). So each compressor names the library version its bytes are tested with, and a
run with another version is refused unless the configuration accepts other bytes
(`compressor_versions: any`). python-zstandard bundles its libzstd and is pinned in the
requirements; Python's zlib module is the system's zlib (Debian 12: 1.2.13).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import TarexportError


def _zlib_version() -> str:
    return zlib.ZLIB_RUNTIME_VERSION


def _libzstd_version() -> str:
    import zstandard

    return ".".join(map(str, zstandard.ZSTD_VERSION))


@dataclass(frozen=True)
class ArchiveCompressor:
    name: str  # the configuration's `compression` value
    library: str
    tested_version: str  # the library version whose bytes the tests and releases pin
    running_version: Callable[[], str]
    new: Callable[[], Any]  # a compressobj: compress(bytes) and flush()

    def check_version(self, accept_any: bool) -> None:
        """Refuse a library version other than the tested one, unless told to accept it."""
        running = self.running_version()
        if running != self.tested_version and not accept_any:
            raise TarexportError(
                f"compression {self.name}: this machine's {self.library} is {running}, and archives are "
                f"byte-reproducible with {self.library} {self.tested_version} (tested); install that version, "
                "or set compressor_versions: any to accept other bytes"
            )


COMPRESSORS: dict[str, ArchiveCompressor] = {
    compressor.name: compressor
    for compressor in (
        # gzip: level 6, no name or time in the header (wbits 31: a gzip wrapper zlib makes)
        ArchiveCompressor("gzip", "zlib", "1.2.13", _zlib_version, lambda: zlib.compressobj(6, zlib.DEFLATED, 31)),
        ArchiveCompressor(
            "zstd",
            "libzstd",
            "1.5.7",
            _libzstd_version,
            lambda: __import__("zstandard").ZstdCompressor(level=3, threads=0).compressobj(),
        ),
    )
}
