"""Registry sources when the network and the registry misbehave, through a fault-injecting
proxy (tests/faultproxy.py) in front of a real registry: retries, Range resume, corrupt
and wrong content, oversize manifests, a registry that dies mid-download, the download
bound, progress lines. Every failure is one line with nothing at `output`, and a later good
run completes with the same archive as an undisturbed one."""

from __future__ import annotations

import os

import pytest

from tests.engines import Registry, require
from tests.faultproxy import Fault, FaultProxy
from tests.imagefactory import Image, LayoutEntry, compress, make_config, make_layer, sha, write_oci_layout
from tests.workflowrun import export, sha256_file, snakemake, write_config

BASE = make_layer({"base": os.urandom(1_500_000)})  # incompressible: the gzip blob is about as big
A = Image([BASE, make_layer({"app": b"a1"})], b"")
A.config = make_config(A.layers, config={"Cmd": ["a"]})
B = Image([BASE, make_layer({"app": b"b1"}), make_layer({"more": os.urandom(300_000)})], b"")
B.config = make_config(B.layers, config={"Cmd": ["b"]})
BASE_BLOB = sha(compress(BASE, "gzip"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    require("docker-registry")
    require("skopeo")
    layout = write_oci_layout(
        str(tmp_path_factory.mktemp("push") / "layout"), [LayoutEntry(A, ["a"]), LayoutEntry(B, ["b"])]
    )
    server = Registry()
    server.push(layout, "a", "faults/a:1")
    server.push(layout, "b", "faults/b:1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_proxy(registry: Registry):
    with FaultProxy(registry.url) as server:
        yield server


@pytest.fixture
def proxy(shared_proxy: FaultProxy) -> FaultProxy:
    """The module's proxy with no faults and no requests yet: image names keep one host."""
    with shared_proxy.lock:
        shared_proxy.faults.clear()
        shared_proxy.requests.clear()
    return shared_proxy


@pytest.fixture(scope="module")
def reference_archive(shared_proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The archive an undisturbed run makes."""
    work = str(tmp_path_factory.mktemp("reference"))
    export(work, sources=[source(shared_proxy.url)], images=names(shared_proxy.host))
    return sha256_file(archive(work))


def source(url: str, **extra: object) -> dict[str, object]:
    return {"type": "registry", "url": url, "insecure": True, **extra}


def names(host: str) -> list[str]:
    return [f"{host}/faults/a:1", f"{host}/faults/b:1"]


def archive(work: str) -> str:
    return os.path.join(work, "results", "images.tar")


def blob_requests(proxy: FaultProxy, digest: str) -> list:
    return [r for r in proxy.requests if r.method == "GET" and r.path.endswith("/blobs/" + digest)]


def failing_run(work: str, config: dict[str, object]) -> str:
    """Run, expect failure: one error line, no traceback, nothing at the output path."""
    run = snakemake(work, configfile=write_config(work, **config))
    lines = [line for line in run.output.splitlines() if line.startswith("tarexport: error:")]
    assert run.returncode != 0 and lines and "Traceback" not in run.output, run.output[-4000:]
    assert not os.path.exists(archive(work)) and not os.path.exists(archive(work) + ".part")
    return lines[0]


@pytest.mark.engines
def test_a_broken_download_resumes_with_range(proxy: FaultProxy, reference_archive: str, tmp_path) -> None:
    proxy.faults.append(Fault(r"/blobs/" + BASE_BLOB, "cut", after=400_000, times=2))
    work = str(tmp_path)
    export(work, sources=[source(proxy.url, progress_interval=0)], images=names(proxy.host))
    assert sha256_file(archive(work)) == reference_archive
    tries = blob_requests(proxy, BASE_BLOB)
    assert [t.action for t in tries] == ["cut", "cut", ""]
    assert "Range" not in tries[0].headers
    # each resume asks for the rest, from a point past what the first attempt delivered
    offsets = [int(t.headers["Range"].removeprefix("bytes=").rstrip("-")) for t in tries[1:]]
    assert all(offset > 0 for offset in offsets) and offsets == sorted(offsets), offsets
    assert tries[2].status == 206


@pytest.mark.engines
def test_5xx_and_429_are_retried(proxy: FaultProxy, reference_archive: str, tmp_path) -> None:
    proxy.faults += [
        Fault(r"/manifests/1$", "status", status=429, headers={"Retry-After": "1"}, method="*"),
        Fault(r"/blobs/" + BASE_BLOB, "status", status=500, times=2),
        Fault(r"/blobs/" + A.image_id, "status", status=503),
    ]
    work = str(tmp_path)
    export(work, sources=[source(proxy.url)], images=names(proxy.host))
    assert sha256_file(archive(work)) == reference_archive
    assert [t.status for t in blob_requests(proxy, BASE_BLOB)] == [500, 500, 200]
    assert [t.status for t in blob_requests(proxy, A.image_id)] == [503, 200]
    throttled = [r for r in proxy.requests if r.status == 429]
    after = [r for r in proxy.requests if r.path == throttled[0].path and r.started > throttled[0].finished]
    assert after and after[0].started - throttled[0].finished >= 0.9  # Retry-After was honoured


@pytest.mark.engines
def test_persistent_5xx_fails_on_one_line(proxy: FaultProxy, tmp_path) -> None:
    proxy.faults.append(Fault(r"/blobs/" + BASE_BLOB, "status", status=500, times=-1))
    work = str(tmp_path)
    line = failing_run(work, {"sources": [source(proxy.url, retries=2)], "images": names(proxy.host)})
    assert f"registry answered 500 Internal Server Error for /v2/faults/a/blobs/{BASE_BLOB} after 3 attempts" in line
    assert len(blob_requests(proxy, BASE_BLOB)) == 3
    proxy.faults.clear()
    export(work, sources=[source(proxy.url, retries=2)], images=names(proxy.host))


@pytest.mark.engines
def test_registry_stopped_mid_download(registry: Registry, proxy: FaultProxy, reference_archive: str, tmp_path) -> None:
    proxy.faults.append(Fault(r"/blobs/" + BASE_BLOB, "stop", after=300_000, callback=registry.halt))
    work = str(tmp_path)
    config = {"sources": [source(proxy.url, retries=2)], "images": names(proxy.host)}
    try:
        line = failing_run(work, config)
    finally:
        registry.start()
    assert "registry answered 502 Bad Gateway" in line or "download of" in line, line
    assert f"source {proxy.url}/faults/" in line, line
    export(work, **config)
    assert sha256_file(archive(work)) == reference_archive


@pytest.mark.engines
def test_a_corrupted_blob_is_refused(proxy: FaultProxy, reference_archive: str, tmp_path) -> None:
    proxy.faults.append(Fault(r"/blobs/" + BASE_BLOB, "corrupt", after=1000, times=-1))
    work = str(tmp_path)
    line = failing_run(work, {"sources": [source(proxy.url)], "images": names(proxy.host)})
    assert f"member blobs/sha256/{BASE_BLOB.split(':')[1]}" in line and f"expected {BASE_BLOB}" in line
    assert f"{proxy.host}/faults/a:1" in line  # the image it serves
    proxy.faults.clear()
    export(work, sources=[source(proxy.url)], images=names(proxy.host))
    assert sha256_file(archive(work)) == reference_archive


@pytest.mark.engines
def test_wrong_content_for_a_digest(proxy: FaultProxy, tmp_path) -> None:
    """A config or a layer answered with other bytes: refused by digest or by size."""
    proxy.faults.append(Fault(r"/blobs/" + B.image_id, "replace", body=A.config, times=-1))
    work = str(tmp_path / "config")
    os.makedirs(work)
    line = failing_run(work, {"sources": [source(proxy.url)], "images": names(proxy.host)})
    assert f"registry served content with digest {A.image_id} for {B.image_id}" in line
    proxy.faults[:] = [Fault(r"/blobs/" + BASE_BLOB, "replace", body=compress(B.layers[2], "gzip"), times=-1)]
    work = str(tmp_path / "layer")
    os.makedirs(work)
    line = failing_run(work, {"sources": [source(proxy.url)], "images": names(proxy.host)})
    assert "the manifest says" in line and BASE_BLOB.split(":")[1] in line


@pytest.mark.engines
def test_an_oversize_manifest_is_refused(proxy: FaultProxy, tmp_path) -> None:
    proxy.faults.append(Fault(r"/manifests/sha256:", "pad", pad=16 * 1024 * 1024 + 1, times=-1))
    work = str(tmp_path)
    line = failing_run(work, {"sources": [source(proxy.url)], "images": names(proxy.host)[:1]})
    assert "the metadata is over the 16777216-byte limit" in line and "member blobs/sha256/" in line, line


@pytest.mark.engines
def test_progress_is_shown_on_long_downloads(proxy: FaultProxy, tmp_path) -> None:
    proxy.faults.append(Fault(r"/blobs/" + BASE_BLOB, "delay", after=200_000, seconds=2.5))
    work = str(tmp_path)
    run = export(work, sources=[source(proxy.url, progress_interval=1)], images=names(proxy.host)[:1])
    # named by the image it serves and the layer, the end said once
    image = names(proxy.host)[0]
    lines = [
        line for line in run.output.splitlines() if line.startswith(f"tarexport: {image}: layer {BASE_BLOB[:19]}:")
    ]
    size = len(compress(BASE, "gzip")) / (1 << 20)
    assert lines and lines[-1].endswith(f"{size:.1f} of {size:.1f} MiB, done"), run.output[-3000:]
    assert sum(line.endswith(", done") for line in lines) == 1
    assert any("MiB/s" in line for line in lines)


@pytest.mark.engines
@pytest.mark.parametrize("bound", [1, 3])
def test_downloads_are_bounded(proxy: FaultProxy, tmp_path, bound: int) -> None:
    """`parallel_downloads` caps the layer downloads running at once, whatever --cores says."""
    layers = [BASE_BLOB, sha(compress(A.layers[1], "gzip"))] + [sha(compress(x, "gzip")) for x in B.layers[1:]]
    proxy.faults += [Fault(r"/blobs/" + digest, "delay", seconds=1.0) for digest in layers]
    work = str(tmp_path)
    export(work, "--cores", "4", sources=[source(proxy.url)], images=names(proxy.host), parallel_downloads=bound)
    spans = [(r.started, r.finished) for digest in layers for r in blob_requests(proxy, digest)]
    assert len(spans) == 4
    most = max(sum(1 for s, f in spans if s <= t < f) for t, _ in spans)
    assert most == min(bound, 4), spans


@pytest.mark.engines
def test_tags_docker_refuses_are_left_out_of_a_whole_repository(proxy: FaultProxy, tmp_path) -> None:
    """A bare name asks for every tag; a tag list naming tags Docker's grammar refuses (a
    leading dash, a non-ASCII letter) gives only the valid ones: an archive holding the
    others would not load."""
    listing = b'{"name": "faults/a", "tags": ["1", "-x", "t\xc3\xa4g", ".hidden"]}'
    proxy.faults.append(Fault(r"/faults/a/tags/list$", "replace", body=listing))
    work = str(tmp_path)
    export(work, sources=[source(proxy.url)], images=[f"{proxy.host}/faults/a"])
    from tests.oracle import manifest_of

    assert [item["RepoTags"] for item in manifest_of(archive(work))] == [[f"{proxy.host}/faults/a:1"]]


@pytest.mark.engines
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'["1"]', "the tag list is not a JSON object with a list of tags"),
        (b'{"tags": [1]}', "the tag list is not a JSON object with a list of tags"),
        (b'{"tags": ["1"]}' + b" " * (17 << 20), "the tag list is over the 16777216-byte limit"),
    ],
    ids=["a-list", "a-number", "endless"],
)
def test_a_bad_tag_list_fails_on_one_line(proxy: FaultProxy, tmp_path, body: bytes, expected: str) -> None:
    proxy.faults.append(Fault(r"/faults/a/tags/list$", "replace", body=body))
    line = failing_run(str(tmp_path), {"sources": [source(proxy.url)], "images": [f"{proxy.host}/faults/a"]})
    assert expected in line and proxy.url.split("//")[1] in line, line


@pytest.mark.unit
def test_a_body_trickled_forever_is_cut_at_its_time_limit() -> None:
    """The socket timeout restarts with every byte: the whole body has a deadline of its own."""
    import time

    from tarexport.errors import TarexportError
    from tarexport.sources.registry_http import read_bounded

    class Trickle:
        def read1(self, size: int) -> bytes:
            time.sleep(0.01)
            return b" "

    start = time.monotonic()
    with pytest.raises(TarexportError, match=r"took over 0\.3 s to arrive"):
        read_bounded(Trickle(), 1 << 20, 0.3, "the token answer", "registry example")
    assert time.monotonic() - start < 2


@pytest.mark.unit
def test_a_content_length_that_is_not_a_number_means_an_unknown_size() -> None:
    """It was int()ed as it came: a ValueError traceback. The blob's own size and digest
    (from its descriptor) are checked anyway."""
    import io
    import typing

    from tarexport.sources.download import ResumingDownload

    class Response(io.BytesIO):
        headers: typing.ClassVar[dict[str, str]] = {"Content-Length": "12abc"}

    download = ResumingDownload(lambda offset: Response(b"layer bytes!"[offset:]), "sha256:x", "registry", 0)
    assert download.size == -1
    assert download.read() == b"layer bytes!"


@pytest.mark.unit
def test_an_endless_chunked_body_is_cut_at_its_announced_size() -> None:
    """A body sent chunked (which makes HTTP ignore Content-Length) that never ends, under
    a Content-Length that matches the descriptor: read through the real http.client, it is
    refused once past the announced size, not read forever."""
    import http.server
    import threading
    import urllib.request

    from tarexport.errors import TarexportError
    from tarexport.sources.download import ResumingDownload

    class Endless(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v2/x/blobs/sha256:0"
        download = ResumingDownload(lambda offset: urllib.request.urlopen(url, timeout=5), "sha256:0", "registry x", 0)
        with pytest.raises(TarexportError, match="registry sent more than the 1000 bytes it announced for sha256:0"):
            for _ in range(1000):  # 64 MiB at most, should the cut fail
                download.read(1 << 16)
        assert download.position <= 1000
    finally:
        server.shutdown()


@pytest.mark.unit
def test_a_blob_trickled_forever_is_resumed_then_refused() -> None:
    """A server sending a byte at a time never trips the socket timeout: a download slower
    than the minimum rate over a whole `timeout` window is resumed on a new connection, and
    refused on one line after `retries` such stalls, in bounded time."""
    import io
    import time
    import typing

    from tarexport.errors import TarexportError
    from tarexport.sources.download import ResumingDownload

    opened: list[int] = []

    class Trickle(io.RawIOBase):
        headers: typing.ClassVar[dict[str, str]] = {"Content-Length": "100000000"}
        status = 200

        def readinto(self, buffer: typing.Any) -> int:
            time.sleep(0.02)
            buffer[0] = 0x20
            return 1

    def open_at(offset: int) -> Trickle:
        opened.append(offset)
        return Trickle()

    download = ResumingDownload(open_at, "sha256:slow", "registry x", 2, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(TarexportError, match=r"stalled at byte \d+ of 100000000: slower than 16 KiB/s for 0.3 s, 3"):
        while time.monotonic() - start < 10:  # should the limit fail
            download.read(1 << 16)
    assert time.monotonic() - start < 3
    assert len(opened) == 3 and opened[1] > 0  # resumed where it was, twice
