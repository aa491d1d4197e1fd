"""The lock file: what each requested name resolved to, so that a later build of the same
release exports the same images even after tags have moved.

`update` writes it from the plan (a rule copies its bytes, decided with the plan, to
`lockfile`: rewritten only when they change). `frozen` reads it: each request resolves to
the images it names, found by image ID in whichever source holds them, under the names
locked; registries are asked for the locked manifest digests, never for tags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from . import __version__
from .errors import TarexportError
from .plan import Catalog, Plan, Resolution
from .recipes import document_bytes
from .reference import Reference, parse_request, with_default_tag
from .sources.base import SourceIndex

LOCK_VERSION = 1


@dataclass(frozen=True)
class LockedImage:
    names: list[Reference]  # the tags the request exported it under
    image_id: str
    manifest_digest: str  # "" where the source holds no manifest (a legacy docker-save archive)
    index_digests: dict[Reference, str]  # tag -> the multi-platform index kept for it (`platforms: all`)
    blob_digests: list[str]  # its layers as the source holds them ("" where not recorded)


@dataclass(frozen=True)
class Lock:
    path: str  # as configured, for messages
    platform: str
    platforms: str
    requests: dict[str, list[LockedImage]]


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
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        raise TarexportError(
            f"lock file {shown} does not exist; write it with lock_mode: update (`snakemake lock`)"
        ) from None
    except (OSError, ValueError) as error:
        raise TarexportError(
            f"lock file {shown} cannot be read ({error}); write it again with lock_mode: update"
        ) from None
    with open(schema_path, encoding="utf-8") as handle:
        schema = json.load(handle)
    failure = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if failure is not None:
        where = "/".join(str(part) for part in failure.absolute_path) or "(top level)"
        raise TarexportError(f"lock file {shown} is not a tarexport lock ({where}: {failure.message})")
    requests: dict[str, list[LockedImage]] = {}
    for entry in document["requests"]:
        if entry["request"] in requests:
            twice = entry["request"]
            raise TarexportError(f"lock file {shown} lists {twice} twice; write it again with lock_mode: update")
        requests[entry["request"]] = [_locked_image(image, shown) for image in entry["images"]]
    return Lock(shown, document["platform"], document["platforms"], requests)


def _locked_image(image: dict[str, Any], shown: str) -> LockedImage:
    def tag(name: str) -> Reference:
        try:
            ref = parse_request(name)
        except TarexportError as error:
            ref, why = None, str(error)
        else:
            why = "not repo:tag"
        if not isinstance(ref, Reference) or ref.digest:
            raise TarexportError(f"lock file {shown} names an image {name!r} ({why}); write it again")
        return with_default_tag(ref)

    names = [tag(name) for name in image["names"]]
    indexes = {tag(name): digest for name, digest in image.get("indexDigests", {}).items()}
    blobs = [layer.get("digest", "") for layer in image["layers"]]
    return LockedImage(names, image["imageId"], image.get("manifestDigest", ""), indexes, blobs)


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
    return images


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
    for text in requests:
        for image in _locked(lock, text):
            found = catalog.images.get(image.image_id)
            if found is None:
                held = f" (manifest {image.manifest_digest})" if image.manifest_digest else ""
                raise TarexportError(
                    f"no such image: {text} is locked as image {image.image_id}{held} in {lock.path},"
                    " and no source holds it; add a source that does, or update the lock"
                )
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
                indexes[tag] = catalog.indexes[index]
    return resolution, indexes
