"""The lock file as hostile input: read as a source's file is (a regular file, without
blocking, bounded), errors that name key paths and never quote it, frozen exports checked
against the bytes the sources hold, names only from the request, and a lock path that is
never the archive, a file beside it or a source."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from tarexport.errors import TarexportError
from tarexport.lockfile import MAX_LOCK_BYTES, lock_document, lock_holds, read_lock, registry_requests, resolve_locked
from tarexport.plan import Catalog, build_catalog, make_plan
from tarexport.sources.loading import SourceSpec
from tarexport.startup import checked_settings
from tests.imagefactory import LayoutEntry, make_image, write_docker_archive, write_oci_layout
from tests.workflowrun import ROOT, Run, snakemake, write_config

LOCK_SCHEMA = os.path.join(ROOT, "schemas", "lock.schema.json")
CONFIG_SCHEMA = os.path.join(ROOT, "schemas", "config.schema.yaml")
APP = make_image([{"app": b"release 1.0"}], config={"Cmd": ["app"]})
NEXT = make_image([{"base": b"base"}, {"app": b"release 1.1"}], config={"Cmd": ["next"]})
TOOL = make_image([{"tool": b"helper"}], config={"Cmd": ["tool"]})
ARM = make_image([{"arm": b"arm"}], architecture="arm64")


def layout(tmp_path: Any) -> str:
    return write_oci_layout(
        str(tmp_path / "layout"),
        [
            LayoutEntry(APP, ["example.com/team/app:1"]),
            LayoutEntry(NEXT, ["example.com/team/app:2"]),
            LayoutEntry(TOOL, ["example.com/team/tool:1"]),
            LayoutEntry(ARM, ["example.com/team/arm:1"]),
        ],
    )


def catalog_of(*sources: str) -> Catalog:
    return build_catalog([SourceSpec(path, path) for path in sources], "linux/amd64")


def honest_lock(catalog: Catalog, requests: list[str]) -> dict[str, Any]:
    """The lock lock_mode: update writes for these requests."""
    return json.loads(lock_document(make_plan(catalog, requests), "linux/amd64", "chosen"))


def write_lock(tmp_path: Any, document: dict[str, Any] | bytes) -> str:
    path = str(tmp_path / "release.lock")
    with open(path, "wb") as handle:
        handle.write(document if isinstance(document, bytes) else json.dumps(document).encode())
    return path


def frozen(
    catalog: Catalog, requests: list[str], path: str, kept_blobs: bool = False
) -> dict[str, dict[str, list[str]]]:
    """What a frozen export takes: each request's images with their tags (familiar form)."""
    lock = read_lock(path, "release.lock", LOCK_SCHEMA)
    registry_requests(lock, requests, False)
    resolution, _ = resolve_locked(catalog, requests, lock, kept_blobs)
    return {
        text: {image_id: [tag.familiar() for tag in tags] for image_id, tags in given.items()}
        for text, given in resolution.by_request.items()
    }


def refusal(call: Callable[[], object]) -> str:
    with pytest.raises(TarexportError) as caught:
        call()
    line = str(caught.value)
    assert "\n" not in line and len(line) < 400, line[:400]
    return line


def within(seconds: float, call: Callable[[], object], unblock: Callable[[], None]) -> tuple[dict[str, Any], float]:
    """Run `call` in a thread; one still blocked after `seconds` is released by `unblock` and
    fails the test (a regression must not hang the suite)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        unblock()
        thread.join(5)
        pytest.fail(f"still blocked after {seconds} s")
    return outcome, time.monotonic() - started


def release_reader(fifo: str) -> None:
    """A writer that opens and closes: a reader blocked opening the FIFO then reads its end."""
    with contextlib.suppress(OSError):  # no reader: nothing to release
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


# -------- read like a source: a regular file, without blocking, bounded


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_lock_that_is_no_regular_file_fails_fast_in_both_modes(tmp_path, kind: str) -> None:
    path = {"fifo": str(tmp_path / "release.lock"), "device": "/dev/zero", "directory": str(tmp_path)}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    outcome, seconds = within(3, lambda: read_lock(path, "release.lock", LOCK_SCHEMA), lambda: release_reader(path))
    error = outcome.get("error")
    assert isinstance(error, TarexportError), outcome
    assert "lock file release.lock cannot be read" in str(error) and "regular file" in str(error), error
    assert seconds < 2
    # lock_mode update compares the lock it finds with the lock it would write
    outcome, seconds = within(3, lambda: lock_holds(path, b"{}\n"), lambda: release_reader(path))
    assert outcome == {"value": False} and seconds < 2


@pytest.mark.unit
def test_an_oversized_lock_is_refused_unread(tmp_path) -> None:
    """200 MB of JSON took 1.8 GB to refuse; a lock over the cap is not even read."""
    path = str(tmp_path / "release.lock")
    with open(path, "wb") as handle:
        handle.write(b"[" + b" " * 1024)
        handle.truncate(200 * 1024 * 1024)  # sparse: costs no disk
    tracemalloc.start()
    try:
        started = time.monotonic()
        line = refusal(lambda: read_lock(path, "release.lock", LOCK_SCHEMA))
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"lock file release.lock is over {MAX_LOCK_BYTES >> 20} MiB" in line
    assert peak < 1 << 20 and seconds < 1, (peak, seconds)


@pytest.mark.unit
def test_a_lock_at_the_cap_is_read_and_one_byte_more_is_not(tmp_path) -> None:
    catalog = catalog_of(layout(tmp_path))
    document = json.dumps(honest_lock(catalog, ["example.com/team/app:1"])).encode()
    padded = document + b" " * (MAX_LOCK_BYTES - len(document))
    path = write_lock(tmp_path, padded)
    assert frozen(catalog, ["example.com/team/app:1"], path)
    write_lock(tmp_path, padded + b" ")
    assert "is over" in refusal(lambda: read_lock(path, "release.lock", LOCK_SCHEMA))


# -------- errors name the key path and never quote the document


def _set(document: dict[str, Any], path: str, value: object) -> None:
    *parents, last = path.split(".")
    target: Any = document
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[int(last) if last.isdigit() else last] = value


LONG = "x" * 200_000


@pytest.mark.unit
@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        ("requests.0.images.0.imageId", "sha256:" + LONG, "requests[0].images[0].imageId: is not a sha256 digest"),
        ("requests.0.images.0.names", {"a": LONG}, "requests[0].images[0].names: must be of type array"),
        ("requests.0.images.0.names.0", LONG, "requests[0].images[0].names[0]: must be at most 512 characters"),
        ("requests.0.images.0." + LONG, 1, "requests[0].images[0]: holds a key that a lock does not have"),
        ("requests.0.images.0.indexDigests", {LONG: "sha256:" + "0" * 64}, "indexDigests: must be at most 512"),
        ("requests.0.images.0.platform", LONG, "requests[0].images[0].platform: must be at most 256 characters"),
        ("requests.0.request", LONG, "requests[0].request: must be at most 512 characters"),
        ("platform", LONG, "platform: does not match"),
        ("platforms", LONG, 'platforms: must be "chosen" or "all"'),
        ("lockVersion", LONG, "lockVersion: must be 1"),
        ("requests", {"a": [LONG] * 5}, "requests: must be of type array"),
    ],
    ids=[
        "imageId",
        "names",
        "name",
        "unknown key",
        "indexDigests key",
        "image platform",
        "request",
        "platform",
        "platforms",
        "lockVersion",
        "requests",
    ],
)
def test_a_schema_error_names_the_key_path_and_quotes_nothing(tmp_path, path: str, value: object, says: str) -> None:
    document = honest_lock(catalog_of(layout(tmp_path)), ["example.com/team/app:1"])
    _set(document, path, value)
    line = refusal(lambda: read_lock(write_lock(tmp_path, document), "release.lock", LOCK_SCHEMA))
    assert line.startswith("lock file release.lock is not a tarexport lock (") and says in line, line[:400]
    assert "xxxxxxxx" not in line, line[:400]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"lockVersion": 1, "lockVersion": 1}', "cannot be read (an object holds a key twice)"),
        (b"[" * 100_000 + b"]" * 100_000, "cannot be read (nested too deeply)"),
        (b'{"a": "\xff' + b"x" * 100_000 + b'"}', "cannot be read (not UTF-8 at byte 7)"),
    ],
    ids=["repeated key", "deep", "not UTF-8"],
)
def test_a_lock_that_is_no_json_is_one_line_quoting_nothing(tmp_path, content: bytes, says: str) -> None:
    line = refusal(lambda: read_lock(write_lock(tmp_path, content), "release.lock", LOCK_SCHEMA))
    assert f"lock file release.lock {says}" in line and "xxxxxxxx" not in line, line[:400]


@pytest.mark.unit
def test_a_request_locked_twice_is_named_by_position(tmp_path) -> None:
    document = honest_lock(catalog_of(layout(tmp_path)), ["example.com/team/app:1"])
    document["requests"].append(document["requests"][0])
    line = refusal(lambda: read_lock(write_lock(tmp_path, document), "release.lock", LOCK_SCHEMA))
    assert "lists one request twice (requests[0] and requests[1])" in line


# -------- frozen: every field the export relies on, against the bytes the sources hold

REQUESTS = [
    "example.com/team/app:1",  # a tag
    "example.com/team/app",  # a whole repository
    APP.image_id,  # an image ID
    "sha256:" + TOOL.image_id.removeprefix("sha256:")[:12],  # a short ID
]


@pytest.mark.unit
def test_an_honest_lock_exports_what_the_requests_gave(tmp_path) -> None:
    catalog = catalog_of(layout(tmp_path))
    pin = f"example.com/team/tool:1@{catalog.images[TOOL.image_id].manifest_digest}"
    requests = [*REQUESTS, pin]
    given = make_plan(catalog, requests).by_request
    path = write_lock(tmp_path, honest_lock(catalog, requests))
    assert frozen(catalog, requests, path) == {
        text: {image_id: [tag.familiar() for tag in tags] for image_id, tags in images.items()}
        for text, images in given.items()
    }
    # a repository's tags may have moved since: its locked tags are kept, whichever image they name now
    document = honest_lock(catalog, ["example.com/team/app"])
    for image in document["requests"][0]["images"]:
        image["names"] = ["example.com/team/app:old-" + image["names"][0].rsplit(":", 1)[1]]
    assert frozen(catalog, ["example.com/team/app"], write_lock(tmp_path, document)) == {
        "example.com/team/app": {
            APP.image_id: ["example.com/team/app:old-1"],
            NEXT.image_id: ["example.com/team/app:old-2"],
        }
    }


def _image_of(catalog: Catalog, image_id: str) -> dict[str, Any]:
    """A locked entry of the image, as an honest lock gives it."""
    return honest_lock(catalog, [image_id])["requests"][0]["images"][0]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        # the reviewer sees NEXT's layers; the export would take APP under the tag
        ("layers", "requests[0].images[0].layers", "are not the diff_ids of image"),
        ("platform", "requests[0].images[0].platform", "is not the platform image"),
        ("manifestDigest", "requests[0].images[0].manifestDigest", "is the manifest of image"),
    ],
)
def test_frozen_refuses_a_lock_that_contradicts_the_config_found(tmp_path, change: str, field: str, says: str) -> None:
    catalog = catalog_of(layout(tmp_path))
    document = honest_lock(catalog, ["example.com/team/app:1"])
    other = _image_of(catalog, NEXT.image_id)
    document["requests"][0]["images"][0][change] = "linux/arm64" if change == "platform" else other[change]
    line = refusal(lambda: frozen(catalog, ["example.com/team/app:1"], write_lock(tmp_path, document)))
    assert line.startswith(f"example.com/team/app:1: lock file release.lock {field} {says}"), line
    assert line.endswith("update the lock (lock_mode: update)")


@pytest.mark.unit
def test_frozen_refuses_a_config_whose_digest_is_not_its_image_id(tmp_path) -> None:
    """The catalog's key is not taken on trust: the config exported must hash to the locked ID."""
    catalog = catalog_of(layout(tmp_path))
    path = write_lock(tmp_path, honest_lock(catalog, ["example.com/team/app:1"]))
    catalog.images[APP.image_id].config = NEXT.config
    line = refusal(lambda: frozen(catalog, ["example.com/team/app:1"], path))
    assert f"the config held as image {APP.image_id} has another digest" in line


@pytest.mark.unit
def test_frozen_refuses_an_image_that_is_not_what_a_digest_request_names(tmp_path) -> None:
    catalog = catalog_of(layout(tmp_path))
    request = f"example.com/team/app@{catalog.images[APP.image_id].manifest_digest}"
    document = honest_lock(catalog, [request])
    entry = document["requests"][0]["images"][0]
    entry.update(
        _image_of(catalog, TOOL.image_id), names=[]
    )  # TOOL, with a manifest of its own: no contradiction of its own
    line = refusal(lambda: frozen(catalog, [request], write_lock(tmp_path, document)))
    assert "lock file release.lock requests[0].images[0].imageId is not an image the sources hold under" in line


# -------- names come from the request, never from the lock


def _lock_with(catalog: Catalog, request: str, change: Callable[[list[dict[str, Any]]], None]) -> dict[str, Any]:
    document = honest_lock(catalog, [request])
    change(document["requests"][0]["images"])
    return document


def _add_name(name: str) -> Callable[[list[dict[str, Any]]], None]:
    return lambda images: images[0]["names"].append(name)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("request_text", "change", "says"),
    [
        # a tag gives that tag: no other, and not none
        ("example.com/team/app:1", _add_name("example.com/team/evil:1"), "names[1] adds example.com/team/evil:1"),
        ("example.com/team/app:1", _add_name("example.com/team/app:2"), "names[1] adds example.com/team/app:2"),
        (
            "example.com/team/app:1",
            lambda images: images[0]["names"].clear(),
            "names must be ['example.com/team/app:1']",
        ),
        # an image ID and a short ID give no tag
        (APP.image_id, _add_name("example.com/team/app:1"), "names[0] adds example.com/team/app:1"),
        (REQUESTS[3], _add_name("example.com/team/tool:1"), "names[0] adds example.com/team/tool:1"),
        # a repository gives its own tags, not another repository's
        ("example.com/team/app", _add_name("example.com/team/tool:1"), "names[1] adds example.com/team/tool:1"),
        # one name is one image
        ("example.com/team/app:1", lambda images: images.append(dict(images[0])), "requests[0].images lists 2 images"),
        # an index for a tag the entry does not export
        (
            "example.com/team/app:1",
            lambda images: images[0].update(indexDigests={"example.com/team/other:1": "sha256:" + "1" * 64}),
            "requests[0].images[0].indexDigests names a tag the entry does not export",
        ),
        # an image ID names that image; a short ID, one it starts
        (
            APP.image_id,
            lambda images: images[0].update(imageId=NEXT.image_id),
            "imageId is not the image the request names",
        ),
        (
            REQUESTS[3],
            lambda images: images[0].update(imageId=APP.image_id),
            "imageId is not the image the request names",
        ),
    ],
)
def test_frozen_refuses_a_name_the_request_does_not_give(tmp_path, request_text: str, change: Any, says: str) -> None:
    catalog = catalog_of(layout(tmp_path))
    path = write_lock(tmp_path, _lock_with(catalog, request_text, change))
    lock = read_lock(path, "release.lock", LOCK_SCHEMA)
    # refused before a registry is asked for it
    line = refusal(lambda: registry_requests(lock, [request_text], False))
    assert line.startswith(f"{request_text}: lock file release.lock ") and says in line, line
    assert refusal(lambda: resolve_locked(catalog, [request_text], lock, False)) == line


@pytest.mark.unit
def test_a_pin_gives_its_tag_alone(tmp_path) -> None:
    catalog = catalog_of(layout(tmp_path))
    pin = f"example.com/team/tool:1@{catalog.images[TOOL.image_id].manifest_digest}"
    path = write_lock(tmp_path, _lock_with(catalog, pin, _add_name("example.com/team/tool:latest")))
    assert "names[1] adds example.com/team/tool:latest" in refusal(lambda: frozen(catalog, [pin], path))


@pytest.mark.unit
def test_a_repository_request_takes_no_untagged_image_its_sources_do_not_name_there(tmp_path) -> None:
    catalog = catalog_of(layout(tmp_path))
    document = honest_lock(catalog, ["example.com/team/app"])
    document["requests"][0]["images"].append({**_image_of(catalog, TOOL.image_id), "names": []})
    line = refusal(lambda: frozen(catalog, ["example.com/team/app"], write_lock(tmp_path, document)))
    assert f"requests[0].images[2].names is empty, and no source names image {TOOL.image_id}" in line


# -------- where the lock may be


def _settings(tmp_path: Any, lockfile: str, mode: str = "frozen", **more: object) -> None:
    config = {"sources": [str(tmp_path / "layout"), str(tmp_path / "saved.tar")], "images": ["example.com/team/app:1"]}
    checked_settings({**config, "lockfile": lockfile, "lock_mode": mode, **more}, CONFIG_SCHEMA, str(tmp_path))


@pytest.mark.unit
@pytest.mark.parametrize("mode", ["frozen", "update"])
@pytest.mark.parametrize(
    ("lockfile", "says"),
    [
        ("results/images.tar", "is the output"),
        ("results/../results/images.tar", "is the output"),
        ("results/images.tar.sha256", "is the side file results/images.tar.sha256"),
        ("results/images.tar.images.txt", "is the side file results/images.tar.images.txt"),
        ("results/images.tar.provenance.json", "is the side file results/images.tar.provenance.json"),
        ("link-to-archive.lock", "is the output"),  # a symlink to it
        ("hardlink.lock", "is the output"),  # the same file by another name
        ("saved.tar", "is this source"),
        ("layout", "is this source"),
        ("layout/index.json", "lies inside this source"),
        ("layout/release.lock", "lies inside this source"),  # not there yet
        ("link-into-layout/release.lock", "lies inside this source"),
        ("build/release.lock", "lies inside build_dir build"),
        ("fifo.lock", "is not a regular file"),
    ],
)
def test_a_lock_path_that_is_the_output_a_side_file_or_a_source_is_refused(
    tmp_path, mode: str, lockfile: str, says: str
) -> None:
    layout(tmp_path)
    write_docker_archive(str(tmp_path / "saved.tar"), [(TOOL, ["example.com/team/tool:1"])])
    os.makedirs(tmp_path / "results")
    (tmp_path / "results" / "images.tar").write_bytes(b"an archive of an earlier run")
    os.symlink("results/images.tar", tmp_path / "link-to-archive.lock")
    os.link(tmp_path / "results" / "images.tar", tmp_path / "hardlink.lock")
    os.symlink("layout", tmp_path / "link-into-layout")
    os.mkfifo(tmp_path / "fifo.lock")
    line = refusal(lambda: _settings(tmp_path, lockfile, mode))
    assert f"config key lockfile: {lockfile} {says}" in line, line
    _settings(tmp_path, "release.lock", mode)  # beside the configuration: fine
    _settings(tmp_path, "results/release.lock", mode)  # beside the archive: fine


# -------- end to end


def error_lines(run: Run) -> list[str]:
    return [line for line in run.output.splitlines() if "tarexport: error" in line]


@pytest.mark.workflow
def test_frozen_refuses_a_name_the_lock_adds_and_writes_nothing(tmp_path) -> None:
    source = layout(tmp_path)
    document = _lock_with(catalog_of(source), "example.com/team/app:1", _add_name("example.com/team/app:2"))
    work = str(tmp_path / "work")
    os.makedirs(work)
    write_lock(tmp_path / "work", document)
    config = write_config(
        work, sources=[source], images=["example.com/team/app:1"], lockfile="release.lock", lock_mode="frozen"
    )
    run = snakemake(work, configfile=config, timeout=120)
    assert error_lines(run) == [
        "tarexport: error: example.com/team/app:1: lock file release.lock requests[0].images[0].names[1] adds"
        " example.com/team/app:2, which the request does not give; update the lock (lock_mode: update)"
    ], run.output[-2000:]
    assert run.returncode != 0 and not os.path.exists(os.path.join(work, "results"))


@pytest.mark.workflow
def test_a_fifo_at_the_lock_path_fails_fast_under_snakemake(tmp_path) -> None:
    """lock_mode update reads the lock it finds: a FIFO there hung the plan."""
    source = layout(tmp_path)
    work = str(tmp_path / "work")
    os.makedirs(work)
    os.mkfifo(os.path.join(work, "release.lock"))
    config = write_config(work, sources=[source], images=["example.com/team/app:1"], lockfile="release.lock")
    run = snakemake(work, configfile=config, timeout=60)
    assert error_lines(run) == [
        "tarexport: error: config key lockfile: release.lock is not a regular file (a directory, FIFO or device);"
        " name a file"
    ], run.output[-2000:]
    assert not os.path.exists(os.path.join(work, "results"))
