"""Media types, a blob's path from its digest, and the table from source kind to container:
the small modules below sources and formats."""

from __future__ import annotations

import pytest

from tarexport.descriptors import blob_member, digest_of_blob_member
from tarexport.mediatypes import (
    MANIFEST_ACCEPT,
    MediaType,
    is_config,
    is_foreign_layer,
    is_index,
    is_layer,
    is_manifest,
    layer_compression,
    oci_layer,
)
from tarexport.sources.blobs import SourceKind
from tarexport.sources.kinds import container_class, describe_location

pytestmark = pytest.mark.unit


def test_every_type_answers_exactly_one_question() -> None:
    for media_type in MediaType:
        answers = [is_index(media_type), is_manifest(media_type), is_config(media_type), is_layer(media_type)]
        assert answers.count(True) == 1, media_type
        assert is_foreign_layer(media_type) == ("nondistributable" in media_type or "foreign" in media_type)


@pytest.mark.parametrize("value", [None, 3, ["application/vnd.oci.image.index.v1+json"], {"a": 1}, ""])
def test_what_a_json_document_may_hold_instead_is_no_type(value: object) -> None:
    """A list or an object where a type should be must not reach a set lookup (TypeError)."""
    assert not any(f(value) for f in (is_index, is_manifest, is_config, is_layer, is_foreign_layer))
    assert layer_compression(value) == ""


def test_layer_types_round_trip_through_what_tarexport_writes() -> None:
    for media_type in MediaType:
        if is_layer(media_type) and media_type.startswith("application/vnd.oci"):
            assert oci_layer(layer_compression(media_type), is_foreign_layer(media_type)) == media_type
    assert oci_layer("gzip") == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip") == "gzip"


def test_a_registry_is_asked_for_every_index_and_manifest_type() -> None:
    asked = MANIFEST_ACCEPT.split(", ")
    assert set(asked) == {t for t in MediaType if is_index(t) or is_manifest(t)}
    assert asked[0] == MediaType.OCI_INDEX  # OCI first, as before


def test_a_digest_becomes_a_path_and_back() -> None:
    digest = "sha256:" + "ab" * 32
    assert blob_member(digest) == "blobs/sha256/" + "ab" * 32
    assert digest_of_blob_member(blob_member(digest)) == digest
    for other in ["blobs/sha256/" + "AB" * 32, "blobs/sha256/abc", "x/blobs/sha256/" + "ab" * 32, "config.json"]:
        assert digest_of_blob_member(other) == ""
    assert digest_of_blob_member("blobs/sha256/" + "ab" * 32 + "\n") == ""


def test_each_kind_opens_through_its_own_container() -> None:
    names = {kind: container_class(kind).__name__ for kind in SourceKind}
    assert names == {
        SourceKind.OCI_LAYOUT: "DirectoryContainer",
        SourceKind.DOCKER_ARCHIVE: "TarContainer",
        SourceKind.REGISTRY: "RegistryContainer",
    }
    assert [kind for kind in SourceKind if kind.downloads] == [SourceKind.REGISTRY]


def test_a_registry_location_is_described_by_its_url_never_its_settings() -> None:
    from tarexport.sources.registry import RegistryContainer, RegistrySettings

    settings = RegistrySettings("https://registry.example:5000", username_env="SECRET_USER_VAR")
    container = RegistryContainer(settings, "team/app", "label")
    assert describe_location(SourceKind.REGISTRY, container.path) == "https://registry.example:5000/team/app"
    assert describe_location(SourceKind.OCI_LAYOUT, "/some/layout") == "/some/layout"
