"""A fault-injecting reverse HTTP proxy for tests (stdlib only).

Put it in front of a real registry, then make chosen requests fail: error statuses, bodies
cut off, corrupted, replaced or padded, slow answers, or an upstream that dies mid-download::

    proxy = FaultProxy(registry.url)
    proxy.faults.append(Fault(r"/blobs/sha256:" + digest, "cut", after=1000))
    ...  # point the client at proxy.host
    assert [r.action for r in proxy.requests if "/blobs/" in r.path] == ["cut", ""]
    proxy.stop()

Everything else is passed through unchanged: status, headers (Content-Range of a 206 too),
redirects (not followed), streamed bodies. An unreachable upstream is answered with 502.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

ACTIONS = frozenset({"status", "cut", "corrupt", "replace", "pad", "delay", "stop"})
# RFC 9110 7.6.1, plus what only makes sense between the client and the proxy
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
CHUNK = 1 << 16
UPSTREAM_TIMEOUT = 60.0
# registry error codes (distribution spec) for the bodies of "status" faults
ERROR_CODES = {
    400: "UNSUPPORTED",
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "BLOB_UNKNOWN",
    429: "TOOMANYREQUESTS",
    503: "UNAVAILABLE",
}


@dataclass
class Fault:
    """What to do to the first `times` requests whose method and path match.

    action:
      "status"  answer `status` (with `headers` added) and a registry-like JSON error, upstream untouched
      "cut"     send the upstream headers (its Content-Length) and `after` body bytes, then break the connection
      "corrupt" flip the body byte at offset `after` (xor 0xFF); nothing else changes
      "replace" serve `body` instead of the upstream body (Content-Length adjusted, other headers kept)
      "pad"     append `pad` spaces to the body (Content-Length adjusted)
      "delay"   send the headers and `after` body bytes, sleep `seconds`, then send the rest
      "stop"    send the headers and `after` body bytes, call `callback` (e.g. stop the upstream),
                then break the connection
    "cut" and "stop" break the connection with a TCP RST once the client acknowledged the `after` bytes
    (urllib: ConnectionResetError; bytes still in its buffer may be lost), or with `reset=False` with a
    plain FIN short of Content-Length (urllib: IncompleteRead from read(), a silently short body from read(n)).
    `headers` are added to (or replace) the response headers of every action, not only "status".
    `times` counts down as the fault is used (-1: forever); a used-up fault stays in the list with times 0.
    """

    path: str
    action: str
    times: int = 1
    method: str = "GET"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0
    body: bytes = b""
    pad: int = 0
    seconds: float = 0
    callback: Callable[[], None] | None = None
    reset: bool = True  # "cut", "stop": RST (True) or FIN (False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}, expected one of {sorted(ACTIONS)}")
        if self.action == "stop" and self.callback is None:
            raise ValueError('a "stop" fault needs a callback')
        re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method.upper()) and re.search(self.path, path) is not None


@dataclass
class Request:
    """One request the proxy received, as the client sent it, and what it got back."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0  # status line served (0: none, e.g. the client went away first)
    action: str = ""  # fault action applied, "" for a plain pass-through
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0  # when the answer was sent (or broken off)


class _UpstreamBroken(Exception):
    """The upstream body ended early or the upstream connection failed mid-body."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() joins the handler threads itself, with a timeout

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.active: dict[socket.socket, threading.Thread] = {}
        self.reset: set[socket.socket] = set()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), name="faultproxy-handler"
        )
        thread.daemon = True
        with self.proxy.lock:
            self.active[request] = thread
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.proxy.lock:
                self.active.pop(request, None)

    def shutdown_request(self, request: Any) -> None:
        with self.proxy.lock:
            hard = request in self.reset
            self.reset.discard(request)
        if hard:  # SO_LINGER 0 is set: closing sends RST, without the FIN shutdown() would send first
            request.close()
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError | http.client.HTTPException):
            return  # a client or upstream that went away: routine here
        self.proxy.errors.append(error)  # type: ignore[arg-type]
        traceback.print_exc()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- request side --

    def _proxy(self) -> None:
        proxy = self.server.proxy
        target = urlsplit(self.path)  # also an absolute-form target, as a forward proxy gets it
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        body = self._request_body()
        record = Request(self.command, path, dict(self.headers.items()))
        try:
            self._serve(proxy, path, body, record)
        finally:
            record.finished = time.monotonic()

    def _serve(self, proxy: FaultProxy, path: str, body: bytes | None, record: Request) -> None:
        fault = proxy._take(self.command, path)
        if fault is not None and fault.action == "status":
            record.action = "status"
            self._answer_error(record, fault.status, fault.headers)
            return
        try:
            connection, response = self._forward(path, body)
        except (OSError, http.client.HTTPException):
            if fault is not None:
                proxy._give_back(fault)
            self._answer_error(record, 502, {})
            return
        try:
            if fault is not None:
                record.action = fault.action
            self._relay(record, connection, response, fault)
        finally:
            proxy._forget(connection)
            connection.close()

    def _request_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        return None

    def _forward(self, path: str, body: bytes | None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        proxy = self.server.proxy
        connection = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=UPSTREAM_TIMEOUT)
        proxy._remember(connection)
        try:
            connection.putrequest(self.command, path, skip_accept_encoding=True)
            dropped = HOP_BY_HOP | _connection_tokens(self.headers.get_all("Connection", []))
            for name, value in self.headers.items():
                if name.lower() not in dropped | {"host", "content-length", "expect"}:
                    connection.putheader(name, value)
            # so that URLs the registry builds (Location of uploads) point at the proxy
            connection.putheader("X-Forwarded-Host", proxy.host)
            connection.putheader("X-Forwarded-Proto", "http")
            connection.putheader("X-Forwarded-For", self.client_address[0])
            if body is not None or self.command in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body or b"")))
            connection.endheaders(body or None)
            return connection, connection.getresponse()
        except BaseException:
            proxy._forget(connection)
            connection.close()
            raise

    # -- response side --

    def _answer_error(self, record: Request, status: int, extra: dict[str, str]) -> None:
        if status == 502:
            body = b"502 Bad Gateway: upstream unreachable\n"
            headers = {"Content-Type": "text/plain; charset=utf-8"}
        else:
            code = ERROR_CODES.get(status, "UNKNOWN")
            if status == 404 and "/manifests/" in record.path:
                code = "MANIFEST_UNKNOWN"
            error = {"code": code, "message": "injected fault", "detail": f"faultproxy answered {status}"}
            body = json.dumps({"errors": [error]}).encode() + b"\n"
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Docker-Distribution-Api-Version": "registry/2.0",
            }
        headers |= {"Date": self.date_time_string(), "Content-Length": str(len(body))}
        record.status = status
        self.server.proxy._record(record)
        self.send_response_only(status)
        for name, value in _override(list(headers.items()), extra):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _relay(
        self,
        record: Request,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        fault: Fault | None,
    ) -> None:
        action = fault.action if fault is not None else ""
        status = response.status
        dropped = HOP_BY_HOP | _connection_tokens(response.headers.get_all("Connection", [])) | {"content-length"}
        headers = [(name, value) for name, value in response.getheaders() if name.lower() not in dropped]
        has_body = self.command != "HEAD" and status not in (204, 304) and not 100 <= status < 200
        declared = response.getheader("Content-Length")
        length = int(declared) if declared is not None and declared.strip().isdigit() else None
        source: Iterator[bytes]
        if has_body and length is None:  # chunked or close-delimited upstream: buffer, to send a Content-Length
            try:
                data = response.read()
            except (OSError, http.client.HTTPException):
                self._answer_error(record, 502, {})
                return
            length, source = len(data), iter([data] if data else [])
        else:
            source = _stream(response, length or 0) if has_body else iter([])
        if action == "replace":
            length = len(fault.body) if fault is not None else length
        elif action == "pad" and length is not None and fault is not None:
            length += fault.pad
        if length is not None:
            headers.append(("Content-Length", str(length)))
        if fault is not None:
            headers = _override(headers, fault.headers)

        record.status = status
        self.server.proxy._record(record)
        self.send_response_only(status, response.reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        try:
            self._send_body(fault, source, has_body, connection)
        except _UpstreamBroken:
            self._reset()  # as a load balancer does when its backend dies mid-body

    def _send_body(
        self,
        fault: Fault | None,
        source: Iterator[bytes],
        has_body: bool,
        connection: http.client.HTTPConnection,
    ) -> None:
        proxy = self.server.proxy
        action = fault.action if fault is not None else ""
        after = fault.after if fault is not None else 0
        if fault is not None and action == "replace":
            if has_body:
                self.wfile.write(fault.body)
            return
        if fault is not None and action == "delay" and after == 0:
            proxy._stopping.wait(fault.seconds)
        sent = 0
        for chunk in source:
            if action == "corrupt" and sent <= after < sent + len(chunk):
                at = after - sent
                chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]
            if action in ("cut", "stop") and sent + len(chunk) >= after:
                self.wfile.write(chunk[: after - sent])
                sent = after
                break
            if fault is not None and action == "delay" and sent < after <= sent + len(chunk):
                self.wfile.write(chunk[: after - sent])
                proxy._stopping.wait(fault.seconds)
                chunk = chunk[after - sent :]
                sent = after
            self.wfile.write(chunk)
            sent += len(chunk)
        else:
            if fault is not None and action == "delay" and sent < after:
                proxy._stopping.wait(fault.seconds)  # `after` beyond the body: sleep at its end
            if fault is not None and action == "pad" and has_body:
                self.wfile.write(b" " * fault.pad)
        if fault is not None and action in ("cut", "stop"):
            if fault.callback is not None and action == "stop":
                proxy._forget(connection)
                connection.close()  # the upstream may be stopped now: do not hold a connection to it
                try:
                    fault.callback()
                except Exception as error:
                    proxy.errors.append(error)
                    traceback.print_exc()
            self._reset(fault.reset)

    def _reset(self, hard: bool = True) -> None:
        """Break the connection: what was written reaches the client, then a TCP RST (or only a FIN)."""
        self.close_connection = True
        sock = self.connection
        with contextlib.suppress(OSError):
            self.wfile.flush()
            if not hard:
                sock.shutdown(socket.SHUT_WR)
                return
            _drain(sock, deadline=time.monotonic() + 5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with self.server.proxy.lock:
                self.server.reset.add(sock)


def _stream(response: http.client.HTTPResponse, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        try:
            data = response.read1(min(CHUNK, remaining))
        except (OSError, http.client.HTTPException) as error:
            raise _UpstreamBroken from error
        if not data:
            raise _UpstreamBroken
        remaining -= len(data)
        yield data


def _drain(sock: socket.socket, deadline: float) -> None:
    """Wait until the peer acknowledged what was sent (Linux: TIOCOUTQ), so a RST does not
    discard it from the send queue."""
    try:
        import fcntl
        import termios

        request = termios.TIOCOUTQ
    except (ImportError, AttributeError):
        return
    while time.monotonic() < deadline:
        (unacknowledged,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))
        if unacknowledged == 0:
            return
        time.sleep(0.005)


def _connection_tokens(values: list[str]) -> frozenset[str]:
    return frozenset(token.strip().lower() for value in values for token in value.split(",") if token.strip())


def _override(headers: list[tuple[str, str]], extra: dict[str, str]) -> list[tuple[str, str]]:
    names = {name.lower() for name in extra}
    return [(name, value) for name, value in headers if name.lower() not in names] + list(extra.items())


class FaultProxy:
    """Reverse proxy on 127.0.0.1 (a free port) in front of `upstream` ("http://HOST:PORT")."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://HOST:PORT, not {upstream!r}")
        self.upstream = upstream
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port or 80
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []  # unexpected errors in handlers (also printed)
        self._upstreams: set[http.client.HTTPConnection] = set()
        self._stopping = threading.Event()
        self._stopped = False
        self._server = _Server(self)
        port = self._server.server_address[1]
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="faultproxy", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving, break the connections still open, join every thread."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()  # ends "delay" sleeps
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
        with self.lock:
            clients = dict(self._server.active)
            upstreams = list(self._upstreams)
        for connection in upstreams:
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 10
        for thread in clients.values():
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- used by the handlers --

    def _take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in list(self.faults):
                if fault.times != 0 and fault.matches(method, path):
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    def _give_back(self, fault: Fault) -> None:
        with self.lock:
            if fault.times >= 0:
                fault.times += 1

    def _record(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def _remember(self, connection: http.client.HTTPConnection) -> None:
        with self.lock:
            self._upstreams.add(connection)

    def _forget(self, connection: http.client.HTTPConnection) -> None:
        with self.lock:
            self._upstreams.discard(connection)
