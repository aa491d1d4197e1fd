"""Reference normalization and `docker save NAME...` resolution over sources."""

from __future__ import annotations

import pytest

from tarexport.errors import TarexportError
from tarexport.plan import build_catalog, make_plan, resolve
from tarexport.reference import ImageIDRequest, Reference, parse_normalized, parse_request
from tarexport.sources.loading import SourceSpec
from tests.imagefactory import LayoutEntry, make_image, write_docker_archive, write_oci_layout

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "name", "tag", "familiar"),
    [
        ("ubuntu", "docker.io/library/ubuntu", "", "ubuntu"),
        ("ubuntu:22.04", "docker.io/library/ubuntu", "22.04", "ubuntu:22.04"),
        ("docker.io/library/ubuntu:1", "docker.io/library/ubuntu", "1", "ubuntu:1"),
        ("index.docker.io/library/ubuntu:1", "docker.io/library/ubuntu", "1", "ubuntu:1"),
        ("acc/app:1", "docker.io/acc/app", "1", "acc/app:1"),
        ("docker.io/library/a/b:1", "docker.io/library/a/b", "1", "library/a/b:1"),
        ("localhost/app:1", "localhost/app", "1", "localhost/app:1"),
        ("localhost:5000/app", "localhost:5000/app", "", "localhost:5000/app"),
        ("reg.example.com/team/app:v2", "reg.example.com/team/app", "v2", "reg.example.com/team/app:v2"),
    ],
)
def test_normalization(text: str, name: str, tag: str, familiar: str) -> None:
    ref = parse_normalized(text)
    assert (ref.name, ref.tag, ref.familiar()) == (name, tag, familiar)


@pytest.mark.parametrize(
    "bad", ["Ubuntu", "a" * 64, "app:", "app:bad tag", "-app", "app@sha256:abc", "a//b", "app:" + "t" * 129]
)
def test_invalid_references(bad: str) -> None:
    with pytest.raises(TarexportError):
        parse_normalized(bad)


def test_image_id_forms() -> None:
    hex64 = "ab" * 32
    assert parse_request(hex64) == ImageIDRequest("sha256:" + hex64)
    assert parse_request("sha256:" + hex64) == ImageIDRequest("sha256:" + hex64)
    assert parse_request("sha256:abcd") == Reference("docker.io/library/sha256", "abcd")  # Docker then searches IDs


ONE = make_image([{"one": b"1"}])
TWO = make_image([{"two": b"2"}])
THREE = make_image([{"three": b"3"}])


@pytest.fixture
def catalog(tmp_path):
    layout = write_oci_layout(
        str(tmp_path / "layout"),
        [
            LayoutEntry(ONE, ["docker.io/library/web:b", "docker.io/library/web:a", "docker.io/library/alias:1"]),
            LayoutEntry(TWO, ["docker.io/library/web:c"]),
            LayoutEntry(THREE, []),
        ],
    )
    legacy = write_docker_archive(str(tmp_path / "legacy.tar"), [(TWO, ["other:1"])])
    return build_catalog(
        [SourceSpec(layout, layout), SourceSpec(legacy, legacy)],
        "linux/amd64",
    )


def names(resolved: list[tuple[str, list[Reference]]]) -> list[tuple[str, list[str]]]:
    return [(image_id, [t.familiar() for t in tags]) for image_id, tags in resolved]


def test_repository_alone_means_all_its_tags_sorted(catalog) -> None:
    assert names(resolve(catalog, ["web"])) == [(ONE.image_id, ["web:a", "web:b"]), (TWO.image_id, ["web:c"])]


def test_request_order_and_merging(catalog) -> None:
    result = names(resolve(catalog, ["other:1", "alias:1", "web:c", "web:a", "alias:1"]))
    assert result == [(TWO.image_id, ["other:1", "web:c"]), (ONE.image_id, ["alias:1", "web:a"])]


def test_ids_and_prefixes(catalog) -> None:
    three_hex = THREE.image_id.split(":")[1]
    assert names(resolve(catalog, [THREE.image_id])) == [(THREE.image_id, [])]
    assert names(resolve(catalog, [three_hex])) == [(THREE.image_id, [])]
    assert names(resolve(catalog, [three_hex[:10]])) == [(THREE.image_id, [])]
    assert names(resolve(catalog, ["sha256:" + three_hex[:10]])) == [(THREE.image_id, [])]


def test_ambiguous_prefix_and_missing_names(catalog) -> None:
    ids = [i.image_id.split(":")[1] for i in (ONE, TWO, THREE)]
    common = ""
    for a in ids:
        for b in ids:
            if a != b and a[0] == b[0]:
                common = a[0]
    if common:
        with pytest.raises(TarexportError, match="ambiguous"):
            resolve(catalog, [common])
    with pytest.raises(TarexportError, match="no such image: web:zzz"):
        resolve(catalog, ["web:zzz"])
    with pytest.raises(TarexportError, match="no such image: nothing"):
        resolve(catalog, ["nothing"])
    with pytest.raises(TarexportError, match="no such image"):
        resolve(catalog, ["sha256:" + "0" * 64])


def test_digest_reference(catalog, tmp_path) -> None:
    image = catalog.images[TWO.image_id]
    digest = next(iter(image.manifest_digests))
    assert names(resolve(catalog, [f"web@{digest}"])) == [(TWO.image_id, [])]


def test_plan_stores_each_diff_once(catalog) -> None:
    plan = make_plan(catalog, ["web", "other:1"])
    assert list(plan.layers) == [ONE.diff_ids[0], TWO.diff_ids[0]]
    assert [p.display for p in plan.images] == ["web:a", "web:c"]
    assert plan.layer_users == {ONE.diff_ids[0]: "web:a", TWO.diff_ids[0]: "web:c"}


def test_digest_needs_a_name_the_image_carries(catalog) -> None:
    digest = next(iter(catalog.images[TWO.image_id].manifest_digests))
    with pytest.raises(TarexportError, match="it is not named that way"):
        resolve(catalog, [f"unrelated@{digest}"])
    with pytest.raises(TarexportError, match="no source holds that manifest"):
        resolve(catalog, ["web@sha256:" + "e" * 64])


def test_id_prefixes_are_case_sensitive(catalog) -> None:
    with pytest.raises(TarexportError, match="no such image"):
        resolve(catalog, ["sha256:" + THREE.image_id.split(":")[1][:12].upper()])


def test_an_image_without_layers_fails_only_when_requested(tmp_path) -> None:
    from tests.imagefactory import Image, make_config

    empty = Image([], make_config([]))
    layout = write_oci_layout(
        str(tmp_path / "l"),
        [LayoutEntry(empty, ["docker.io/library/empty:1"]), LayoutEntry(ONE, ["docker.io/library/one:1"])],
    )
    catalog = build_catalog([SourceSpec(layout, layout)], "linux/amd64")
    assert make_plan(catalog, ["one:1"]).images[0].image.image_id == ONE.image_id
    with pytest.raises(TarexportError, match=r"image empty:1, source .*: has no layers"):
        make_plan(catalog, ["empty:1"])


def test_a_pinned_name_keeps_its_tag(catalog) -> None:
    """`repo:tag@digest`: the image with that manifest (or, from a docker-save source, that
    config) digest, named repo:tag; docker save would drop the tag."""
    digest = next(iter(catalog.images[TWO.image_id].manifest_digests))
    assert names(resolve(catalog, [f"web:c@{digest}"])) == [(TWO.image_id, ["web:c"])]
    # pinned where the tag has moved on: the pinned image, under the tag
    assert names(resolve(catalog, [f"web:a@{digest}"])) == [(TWO.image_id, ["web:a"])]
    # a docker-save source has no manifest: its config digest (the image ID) pins
    assert names(resolve(catalog, [f"other:9@{TWO.image_id}"])) == [(TWO.image_id, ["other:9"])]
    plan = make_plan(catalog, [f"web:a@{digest}"])
    assert [[t.familiar() for t in p.tags] for p in plan.images] == [["web:a"]]


def test_a_pin_no_source_holds_names_both(catalog) -> None:
    missing = "sha256:" + "e" * 64
    with pytest.raises(TarexportError) as refused:
        resolve(catalog, [f"web:a@{missing}"])
    assert str(refused.value) == (
        f"no such image: web:a@{missing} (no source holds that manifest; web:a is {ONE.image_id} there now)"
    )
    with pytest.raises(TarexportError, match="it is not named that way"):
        resolve(catalog, [f"unrelated:1@{next(iter(catalog.images[TWO.image_id].manifest_digests))}"])


def test_a_tag_asked_for_as_two_images_is_an_error(catalog) -> None:
    digest = next(iter(catalog.images[TWO.image_id].manifest_digests))
    with pytest.raises(TarexportError, match="web:a is asked for as two images"):
        resolve(catalog, ["web:a", f"web:a@{digest}"])
