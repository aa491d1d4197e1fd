"""Go encoding/json compatibility of the v1 JSON, and Docker's v1 and chain IDs."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tarexport.digests import chain_ids
from tarexport.dockerconfig import decode_v1_image
from tarexport.errors import TarexportError
from tarexport.formats.docker_legacy import create_v1_id, v1_layers
from tarexport.gojson import encode_string, encode_value
from tarexport.gotime import GoTime

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "go"),
    [
        ("plain", '"plain"'),
        ("<a href='x'>&", "\"\\u003ca href='x'\\u003e\\u0026\""),
        ('quote " backslash \\', '"quote \\" backslash \\\\"'),
        ("\n\r\t", '"\\n\\r\\t"'),
        ("\x00\x01\x08\x0c\x1f", '"\\u0000\\u0001\\u0008\\u000c\\u001f"'),  # Go 1.19: no \b or \f
        ("\x7f é ✓ 🐳", '"\x7f é ✓ 🐳"'),  # raw UTF-8, DEL unescaped
        ("\u2028\u2029", '"\\u2028\\u2029"'),
        ("\ud800", '"\ufffd"'),  # a lone surrogate becomes U+FFFD
    ],
)
def test_string_escaping_follows_go(text: str, go: str) -> None:
    assert encode_string(text) == go


def test_maps_sort_keys_and_nil_is_null() -> None:
    assert encode_value({"b": "1", "a": None, "é": [], "A": {}}) == '{"A":{},"a":null,"b":"1","é":[]}'


@pytest.mark.parametrize(
    ("parsed", "formatted"),
    [
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.120000000Z", "2024-01-02T03:04:05.12Z"),
        ("2024-01-02T03:04:05.123456789123Z", "2024-01-02T03:04:05.123456789Z"),
        ("2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.5+02:00", "2024-01-02T03:04:05.5+02:00"),
        ("2024-01-02T03:04:05-07:30", "2024-01-02T03:04:05-07:30"),
    ],
)
def test_time_round_trip_as_go(parsed: str, formatted: str) -> None:
    assert GoTime.parse(parsed).format() == formatted


def test_time_unix_seconds_uses_the_offset() -> None:
    assert GoTime.parse("1970-01-01T02:00:01+02:00").unix_seconds() == 1
    assert GoTime.parse("2024-01-02T03:04:05.9Z").unix_seconds() == 1704164645


LOWER_SAMPLE = (
    '{"id":"%s","created":"1970-01-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"",'
    '"AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,'
    '"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,'
    '"OnBuild":null,"Labels":null},"os":"linux"}'
)


def test_lower_layer_json_has_docker_shape() -> None:
    diff = "sha256:" + "1" * 64
    (layer,) = v1_layers(None, [diff], "linux")
    assert layer.json_bytes.decode() == LOWER_SAMPLE % layer.v1_id


def test_chain_ids() -> None:
    a, b, c = ("sha256:" + x * 64 for x in "abc")
    chains = chain_ids([a, b, c])
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chains == [a, ab, "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()]


def test_decoding_follows_go_rules() -> None:
    config = json.dumps(
        {
            "created": "2024-01-02T03:04:05Z",
            "OS": "linux",  # keys match case-insensitively
            "architecture": "amd64",
            "architecture ": "ignored",  # unknown keys are dropped
            "config": {
                "Cmd": "single string",  # strslice accepts a string
                "Env": [],  # empty, not nil: written as []
                "Labels": None,
                "ExposedPorts": {},  # omitempty: dropped when empty
                "Healthcheck": {"Test": ["NONE"], "Retries": 0},
                "StopTimeout": 0,  # pointer: 0 is written
                "Volumes": {"/v": {"x": 1}},
                "Shell": [],
            },
            "rootfs": {"type": "layers", "diff_ids": []},
            "Size": 0,
        }
    ).encode()
    image = decode_v1_image(config, "config")
    encoded = image.encode()
    assert encoded.startswith('{"created":"2024-01-02T03:04:05Z","container_config":{"Hostname":""')
    inner = json.loads(encoded)["config"]
    assert inner["Cmd"] == ["single string"]
    assert inner["Env"] == []
    assert "ExposedPorts" not in inner and "Shell" not in inner
    assert inner["Healthcheck"] == {"Test": ["NONE"]}
    assert inner["StopTimeout"] == 0
    assert inner["Volumes"] == {"/v": {}}
    assert encoded.endswith('"architecture":"amd64","os":"linux"}')


def test_duplicate_keys_later_wins_as_in_go() -> None:
    image = decode_v1_image(b'{"created":"2024-01-01T00:00:00Z","os":"a","Os":"b"}', "config")
    assert image.values["os"] == "b"


@pytest.mark.parametrize(
    "bad",
    [b'{"created": 5}', b'{"created":"yesterday"}', b'{"config":{"Env":"x"}}', b"[1]", b"{not json"],
)
def test_wrong_types_are_errors(bad: bytes) -> None:
    with pytest.raises(TarexportError):
        decode_v1_image(bad, "config")


def go_like_dumps(value: dict[str, object]) -> str:
    """An independent model of CreateID's map marshalling: top-level keys sorted,
    nested raw values kept in their order, Go's HTML-safe escaping."""
    ordered = {key: value[key] for key in sorted(value)}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        text = text.replace(char, escape)
    text = text.replace("\u2029", "\\u2029")
    # \b and \f escapes (not preceded by an escaped backslash) as Go 1.19 writes them
    return re.sub(
        r"(?<!\\)((?:\\\\)*)\\([bf])", lambda m: m.group(1) + ("\\u0008" if m.group(2) == "b" else "\\u000c"), text
    )


labels = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4)


@settings(max_examples=60, deadline=None)
@given(labels=labels, env=st.lists(st.text(max_size=10), max_size=3), parent=st.booleans())
def test_v1_id_matches_an_independent_create_id(labels: dict[str, str], env: list[str], parent: bool) -> None:
    config = json.dumps(
        {"created": "2024-01-02T03:04:05.5Z", "os": "linux", "config": {"Labels": labels, "Env": env}}
    ).encode()
    image = decode_v1_image(config, "config")
    chain = "sha256:" + "c" * 64
    parent_id = "d" * 64 if parent else ""
    as_map = json.loads(image.encode())
    as_map["layer_id"] = chain
    if parent_id:
        as_map["parent"] = "sha256:" + parent_id
    expected = hashlib.sha256(go_like_dumps(as_map).encode()).hexdigest()
    assert create_v1_id(image, chain, parent_id) == expected


def test_config_parent_belongs_to_image_not_v1_image() -> None:
    # image.Image's own `parent` field shadows V1Image's: Docker never hashes it.
    with_parent = decode_v1_image(b'{"created":"2024-01-01T00:00:00Z","Parent":"sha256:aa"}', "config")
    without = decode_v1_image(b'{"created":"2024-01-01T00:00:00Z"}', "config")
    assert with_parent.encode() == without.encode()


def test_repeated_keys_merge_maps_and_structs_as_go() -> None:
    image = decode_v1_image(
        b'{"config":{"Labels":{"a":"1"},"Env":["x"]},"Config":{"Labels":{"b":"2"}},"config":{"Env":["y",null]}}',
        "config",
    )
    inner = json.loads(image.encode())["config"]
    assert inner["Labels"] == {"a": "1", "b": "2"}
    assert inner["Env"] == ["y", ""]  # slices are replaced; a null element is ""


def test_key_folding_is_gos_not_unicode_casefold() -> None:
    image = decode_v1_image('{"config":{"ﬆdinOnce":true,"\u017ftdinonce":true}}'.encode(), "config")
    assert json.loads(image.encode())["config"]["StdinOnce"] is True  # only the long s folds
    image = decode_v1_image('{"config":{"ﬆdinOnce":true}}'.encode(), "config")
    assert json.loads(image.encode())["config"]["StdinOnce"] is False


def test_invalid_utf8_becomes_one_replacement_per_byte() -> None:
    image = decode_v1_image(b'{"os":"a\xf0\x9f\x98b"}', "config")
    assert image.values["os"] == "a\ufffd\ufffd\ufffdb"


@pytest.mark.parametrize(
    "bad", ["2024-01-02t03:04:05Z", "2024-01-02T03:04:05z", "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z"]
)
def test_times_go_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        GoTime.parse(bad)


# -- source documents decoded with Go's rules (sources/metadata.py parse_json)

DIGEST = "sha256:" + "a" * 64


def index_with(descriptor_text: str) -> bytes:
    return b'{"schemaVersion": 2, "manifests": [' + descriptor_text.encode() + b"]}"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_to_go(constant: str) -> None:
    from tarexport.gojson import load_pairs
    from tarexport.sources.metadata import parse_json

    document = f'{{"manifests": [], "extra": {constant}}}'.encode()
    with pytest.raises(TarexportError, match=f"source s, member index.json: index.json is not valid JSON .*{constant}"):
        parse_json(document, "index.json", "s", "index.json")
    with pytest.raises(TarexportError, match="config is not valid JSON"):  # configs, through load_pairs
        load_pairs(b'{"rootfs": {"diff_ids": []}, "x": ' + constant.encode() + b"}", "config")


def test_a_leading_byte_order_mark_is_refused_as_go_does() -> None:
    from tarexport.gojson import load_pairs
    from tarexport.sources.metadata import parse_json

    with pytest.raises(
        TarexportError, match=r"member manifest\.json: manifest\.json is not valid JSON .*byte order mark"
    ):
        parse_json(b"\xef\xbb\xbf[]", "manifest.json", "s", "manifest.json", list)
    with pytest.raises(TarexportError, match="byte order mark"):
        load_pairs(b"\xef\xbb\xbf{}", "config")


def test_invalid_utf8_in_a_string_is_replaced_as_go_does() -> None:
    from tarexport.sources.metadata import parse_json

    # Go's decoder replaces each invalid byte with U+FFFD; it refuses nothing
    assert parse_json(b'{"a": "x\xff\xe2\x82y"}', "index.json", "s", "index.json") == {"a": "x\ufffd\ufffd\ufffdy"}


@pytest.mark.parametrize(
    ("size", "words"),
    [
        ("710.0", "is not an integer"),
        ("7.1e2", "is not an integer"),
        ('"1571"', "is not an integer"),
        ("true", "is not an integer"),
        ("9223372036854775808", "is out of range for an int64"),
        ("-9223372036854775809", "is out of range for an int64"),
    ],
)
def test_a_size_go_cannot_decode_into_int64_is_refused(size: str, words: str) -> None:
    from tarexport.sources.metadata import OCI_INDEX, parse_json

    document = index_with(f'{{"digest": "{DIGEST}", "size": {size}}}')
    with pytest.raises(TarexportError, match=f"member index.json: index.json: manifests\\[0\\].size {words}"):
        parse_json(document, "index.json", "s", "index.json", shape=OCI_INDEX)
    assert parse_json(document, "index.json", "s", "index.json")  # untyped: Python alone takes it


@pytest.mark.parametrize(("size", "value"), [("9223372036854775807", 2**63 - 1), ("-0", 0), ("null", None)])
def test_sizes_go_decodes(size: str, value: int | None) -> None:
    from tarexport.sources.metadata import OCI_INDEX, parse_json

    document = parse_json(index_with(f'{{"size": {size}}}'), "index.json", "s", "index.json", shape=OCI_INDEX)
    assert document["manifests"][0]["size"] == value


def test_keys_are_read_as_the_fields_go_matches() -> None:
    from tarexport.sources.metadata import OCI_INDEX, parse_json

    document = parse_json(
        index_with(f'{{"DIGEST": "{DIGEST}", "Size": 7, "PLATFORM": {{"OS": "linux"}}, "other": 1.5}}'),
        "index.json",
        "s",
        "index.json",
        shape=OCI_INDEX,
    )
    assert document["manifests"] == [{"digest": DIGEST, "size": 7, "platform": {"os": "linux"}, "other": 1.5}]


@pytest.mark.parametrize(
    ("field", "where"),
    [
        ('"annotations": {"k": 1}', "manifests[0].annotations[0] is not a string"),
        ('"urls": "http://x"', "manifests[0].urls is not a JSON list"),
        ('"platform": []', "manifests[0].platform is not a JSON object"),
        ('"data": "not base64!"', "manifests[0].data is not base64"),
        ('"data": "e30"', "manifests[0].data is not base64"),  # Go's StdEncoding wants padding
        ('"mediaType": 5', "manifests[0].mediaType is not a string"),
    ],
)
def test_fields_of_the_wrong_json_type_are_refused(field: str, where: str) -> None:
    from tarexport.sources.metadata import OCI_INDEX, parse_json

    with pytest.raises(TarexportError, match=re.escape(f"index.json: {where}")):
        parse_json(index_with(f'{{"digest": "{DIGEST}", {field}}}'), "index.json", "s", "index.json", shape=OCI_INDEX)
    assert parse_json(index_with('{"data": "e30="}'), "index.json", "s", "index.json", shape=OCI_INDEX)


def test_docker_save_manifest_fields_are_typed_as_docker_reads_them() -> None:
    from tarexport.sources.metadata import DOCKER_MANIFEST, parse_json

    layer_sources = f'{{"{DIGEST}": {{"mediaType": "m", "size": 710.0, "digest": "{DIGEST}"}}}}'
    document = f'[{{"Config": "c.json", "Layers": ["l.tar"], "LayerSources": {layer_sources}}}]'.encode()
    with pytest.raises(TarexportError, match=re.escape("manifest.json: [0].LayerSources[0].size is not an integer")):
        parse_json(document, "manifest.json", "s", "manifest.json", list, DOCKER_MANIFEST)
    with pytest.raises(TarexportError, match=re.escape("manifest.json: [0].RepoTags is not a JSON list")):
        parse_json(
            b'[{"Config": "c.json", "repotags": "a:1"}]', "manifest.json", "s", "manifest.json", list, DOCKER_MANIFEST
        )
    (item,) = parse_json(b'[{"config": "c.json"}]', "manifest.json", "s", "manifest.json", list, DOCKER_MANIFEST)
    assert item == {"Config": "c.json"}  # Go fills Config from `config`


@pytest.mark.parametrize(
    ("layout", "words"),
    [
        (b"garbage", "oci-layout is not valid JSON"),
        (b"[]", "oci-layout is not a JSON object"),
        (b'{"imageLayoutVersion": "2.0.0"}', "imageLayoutVersion is not 1.0.0"),
        (b'{"imageLayoutVersion": 1}', "oci-layout: imageLayoutVersion is not a string"),
        (b"{}", "imageLayoutVersion is not 1.0.0"),
        (b'{"imageLayoutVersion": "1.0.0", "x": NaN}', "oci-layout is not valid JSON"),
    ],
)
def test_oci_layout_file_must_be_what_loaders_take(layout: bytes, words: str) -> None:
    from tarexport.sources.metadata import check_layout_file

    with pytest.raises(TarexportError, match=f"source s, member oci-layout: .*{words}"):
        check_layout_file(layout, "s")
    check_layout_file(b'{"imageLayoutVersion": "1.0.0"}', "s")
    check_layout_file(b'{"ImageLayoutVersion": "1.0.0"}', "s")  # Go matches keys case-insensitively


def test_writing_reads_a_configs_diff_ids_as_planning_does() -> None:
    """`RootFS` after `rootfs`: Go (and planning) keep the last; the v1 layers written must
    follow the same diff_ids, or the export looks for a layer that was never made."""
    from tarexport.formats.docker_legacy import config_diff_ids
    from tarexport.sources.metadata import diff_ids_of

    first, last = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    config = json.dumps({"rootfs": {"diff_ids": [first]}, "RootFS": {"diff_ids": [last]}}).encode()
    assert config_diff_ids(config) == diff_ids_of(config, "s", "c") == [last]


def test_a_lone_surrogate_escape_reads_as_go_reads_it() -> None:
    from tarexport.gojson import load_pairs
    from tarexport.sources.metadata import parse_json

    # a pair is one character; a lone half is U+FFFD; an escaped backslash starts no escape
    document = rb'{"a": "\ud800x\ud83d\udc33\\ud800\udc00\ud800\ud800"}'
    assert parse_json(document, "index.json", "s", "index.json") == {"a": "\ufffdx\U0001f433\\ud800" + "\ufffd" * 3}
    assert load_pairs(rb'{"k\udcff": "v"}', "config") == [("k\ufffd", "v")]
