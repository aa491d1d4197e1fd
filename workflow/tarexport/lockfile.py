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
from .reference import Reference, parse_request, with_default_tag
from .sources.base import SourceIndex

LOCK_VERSION = 1


@dataclass(frozen=True)
class LockedImage:
    names: list[str]  # the tags the request exported it under, familiar form
    image_id: str
    manifest_digest: str  # "" where the source holds no manifest (a legacy docker-save archive)
    index_digest: str  # the multi-platform index kept with it (`platforms: all`), else ""


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
            index = next((plan.tag_indexes[t].digest for t in tags if t in plan.tag_indexes), "")
            image: dict[str, Any] = {"names": [t.familiar() for t in tags], "imageId": image_id}
            if entry.image.manifest_digest:
                image["manifestDigest"] = entry.image.manifest_digest
            if index:
                image["indexDigest"] = index
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
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


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
    requests = {
        entry["request"]: [
            LockedImage(image["names"], image["imageId"], image.get("manifestDigest", ""), image.get("indexDigest", ""))
            for image in entry["images"]
        ]
        for entry in document["requests"]
    }
    return Lock(shown, document["platform"], document["platforms"], requests)


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
            digest = (image.index_digest if all_platforms else "") or image.manifest_digest
            if digest:
                asked += [f"{with_default_tag(parse_request(name)).name}@{digest}" for name in image.names]  # type: ignore[union-attr]
    return list(dict.fromkeys(asked))


def resolve_locked(
    catalog: Catalog, requests: list[str], lock: Lock
) -> tuple[Resolution, dict[Reference, SourceIndex]]:
    """Each request as the lock resolved it: the locked images under the locked names, and
    the index locked with a tag (`platforms: all`), if a source holds it."""
    resolution = Resolution()
    indexes: dict[Reference, SourceIndex] = {}
    for text in requests:
        for image in _locked(lock, text):
            if image.image_id not in catalog.images:
                held = f" (manifest {image.manifest_digest})" if image.manifest_digest else ""
                raise TarexportError(
                    f"no such image: {text} is locked as image {image.image_id}{held} in {lock.path},"
                    " and no source holds it; add a source that does, or update the lock"
                )
            tags = [with_default_tag(parse_request(name)) for name in image.names]  # type: ignore[arg-type]
            if not tags:
                resolution.add(text, image.image_id, None)
            for tag in tags:
                resolution.add(text, image.image_id, tag)
                if image.index_digest in catalog.indexes:
                    indexes[tag] = catalog.indexes[image.index_digest]
    return resolution, indexes
