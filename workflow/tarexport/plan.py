"""The plan: which images, in which order, under which names, with which layers.

Name resolution follows `docker save NAME...` (moby tarexport.parseNames) over the
union of all sources instead of a daemon's image and reference stores.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
from dataclasses import dataclass, field

from .dockerconfig import V1Image, decode_v1_image
from .errors import TarexportError
from .reference import ImageIDRequest, Reference, parse_request, with_default_tag
from .sources.base import LayerRef, SourceImage, SourceIndex
from .sources.loading import SourceSpec, load_images


@dataclass
class _Lookups:
    """The catalog indexed the ways requests ask it, so that each request costs what it
    names, not a walk over every image and tag (thousands of requests, tens of thousands
    of tags). Lists keep the order a walk over the catalog would give."""

    by_manifest: dict[str, list[str]] = field(default_factory=dict)  # manifest or index digest -> image IDs
    tags_by_name: dict[str, list[tuple[Reference, str]]] = field(default_factory=dict)  # repository -> (tag, ID)
    digest_refs_by_name: dict[str, list[tuple[Reference, str]]] = field(default_factory=dict)  # -> (name@digest, ID)
    image_names: dict[str, set[str]] = field(default_factory=dict)  # image ID -> repositories it is known under
    tag_store_names: dict[str, set[str]] = field(default_factory=dict)  # image ID -> repositories of tags naming it
    hexes: list[str] = field(default_factory=list)  # image IDs without `sha256:`, sorted

    @classmethod
    def of(cls, catalog: Catalog) -> _Lookups:
        lookups = cls(hexes=sorted(image_id[len("sha256:") :] for image_id in catalog.images))
        for image_id, image in catalog.images.items():
            for digest in image.manifest_digests:
                lookups.by_manifest.setdefault(digest, []).append(image_id)
            for ref in image.digest_refs:
                lookups.digest_refs_by_name.setdefault(ref.name, []).append((ref, image_id))
            lookups.image_names[image_id] = image.names()
        for tag, image_id in catalog.tags.items():
            lookups.tags_by_name.setdefault(tag.name, []).append((tag, image_id))
            lookups.tag_store_names.setdefault(image_id, set()).add(tag.name)
        return lookups


@dataclass
class Catalog:
    """Everything the sources hold: images by ID, and the tag store."""

    images: dict[str, SourceImage] = field(default_factory=dict)  # first source wins
    tags: dict[Reference, str] = field(default_factory=dict)  # tag -> image ID
    tag_sources: dict[Reference, str] = field(default_factory=dict)
    tag_indexes: dict[Reference, SourceIndex] = field(default_factory=dict)  # with `platforms: all`
    indexes: dict[str, SourceIndex] = field(default_factory=dict)  # by digest, with `platforms: all`
    _lookups: _Lookups | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def lookups(self) -> _Lookups:
        """Built when first asked, once every source is read (add() starts them anew)."""
        if self._lookups is None:
            self._lookups = _Lookups.of(self)
        return self._lookups

    def add(self, image: SourceImage) -> None:
        self._lookups = None
        known = self.images.setdefault(image.image_id, image)
        if known is not image:
            known.manifest_digests |= image.manifest_digests
            known.manifest_digest = known.manifest_digest or image.manifest_digest
            for ref in image.digest_refs:
                known.add_digest_ref(ref)
        for tag in image.tags:
            other = self.tags.get(tag)
            if other is not None and other != image.image_id:
                raise TarexportError(
                    f"tag {tag.familiar()} names {other} in {self.tag_sources[tag]} "
                    f"and {image.image_id} in {image.source}; remove one of the sources or retag",
                )
            self.tags[tag] = image.image_id
            self.tag_sources.setdefault(tag, image.source)

    def search(self, term: str, original: str) -> str:
        """Image ID by full ID or unique hex prefix (with or without `sha256:`)."""
        prefix = term.removeprefix("sha256:")  # case-sensitive, as Docker's digest set
        if not prefix or any(c not in "0123456789abcdef" for c in prefix):
            raise TarexportError(f"no such image: {original} (not found in any source)")
        hexes = self.lookups.hexes  # sorted: the IDs with this prefix are one run of them
        first, end = bisect_left(hexes, prefix), bisect_left(hexes, prefix + "\U0010ffff")
        found = ["sha256:" + h for h in hexes[first:end]]
        if not found:
            raise TarexportError(f"no such image: {original} (not found in any source)")
        if len(found) > 1:
            raise TarexportError(f"image ID prefix {original!r} is ambiguous: it matches {len(found)} images")
        return found[0]


def build_catalog(
    specs: list[SourceSpec],
    platform: str,
    all_platforms: bool = False,
    requests: list[str] | None = None,
    cache_dir: str = "",
    attestations: bool = True,
) -> Catalog:
    """Everything the sources hold; registries are asked only for the requested names.
    `attestations`: read a kept index's attestation manifests (else they are not opened)."""
    catalog = Catalog()
    wanted = [r for r in (parse_request(text) for text in requests or []) if isinstance(r, Reference)]
    for spec in _with_registry_urls(specs, wanted):
        contents = load_images(spec, platform, all_platforms, wanted, cache_dir, attestations)
        for image in contents.images:
            catalog.add(image)
        for index in contents.indexes:
            catalog.indexes.setdefault(index.digest, index)
            for name in index.names:
                if name.tag:
                    catalog.tag_indexes.setdefault(Reference(name.name, name.tag), index)
    return catalog


def _with_registry_urls(specs: list[SourceSpec], wanted: list[Reference]) -> list[SourceSpec]:
    """A registry source without url serves every host that no other registry source names."""
    named = {spec.registry.host for spec in specs if spec.registry is not None and spec.registry.url}
    out = []
    for spec in specs:
        if spec.registry is None or spec.registry.url:
            out.append(spec)
            continue
        hosts = sorted({ref.name.split("/", 1)[0] for ref in wanted} - named)
        for host in hosts:
            url = "https://" + ("registry-1.docker.io" if host == "docker.io" else host)
            registry = dataclasses.replace(spec.registry, url=url, name_host=host)
            out.append(dataclasses.replace(spec, path=url, registry=registry))
    return out


@dataclass
class PlannedImage:
    image: SourceImage
    tags: list[Reference]
    diff_ids: list[str]
    config: V1Image  # decoded as Docker decodes it (what the formats write from)

    @property
    def display(self) -> str:
        """How messages name the image: its first tag, else its short ID."""
        return self.tags[0].familiar() if self.tags else self.image.image_id[len("sha256:") :][:12]


@dataclass
class Plan:
    images: list[PlannedImage]  # what manifest.json lists: the requested images
    platform_images: list[PlannedImage]  # the other platforms of kept indexes (format oci)
    tag_indexes: dict[Reference, SourceIndex]  # requested tags that name a kept index
    layers: dict[str, LayerRef]  # diff_id -> where to read it (first image in request order)
    layer_users: dict[str, str]  # diff_id -> the images using it, for messages
    by_request: dict[str, dict[str, list[Reference]]] = field(default_factory=dict)  # what each request gave


class Resolution:
    """Images in first-request order, each with its tags (docker save's parseNames), and
    what each request gave (the lock file records it per request)."""

    def __init__(self) -> None:
        self.tags: dict[str, dict[Reference, None]] = {}  # insertion-ordered: IDs, and tags per ID
        self.tagged_as: dict[Reference, str] = {}
        self.by_request: dict[str, dict[str, list[Reference]]] = {}  # request -> image ID -> its tags
        # the same as sets: a request may give one image tens of thousands of tags
        self._given: dict[tuple[str, str], set[Reference]] = {}

    def add(self, request: str, image_id: str, tag: Reference | None) -> None:
        known = self.tags.setdefault(image_id, {})
        given = self.by_request.setdefault(request, {}).setdefault(image_id, [])
        given_set = self._given.setdefault((request, image_id), set())
        if tag is None:
            return
        earlier = self.tagged_as.setdefault(tag, image_id)
        if earlier != image_id:  # only a pin can give a tag to an image its source does not
            raise TarexportError(
                f"{tag.familiar()} is asked for as two images: {earlier[:19]} and {image_id[:19]}"
                " (a pinned name and the tag as the sources hold it now?)"
            )
        known.setdefault(tag)
        if tag not in given_set:
            given_set.add(tag)
            given.append(tag)

    def images(self) -> list[tuple[str, list[Reference]]]:
        return [(image_id, list(image_tags)) for image_id, image_tags in self.tags.items()]


def resolve(catalog: Catalog, requests: list[str]) -> list[tuple[str, list[Reference]]]:
    """docker save's parseNames: image IDs in first-request order, each with its tags."""
    return resolve_requests(catalog, requests).images()


def resolve_requests(catalog: Catalog, requests: list[str]) -> Resolution:
    resolution = Resolution()
    for text in requests:
        _resolve_one(catalog, text, resolution)
    return resolution


def _resolve_one(catalog: Catalog, text: str, resolution: Resolution) -> None:
    def add(image_id: str, tag: Reference | None) -> None:
        resolution.add(text, image_id, tag)

    request = parse_request(text)
    if isinstance(request, ImageIDRequest):
        if request.image_id not in catalog.images:
            raise TarexportError(f"no such image: {text} (not found in any source)")
        add(request.image_id, None)
        return
    if request.familiar_name == "sha256":
        add(catalog.search(text, text), None)
        return
    if request.digest:
        lookups = catalog.lookups
        # Docker needs the exact name@digest association; ours: a name the image carries.
        found = lookups.by_manifest.get(request.digest, [])
        if not found and request.tag and request.digest in catalog.images:
            # pinned: a docker-save source holds no manifest, so its config's digest pins
            found = [request.digest]
        named = [i for i in found if request.name in lookups.image_names[i]]
        if not named and request.tag:  # a pin: a name any source gives the image will do
            named = [i for i in found if request.name in lookups.tag_store_names.get(i, ())]
        if not named:
            why = "it is not named that way" if found else "no source holds that manifest"
            if request.tag and not found:
                now = catalog.tags.get(Reference(request.name, request.tag))
                why += f"; {request.familiar_name}:{request.tag} is {now} there now" if now else ""
            raise TarexportError(f"no such image: {text} ({why})")
        # `repo:tag@digest` (a pinned release name) keeps its tag, which docker save drops
        add(named[0], Reference(request.name, request.tag) if request.tag else None)
        return
    if not request.tag:
        # Docker walks the repository's references sorted as strings: tags, then digests.
        lookups = catalog.lookups
        matches: list[tuple[str, str, Reference | None]] = [
            (str(t), i, t) for t, i in lookups.tags_by_name.get(request.name, [])
        ]
        matches += [(str(r), i, None) for r, i in lookups.digest_refs_by_name.get(request.name, [])]
        for _, image_id, tag in sorted(matches, key=lambda m: m[0]):
            add(image_id, tag)
        if not matches:
            add(catalog.search(text, text), None)
        return
    tagged = with_default_tag(request)
    image_id = catalog.tags.get(tagged)
    if image_id is None:
        raise TarexportError(f"no such image: {tagged.familiar()} (not found in any source)")
    add(image_id, tagged)


def make_plan(catalog: Catalog, requests: list[str]) -> Plan:
    return plan_resolution(catalog, resolve_requests(catalog, requests), catalog.tag_indexes)


def plan_resolution(catalog: Catalog, resolution: Resolution, indexes: dict[Reference, SourceIndex]) -> Plan:
    """The plan for resolved names; `indexes`: the multi-platform index each tag names."""
    planned = [_plan_image(catalog, image_id, tags) for image_id, tags in resolution.images()]
    # each index once (many tags may name one): its platforms' image IDs
    kept = {id(index): index for index in indexes.values()}
    platform_ids = {key: {i for _, i in index.platforms} for key, index in kept.items()}
    # a tag's index, if it holds the image planned (a pinned tag may name another one now)
    tag_indexes = {
        tag: indexes[tag]
        for p in planned
        for tag in p.tags
        if tag in indexes and p.image.image_id in platform_ids[id(indexes[tag])]
    }
    wanted = {p.image.image_id for p in planned}
    platform_images = []
    for index in {id(index): index for index in tag_indexes.values()}.values():
        for _, image_id in index.platforms:
            if image_id not in wanted:
                wanted.add(image_id)
                platform_images.append(_plan_image(catalog, image_id, []))
    layers: dict[str, LayerRef] = {}
    users: dict[str, dict[str, None]] = {}  # insertion-ordered sets: thousands of images may share a layer
    for entry in planned + platform_images:
        for layer in entry.image.layers:
            layers.setdefault(layer.diff_id, layer)
            users.setdefault(layer.diff_id, {}).setdefault(entry.display)
    layer_users = {diff_id: " and ".join(names) for diff_id, names in users.items()}
    return Plan(planned, platform_images, tag_indexes, layers, layer_users, resolution.by_request)


def _plan_image(catalog: Catalog, image_id: str, tags: list[Reference]) -> PlannedImage:
    image = catalog.images[image_id]
    label = tags[0].familiar() if tags else image_id
    config = decode_v1_image(image.config, f"image {label}, source {image.source}: config")
    diff_ids = [layer.diff_id for layer in image.layers]
    if not diff_ids:
        raise TarexportError("has no layers; docker save cannot export it either", image=label, source=image.source)
    return PlannedImage(image, tags, diff_ids, config)
