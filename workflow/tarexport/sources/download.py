"""A blob download that survives broken connections: it resumes where it broke with
`Range`, backing off between attempts, and reports its progress on long downloads.

The bytes are not checked here: the reader hashes everything it reads against the
digest, so a resumed download is verified exactly like an unbroken one.
"""

from __future__ import annotations

import datetime
import email.utils
import http.client
import io
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import TarexportError

MIB = 1 << 20
PIECE = 256 << 10
# A download slower than this over a whole `timeout` window is taken for stalled (a server
# trickling a byte at a time never trips the socket timeout) and resumed on a new
# connection; more stalls than `retries` end it. So a blob's download time is bounded by
# its size: at most size / MIN_RATE, plus the windows lost to stalls.
MIN_RATE = 16 << 10  # bytes per second
MAX_RETRY_AFTER = 60.0  # seconds: a server's Retry-After is obeyed up to this


def backoff(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait before attempt `attempt` + 1: the server's Retry-After (RFC 9110
    §10.2.3: ASCII digits, or an HTTP date) capped at a minute, else 0.5 s doubling up to
    10 s. Any other value is ignored: str.isdigit() and float() take "٣" and "²" too."""
    default = min(0.5 * 2**attempt, 10.0)
    text = (retry_after or "").strip()
    if re.fullmatch(r"[0-9]+", text, re.ASCII):
        digits = text.lstrip("0") or "0"  # int() refuses over 4300 digits: count them instead
        return MAX_RETRY_AFTER if len(digits) > 9 else min(float(digits), MAX_RETRY_AFTER)
    if not text.isascii() or len(text) > 64:  # an HTTP date is 29 characters
        return default
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return default
    if when.tzinfo is None:  # "-0000": no zone given; HTTP dates are GMT
        when = when.replace(tzinfo=datetime.UTC)
    return min(max((when - datetime.datetime.now(datetime.UTC)).total_seconds(), 0.0), MAX_RETRY_AFTER)


class ResumingDownload(io.RawIOBase):
    """The body of `GET url`, read through broken connections.

    `open_at(offset)` sends the request (with `Range: bytes=offset-` when offset > 0) and
    returns the response; a 200 answer to a ranged request is skipped up to the offset.
    """

    def __init__(
        self,
        open_at: Callable[[int], Any],
        name: str,
        label: str,
        retries: int,
        progress_interval: float = 0.0,
        timeout: float = 60.0,
    ):
        super().__init__()
        self._open_at = open_at
        self.name = name  # for progress lines: what is downloaded (the layer job names its images)
        self.label = label
        self.retries = retries
        self.progress_interval = progress_interval
        self.position = 0
        self.resumed = 0  # how many times the connection was re-opened
        self._response: Any = open_at(0)
        length = str(self._response.headers.get("Content-Length", "")).strip()
        self.size = int(length) if length.isdigit() else -1  # unknown: the descriptor's size is checked anyway
        self._started = self._reported = time.monotonic()
        self._said_progress = False
        self._said_done = False
        self.timeout = timeout
        self.stalls = 0
        self._window = (self._started, 0)  # when the current rate window began, and at which byte

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        failures = 0
        while True:
            try:
                if self._response is None:
                    self._response = self._reopen()
                # a piece at a time: a broken connection loses at most one piece
                count = self._response.readinto(memoryview(buffer)[:PIECE])
                if count == 0 and 0 <= self.position < self.size:
                    raise http.client.IncompleteRead(b"", self.size - self.position)
                if 0 <= self.size < self.position + count:  # an endless (chunked) body, say
                    raise TarexportError(
                        f"registry sent more than the {self.size} bytes it announced for {self.name}",
                        source=self.label,
                    )
                self._check_rate(count)
            except (OSError, http.client.HTTPException) as error:
                if failures >= self.retries:
                    raise TarexportError(
                        f"download of {self.name} broke at byte {self.position} of {self.size}"
                        f" after {failures + 1} attempts ({type(error).__name__}: {error}); run again to resume",
                        source=self.label,
                    ) from None
                if self._response is not None:
                    self._response.close()
                    self._response = None
                time.sleep(backoff(failures))
                failures += 1
                continue
            self.position += count
            self._progress(done=count == 0)
            return count

    def _check_rate(self, count: int) -> None:
        """Raise TimeoutError (retried like a broken connection) when a whole `timeout`
        window gave less than MIN_RATE; a TarexportError past `retries` such stalls."""
        now = time.monotonic()
        began, at = self._window
        if now - began < self.timeout:
            return
        if self.position + count - at < MIN_RATE * (now - began):
            self.stalls += 1
            if self.stalls > self.retries:
                raise TarexportError(
                    f"download of {self.name} stalled at byte {self.position} of {self.size}: slower than"
                    f" {MIN_RATE >> 10} KiB/s for {self.timeout:g} s, {self.stalls} times; check the network,"
                    " or raise timeout",
                    source=self.label,
                )
            raise TimeoutError(f"slower than {MIN_RATE >> 10} KiB/s for {now - began:.0f} s")
        self._window = (now, self.position + count)

    def _reopen(self) -> Any:
        """The rest of the body from `position` on, by a new request."""
        self.resumed += 1
        self._window = (time.monotonic(), self.position)
        response = self._open_at(self.position)
        if response.status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self.position:
                response.close()
                raise TarexportError(
                    f"registry resumed {self.name} at the wrong offset"
                    f" ({response.headers.get('Content-Range', 'no Content-Range')}, wanted {self.position})",
                    source=self.label,
                )
            return response
        skip = self.position  # the server ignores Range: read past what we already have
        while skip:
            piece = response.read(min(skip, MIB))
            if not piece:
                response.close()
                raise http.client.IncompleteRead(b"", skip)
            skip -= len(piece)
        return response

    def _progress(self, done: bool) -> None:
        if not self.progress_interval:
            return
        now = time.monotonic()
        if done:
            # once: a buffered reader asks again after the end
            if self._said_progress and not self._said_done:
                self._said_done = True
                print(f"tarexport: {self.name}: {self._amount()}, done", file=sys.stderr, flush=True)
            return
        if now - self._reported >= self.progress_interval:
            self._reported = now
            self._said_progress = True
            rate = self.position / max(now - self._started, 1e-9) / MIB
            print(f"tarexport: {self.name}: {self._amount()} ({rate:.1f} MiB/s)", file=sys.stderr, flush=True)

    def _amount(self) -> str:
        total = f" of {self.size / MIB:.1f} MiB" if self.size >= 0 else " MiB"
        return f"{self.position / MIB:.1f}{total}"

    def close(self) -> None:
        if not self.closed and self._response is not None:
            self._response.close()
        super().close()


def name_download(stream: object, name: str) -> None:
    """Name a registry download's progress lines after what it is for (`IMAGE: layer
    sha256:...`) rather than the bare digest the registry knows it by."""
    raw = getattr(stream, "raw", None)
    if isinstance(raw, ResumingDownload):
        raw.name = name
