"""The lock file: what each requested name resolved to, so that a later build of the same
release exports the same images even after tags have moved.

`update` writes it from the plan (a rule copies its bytes, decided with the plan, to
`lockfile`: rewritten only when they change). `frozen` reads it: each request resolves to
the images it names, found by image ID in whichever source holds them, under the names
locked; registries are asked for the locked manifest digests, never for tags.

A lock is untrusted input (a release branch's file, a pull request's change to it). It is
read as a source's file is (a regular file, opened without blocking, of bounded size), its
errors name key paths and never quote it, every field the export relies on is checked
against the bytes the sources hold, and a request exports the names it gives by itself,
never one the lock adds.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

import jsonschema

from . import __version__
from .digests import sha256_digest
from .errors import TarexportError
from .plan import Catalog, Plan, Resolution
from .recipes import document_bytes
from .reference import ImageIDRequest, Reference, parse_request, with_default_tag
from .sources.base import SourceImage, SourceIndex
from .sources.containers import DirectoryContainer
from .sources.metadata import diff_ids_of

LOCK_VERSION = 1

# A lock of 300 images of 30 layers each is 2.1 MB (7.3 KB an image, measured): 8 MiB holds
# four times that. It also bounds what parsing a hostile lock costs: JSON of empty lists or
# objects takes 26 times its size in Python objects (measured at the cap: 210 MB, 3 s).
MAX_LOCK_BYTES = 8 * 1024 * 1024
# a key the document chose (an indexDigests name) is shown in a key path only when it is short and plain
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:/@-]{1,64}")
_HEX_PREFIX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class LockedImage:
    where: str  # its key path in the lock, for messages: requests[0].images[1]
    names: list[Reference]  # the tags the request exported it under
    image_id: str
    manifest_digest: str  # "" where the source holds no manifest (a legacy docker-save archive)
    index_digests: dict[Reference, str]  # tag -> the multi-platform index kept for it (`platforms: all`)
    platform: str  # as its config states it
    diff_ids: list[str]  # its config's rootfs.diff_ids, in order
    blob_digests: list[str]  # its layers as the source holds them ("" where not recorded)


@dataclass(frozen=True)
class Lock:
    path: str  # as configured, for messages
    platform: str
    platforms: str
    requests: dict[str, list[LockedImage]]
    where: dict[str, str] = field(default_factory=dict)  # request -> its key path in the lock


def platform_of(config: bytes) -> str:
    """os/architecture[/variant] as the image's config states them."""
    decoded = json.loads(config)
    parts = [str(decoded.get(key) or "") for key in ("os", "architecture", "variant")]
    return "/".join(parts[:2] + parts[2:3] * bool(parts[2]))


def lock_document(plan: Plan, platform: str, platforms: str) -> bytes:
    """The lock's bytes: requests in order, each with the images it gave."""
    planned = {p.image.image_id: p for p in plan.images}
    requests = []
    for text, given in plan.by_request.items():
        images = []
        for image_id, tags in given.items():
            entry = planned[image_id]
            indexes = {t.familiar(): plan.tag_indexes[t].digest for t in tags if t in plan.tag_indexes}
            image: dict[str, Any] = {"names": [t.familiar() for t in tags], "imageId": image_id}
            if entry.image.manifest_digest:
                image["manifestDigest"] = entry.image.manifest_digest
            if indexes:
                image["indexDigests"] = indexes
            image["platform"] = platform_of(entry.image.config)
            image["layers"] = [
                {"diffId": layer.diff_id, **({"digest": layer.blob.digest} if layer.blob.digest else {})}
                for layer in entry.image.layers
            ]
            image["source"] = entry.image.source
            images.append(image)
        requests.append({"request": text, "images": images})
    document = {
        "lockVersion": LOCK_VERSION,
        "tarexport": __version__,
        "platform": platform,
        "platforms": platforms,
        "requests": requests,
    }
    return document_bytes(document)


def read_lock(path: str, shown: str, schema_path: str) -> Lock:
    """The lock at `path` (`shown`: as configured), validated against its schema."""
    document = _decoded(lock_bytes(path, shown), shown)
    with open(schema_path, encoding="utf-8") as handle:
        schema = json.load(handle)
    # the first errors only: a hostile document may hold millions, each formatted by jsonschema
    errors = itertools.islice(jsonschema.Draft202012Validator(schema).iter_errors(document), 100)
    failure = jsonschema.exceptions.best_match(errors)
    if failure is not None:
        raise TarexportError(
            f"lock file {shown} is not a tarexport lock"
            f" ({_key_path(failure.absolute_path)}: {_schema_message(failure)})"
        )
    requests: dict[str, list[LockedImage]] = {}
    where: dict[str, str] = {}
    for number, entry in enumerate(document["requests"]):
        at = f"requests[{number}]"
        if entry["request"] in requests:
            raise TarexportError(
                f"lock file {shown} lists one request twice ({where[entry['request']]} and {at});"
                " write it again with lock_mode: update"
            )
        where[entry["request"]] = at
        requests[entry["request"]] = [
            _locked_image(image, f"{at}.images[{index}]", shown) for index, image in enumerate(entry["images"])
        ]
    return Lock(shown, document["platform"], document["platforms"], requests, where)


def lock_bytes(path: str, shown: str) -> bytes:
    """The file's bytes, read as a source's file is (DirectoryContainer.open): opened without
    blocking, so that a FIFO cannot hang the plan, a regular file only (not a device that
    never ends), and no more than MAX_LOCK_BYTES. A symlink is followed: its target is what
    the configuration's checks compared with the output and the sources."""
    real = os.path.realpath(path)
    if not os.path.lexists(real):
        raise TarexportError(f"lock file {shown} does not exist; write it with lock_mode: update (`snakemake lock`)")
    folder, name = os.path.split(real)
    try:
        if not name or os.path.isdir(real):
            raise TarexportError("is a directory")
        stream, size = DirectoryContainer(folder, shown).open(name)
    except TarexportError as error:
        raise TarexportError(
            f"lock file {shown} cannot be read ({error.message}); lockfile must name a regular file"
        ) from None
    with stream:
        data = stream.read(MAX_LOCK_BYTES + 1) if size <= MAX_LOCK_BYTES else b""
    if size > MAX_LOCK_BYTES or len(data) > MAX_LOCK_BYTES:
        raise TarexportError(
            f"lock file {shown} is over {MAX_LOCK_BYTES >> 20} MiB, far more than a lock of thousands of images"
            " takes; write it again with lock_mode: update"
        )
    return data


def lock_holds(path: str, expected: bytes) -> bool:
    """Does the file at `path` hold exactly `expected` (lock_mode update: is the lock current)?
    Read as read_lock reads it, and no further than one byte past `expected`; anything that
    cannot be read so is not current (the rule then writes the lock)."""
    folder, name = os.path.split(os.path.realpath(path))
    try:
        stream, size = DirectoryContainer(folder, path).open(name)
    except (TarexportError, OSError):
        return False
    with stream:
        return size == len(expected) and stream.read(len(expected) + 1) == expected


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object naming a key twice: JSON readers keep one or the other, so a reviewer of the
    lock may read another value than the export does."""
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("an object holds a key twice")
    return document


def _decoded(data: bytes, shown: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_refuse_repeated_keys)
    except UnicodeDecodeError as error:
        why = f"not UTF-8 at byte {error.start}"
    except RecursionError:
        why = "nested too deeply"
    except ValueError as error:  # json's messages give a position, never the document's text
        why = str(error)
    raise TarexportError(f"lock file {shown} cannot be read ({why}); write it again with lock_mode: update")


def _key_path(parts: Any) -> str:
    """Where in the lock, as config errors name keys: requests[0].images[1].imageId."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        key = part if _PLAIN_KEY.fullmatch(part) else "(a key)"
        path += f".{key}" if path else key
    return path or "(top level)"


def _schema_message(error: jsonschema.ValidationError) -> str:
    """What is wrong, in the schema's words: jsonschema's own messages quote the value
    (a string of megabytes, a whole object)."""
    rule, expected = error.validator, error.validator_value
    if rule == "required":
        return str(error.message)  # `'<key>' is a required property`: a key the schema names
    if rule == "additionalProperties":
        return "holds a key that a lock does not have"
    if rule == "type":
        return f"must be of type {expected}"
    if rule in ("const", "enum"):
        allowed = [expected] if rule == "const" else expected
        return "must be " + " or ".join(json.dumps(value) for value in allowed)
    if rule == "pattern":
        return "is not a sha256 digest" if "sha256" in expected else f"does not match {expected}"
    if rule in ("minLength", "maxLength"):
        return f"must be {'at least' if rule == 'minLength' else 'at most'} {expected} characters long"
    if rule in ("minItems", "maxItems"):
        return f"must hold {'at least' if rule == 'minItems' else 'at most'} {expected} items"
    return f"breaks the schema's {rule} rule"


def _locked_image(image: dict[str, Any], where: str, shown: str) -> LockedImage:
    def tag(name: str, field: str) -> Reference:
        try:
            ref = parse_request(name)
        except TarexportError:
            ref = None
        if not isinstance(ref, Reference) or ref.digest:
            raise TarexportError(
                f"lock file {shown}: {field} is not an image name (repo:tag); write it again with lock_mode: update"
            )
        return with_default_tag(ref)

    names = [tag(name, f"{where}.names[{index}]") for index, name in enumerate(image["names"])]
    indexes = {tag(name, f"{where}.indexDigests"): digest for name, digest in image.get("indexDigests", {}).items()}
    diff_ids = [layer["diffId"] for layer in image["layers"]]
    blobs = [layer.get("digest", "") for layer in image["layers"]]
    return LockedImage(
        where, names, image["imageId"], image.get("manifestDigest", ""), indexes, image["platform"], diff_ids, blobs
    )


def check_settings(lock: Lock, platform: str, platforms: str) -> None:
    if (lock.platform, lock.platforms) != (platform, platforms):
        raise TarexportError(
            f"lock file {lock.path} was written for platform {lock.platform} (platforms: {lock.platforms}),"
            f" the configuration asks for {platform} (platforms: {platforms}); write it again with lock_mode: update"
        )


def _locked(lock: Lock, request: str) -> list[LockedImage]:
    images = lock.requests.get(request)
    if images is None:
        raise TarexportError(
            f"{request} is not in the lock file {lock.path} (lock_mode: frozen); add it with lock_mode: update"
            " (`snakemake lock`), or remove it from images"
        )
    _check_names(lock, request, images)
    return images


def _refuse(lock: Lock, request: str, field: str, why: str) -> NoReturn:
    """A lock that contradicts the request or the sources' bytes: one line naming both and the field."""
    raise TarexportError(f"{request}: lock file {lock.path} {field} {why}; update the lock (lock_mode: update)")


def _check_names(lock: Lock, text: str, images: list[LockedImage]) -> None:
    """A request exports the names it gives by itself (plan._resolve_one), and as many images:
    a name the lock adds would be a tag nobody asked for (and a registry asked for it)."""
    request = parse_request(text)
    repository = ""  # a whole repository: its images under any of its tags
    given: list[Reference] = []  # else one image, under exactly these names
    if isinstance(request, Reference) and request.familiar_name != "sha256":
        if request.digest:
            given = [Reference(request.name, request.tag)] if request.tag else []  # a pin keeps its tag
        elif request.tag:
            given = [with_default_tag(request)]
        else:
            repository = request.name
    if not repository and len(images) != 1:
        _refuse(
            lock,
            text,
            f"{lock.where.get(text, 'requests')}.images",
            f"lists {len(images)} images; the request names one",
        )
    for image in images:
        for number, name in enumerate(image.names):
            if (name.name != repository) if repository else (name not in given):
                field = f"{image.where}.names[{number}]"
                _refuse(lock, text, field, f"adds {name.familiar()}, which the request does not give")
        if not repository and image.names != given:
            _refuse(lock, text, f"{image.where}.names", f"must be {[name.familiar() for name in given]}")
        if not image.index_digests.keys() <= set(image.names):  # a set: an image may have 30,000 names
            _refuse(lock, text, f"{image.where}.indexDigests", "names a tag the entry does not export")
        # by ID: that image; by a short ID (`sha256:<hex>`): an image it is the prefix of
        wanted = request.image_id if isinstance(request, ImageIDRequest) else ""
        if isinstance(request, Reference) and request.familiar_name == "sha256":
            wanted = "sha256:" + text.removeprefix("sha256:")
        if not image.image_id.startswith(wanted):
            _refuse(lock, text, f"{image.where}.imageId", "is not the image the request names")


def registry_requests(lock: Lock, requests: list[str], all_platforms: bool) -> list[str]:
    """What registries are asked for: each locked name at its locked digest (a tag may have
    moved since), and requests that name a digest themselves."""
    asked: list[str] = []
    for text in requests:
        request = parse_request(text)
        if isinstance(request, Reference) and request.digest:
            asked.append(text)
        for image in _locked(lock, text):
            for name in image.names:
                digest = (image.index_digests.get(name, "") if all_platforms else "") or image.manifest_digest
                if digest:
                    asked.append(f"{name.name}@{digest}")
    return list(dict.fromkeys(asked))


def resolve_locked(
    catalog: Catalog, requests: list[str], lock: Lock, kept_blobs: bool
) -> tuple[Resolution, dict[Reference, SourceIndex]]:
    """Each request as the lock resolved it: the locked images under the locked names, and
    the index locked with each tag (`platforms: all`). `kept_blobs` (`layers: keep`): the
    source's blobs go into the archive, so they must be the locked ones too."""
    resolution = Resolution()
    indexes: dict[Reference, SourceIndex] = {}
    manifests: dict[str, set[str]] = {}  # manifest or index digest -> the images the sources hold under it
    for image_id, held in catalog.images.items():
        for digest in held.manifest_digests:
            manifests.setdefault(digest, set()).add(image_id)
    for text in requests:
        for image in _locked(lock, text):
            found = catalog.images.get(image.image_id)
            if found is None:
                held = f" (manifest {image.manifest_digest})" if image.manifest_digest else ""
                raise TarexportError(
                    f"no such image: {text} is locked as image {image.image_id}{held} in {lock.path},"
                    " and no source holds it; add a source that does, or update the lock"
                )
            _check_image(lock, text, image, found, manifests)
            if kept_blobs and [layer.blob.digest for layer in found.layers] != image.blob_digests:
                raise TarexportError(
                    f"{text}: the first source holding image {image.image_id} ({found.source}) has other layer"
                    f" blobs than {lock.path} locks, and layers: keep exports them as they are; list the locked"
                    " source first, or update the lock"
                )
            if not image.names:
                resolution.add(text, image.image_id, None)
            for tag in image.names:
                resolution.add(text, image.image_id, tag)
                index = image.index_digests.get(tag)
                if index is None:
                    continue
                if index not in catalog.indexes:
                    raise TarexportError(
                        f"{tag.familiar()} is locked as index {index} in {lock.path}, and no source holds it;"
                        " add a source that does, or update the lock"
                    )
                if image.image_id not in {image_id for _, image_id in catalog.indexes[index].platforms}:
                    field = f"{image.where}.indexDigests"
                    _refuse(lock, text, field, f"names index {index}, which does not hold the image")
                indexes[tag] = catalog.indexes[index]
    return resolution, indexes


def _check_image(lock: Lock, text: str, image: LockedImage, found: SourceImage, manifests: dict[str, set[str]]) -> None:
    """The locked fields against the bytes exported: the config found (its digest, its diff_ids,
    its platform), the manifests the sources hold, and what the request itself names."""
    where, image_id = image.where, image.image_id
    if sha256_digest(found.config) != image_id:
        raise TarexportError(
            f"the config held as image {image_id} has another digest; the source lies: remove it",
            source=found.source,
        )
    if image.diff_ids != diff_ids_of(found.config, found.source, "config"):
        _refuse(lock, text, f"{where}.layers", f"are not the diff_ids of image {image_id}'s config (rootfs, in order)")
    if image.platform != platform_of(found.config):
        _refuse(lock, text, f"{where}.platform", f"is not the platform image {image_id}'s config states")
    holders = manifests.get(image.manifest_digest, set())
    if holders and image_id not in holders:
        # a manifest names its config: held by a source, it is another image's
        _refuse(lock, text, f"{where}.manifestDigest", f"is the manifest of image {min(holders)}, not of {image_id}")
    request = parse_request(text)
    if not isinstance(request, Reference) or request.familiar_name == "sha256":
        return
    if request.digest:
        # what the request names itself must be proved by a source: its manifest, or the config a pin names
        pinned_config = bool(request.tag) and request.digest == image_id
        if request.digest not in found.manifest_digests and not pinned_config:
            _refuse(lock, text, f"{where}.imageId", f"is not an image the sources hold under {request.digest}")
    elif not request.tag and not image.names:
        # an untagged image of a repository: the sources name it there, or the request is its ID's prefix
        named = request.name in found.names()
        if not named and not (_HEX_PREFIX.fullmatch(text) and image_id.startswith("sha256:" + text)):
            _refuse(lock, text, f"{where}.names", f"is empty, and no source names image {image_id} in the repository")
