"""Go `encoding/json` compatible encoding of Docker 20.10's v1 image structs.

Docker writes each `<v1id>/json` with `json.Marshal` over `image.V1Image` (moby
`image/image.go`) and hashes a re-marshalled map of it for the v1 ID.  To be byte
identical we decode the config the way Go does (known fields only, case-insensitive
keys, later duplicates win, `null` leaves the zero value) and encode the way Go does
(declaration order, `omitempty`, nil as `null`, HTML-safe escaping, sorted map keys,
RFC 3339 times with trimmed nanoseconds).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import TarexportError
from .gotime import GoTime

# Go's encodeState.string with escapeHTML (json.Marshal and Encoder default).
# Docker 20.10 is built with Go 1.19, which writes \b and \f as \u0008 and \u000c.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_string(text: str) -> str:
    # Lone surrogates (from "\ud800" in the source JSON) are replaced as Go does (searched
    # by a regular expression: a Python loop over every character cost 0.5 s at 1000 images).
    if not text.isascii() and _SURROGATE.search(text):
        text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, text) + '"'


def encode_value(value: Any) -> str:
    """Encode plain values as Go encodes the matching Go types.

    dict -> map (sorted keys), list -> slice, None -> nil, str, bool, int.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return encode_string(value)
    if isinstance(value, RawJSON):
        return value.text
    if isinstance(value, GoTime):
        return '"' + value.format() + '"'
    if isinstance(value, list):
        return "[" + ",".join(encode_value(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value)  # Go sorts map keys bytewise; code point order is the same
        return "{" + ",".join(encode_string(k) + ":" + encode_value(value[k]) for k in keys) + "}"
    if isinstance(value, GoStruct):
        return value.encode()
    raise TypeError(f"cannot encode {type(value).__name__}")


@dataclass(frozen=True)
class RawJSON:
    """Already-encoded JSON text (Go's json.RawMessage)."""

    text: str


# ---------------------------------------------------------------- structs


@dataclass(frozen=True)
class Field:
    name: str  # the JSON key
    kind: str  # see _DECODERS
    omitempty: bool = False


def fields(declaration: str) -> tuple[Field, ...]:
    """A struct's fields written as Go declares them, one per line: `Name kind [omitempty]`
    (the JSON key, a kind of _DECODERS, and whether `omitempty` is in its tag)."""
    out = []
    for line in declaration.strip().splitlines():
        name, kind, *flags = line.split()
        out.append(Field(name, kind, omitempty=flags == ["omitempty"]))
    return tuple(out)


class GoStruct:
    """A Go struct value: fields in declaration order, decoded with Go's rules."""

    FIELDS: tuple[Field, ...] = ()

    def __init__(self) -> None:
        self.values: dict[str, Any] = {f.name: _ZERO[f.kind]() for f in self.FIELDS}

    # JSON keys that the enclosing Go struct takes before this one sees them.
    SHADOWED: frozenset[str] = frozenset()

    @classmethod
    def decode(cls, obj: Any, path: str, into: GoStruct | None = None) -> GoStruct:
        """Decode an object; with `into`, decode over an existing value as Go does."""
        if not isinstance(obj, JSONObject):
            raise ValueError(f"{path or 'config'} is not a JSON object")
        struct = into if into is not None else cls()
        for key, raw in obj:
            field = struct._field_for(key)
            if field is None:
                continue  # Go drops fields the struct does not know
            if raw is None and field.kind not in _NULL_SETS:
                continue  # null leaves the current value
            where = f"{path}.{field.name}" if path else field.name
            current = struct.values[field.name]
            if raw is None:
                struct.values[field.name] = None
            elif field.kind in _MERGING and current is not None:
                # a repeated key decodes into the existing map or struct: entries merge
                struct.values[field.name] = _MERGING[field.kind](raw, where, current)
            else:
                struct.values[field.name] = _DECODERS[field.kind](raw, where)
        return struct

    def _field_for(self, key: str) -> Field | None:
        if any(go_equal_fold(key, name) for name in self.SHADOWED):
            return None
        for field in self.FIELDS:
            if field.name == key:
                return field
        for field in self.FIELDS:
            if go_equal_fold(key, field.name):
                return field
        return None

    def encode(self, overrides: dict[str, Any] | None = None) -> str:
        return "{" + ",".join(encode_string(k) + ":" + v for k, v in self.encoded_fields(overrides)) + "}"

    def encoded_fields(self, overrides: dict[str, Any] | None = None) -> list[tuple[str, str]]:
        values = dict(self.values)
        if overrides:
            values.update(overrides)
        out = []
        for field in self.FIELDS:
            value = values[field.name]
            if field.omitempty and _is_empty(field.kind, value):
                continue
            out.append((field.name, encode_value(value)))
        return out


def go_equal_fold(key: str, name: str) -> bool:
    """encoding/json's key matching: simple case folding, with the Kelvin sign and long s."""
    return go_fold(key) == go_fold(name)


def go_fold(key: str) -> str:
    """A key as encoding/json compares it with a struct field's name (see _go_equal_fold)."""
    return "".join("k" if c == "\u212a" else "s" if c == "\u017f" else c.lower() if c.isascii() else c for c in key)


def go_field(document: Any, name: str) -> Any:
    """A struct field of a load_pairs document as encoding/json fills it: the last key that
    matches the name case-insensitively (None if none, or not an object)."""
    if not isinstance(document, JSONObject):
        return None
    value = None
    for key, item in document:
        if go_equal_fold(key, name):
            value = item
    return value


def refuse_fold_twins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when two of its keys differ but encoding/json would take them
    for one struct field: Go keeps the last (`config` after `Config`), Python the exact
    name, so Docker and we would read different images from one document."""
    seen: dict[str, str] = {}
    for key, _ in pairs:
        other = seen.setdefault(go_fold(key), key)
        if other != key:
            raise TarexportError(
                f"has keys {other!r} and {key!r}, which Go reads as one field; the document is ambiguous"
            )
    return dict(pairs)


def _is_empty(kind: str, value: Any) -> bool:
    if kind == "struct":  # Go never omits a struct value
        return False
    if kind == "time":
        return False
    if isinstance(value, GoStruct):
        return False  # non-nil pointer
    if kind in ("intptr",):
        return value is None
    return value is None or value == 0 or value == "" or value is False or value == [] or value == {}


def _string(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"{where} must be a string")
    return raw


def _bool(raw: Any, where: str) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"{where} must be a boolean")
    return raw


def _int(raw: Any, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"{where} must be an integer")
    if not -(2**63) <= raw < 2**63:
        raise ValueError(f"{where} is out of range for int64")
    return raw


def _string_list(raw: Any, where: str) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or isinstance(raw, JSONObject):
        raise ValueError(f"{where} must be a list of strings")
    # a null element stores the zero value
    return ["" if item is None else _string(item, where) for item in raw]


def _strslice(raw: Any, where: str) -> list[str] | None:
    # docker's strslice.StrSlice accepts a bare string as a one-element list.
    if isinstance(raw, str):
        return [raw]
    return _string_list(raw, where)


def _string_map(raw: Any, where: str, into: dict[str, str] | None = None) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, JSONObject):
        raise ValueError(f"{where} must be an object of strings")
    out: dict[str, str] = into if into is not None else {}
    for key, value in raw:
        if value is None:
            out[key] = ""  # null into a string map element stores the zero value
        else:
            out[key] = _string(value, f"{where}.{key}")
    return out


def _set_map(raw: Any, where: str, into: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]] | None:
    # map[string]struct{}: each value decodes into an empty struct.
    if raw is None:
        return None
    if not isinstance(raw, JSONObject):
        raise ValueError(f"{where} must be an object")
    out: dict[str, dict[str, Any]] = into if into is not None else {}
    for key, value in raw:
        if value is not None and not isinstance(value, JSONObject):
            raise ValueError(f"{where}.{key} must be an object")
        out[key] = {}
    return out


def _time(raw: Any, where: str) -> GoTime:
    try:
        return GoTime.parse(_string(raw, where))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _int_ptr(raw: Any, where: str) -> int | None:
    return None if raw is None else _int(raw, where)


_DECODERS: dict[str, Callable[[Any, str], Any]] = {
    "string": _string,
    "bool": _bool,
    "int": _int,
    "strings": _string_list,
    "strslice": _strslice,
    "stringmap": _string_map,
    "setmap": _set_map,
    "time": _time,
    "intptr": _int_ptr,
    "timeptr": lambda raw, where: None if raw is None else _time(raw, where),
}
_MERGING: dict[str, Callable[[Any, str, Any], Any]] = {
    "stringmap": _string_map,
    "setmap": _set_map,
}
# Kinds whose null sets nil (pointers, slices, maps); for the others null is a no-op.
_NULL_SETS = {"strings", "strslice", "stringmap", "setmap", "intptr", "timeptr"}
_ZERO: dict[str, Callable[[], Any]] = {
    "string": str,
    "bool": bool,
    "int": int,
    "strings": lambda: None,
    "strslice": lambda: None,
    "stringmap": lambda: None,
    "setmap": lambda: None,
    "time": GoTime,
    "intptr": lambda: None,
    "timeptr": lambda: None,
}


def struct_kind(kind: str, struct: type[GoStruct], pointer: bool) -> None:
    """Declare a field kind that holds a struct (dockerconfig.py declares Docker's). A
    pointer's zero value is nil and null sets it nil; a struct's zero value is the empty
    struct and null leaves it. A repeated key decodes into the value already there."""
    _DECODERS[kind] = struct.decode
    _MERGING[kind] = lambda raw, where, into: struct.decode(raw, where, into)
    _ZERO[kind] = (lambda: None) if pointer else struct
    if pointer:
        _NULL_SETS.add(kind)


def _replace_each_byte(error: UnicodeError) -> tuple[str, int]:
    # Go's decoder replaces every invalid byte with U+FFFD; Python would merge a broken sequence.
    assert isinstance(error, UnicodeDecodeError)
    return "\ufffd" * (error.end - error.start), error.end


codecs.register_error("gojson-replace", _replace_each_byte)


def go_text(data: bytes) -> str:
    """Bytes as Go's JSON decoder sees them: invalid UTF-8 bytes become U+FFFD each."""
    return data.decode("utf-8", errors="gojson-replace")


class JSONObject(list):
    """A JSON object as its key/value pairs in source order (Go decodes in that order)."""


UTF8_BOM = b"\xef\xbb\xbf"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (Go's decoder refuses it)")


def go_loads(data: bytes, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any]) -> Any:
    """JSON text as Go's encoding/json reads it, every document a loader decodes goes through
    here: NaN and Infinity, which Python takes, are refused, and so is a leading byte order
    mark; invalid UTF-8 in strings is replaced, byte by byte, as Go does (go_text). A
    ValueError where Go's decoder fails."""
    if data.startswith(UTF8_BOM):
        raise ValueError("starts with a UTF-8 byte order mark, which Go's decoder refuses")
    text = go_text(data)
    if _SURROGATE_ESCAPE.search(text):
        text = _ESCAPE.sub(_go_escape, text)
    return json.loads(text, object_pairs_hook=object_pairs_hook, parse_constant=_refuse_constant)


# Escapes, left to right (an escaped backslash is one, so `\\ud800` is no surrogate): a
# surrogate pair, a lone surrogate, any other. Go reads a lone surrogate as U+FFFD where
# Python keeps it, and a key or a path then names something else (tarfile's names hold
# such surrogates for bytes that are not UTF-8).
_ESCAPE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\\.")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _go_escape(match: re.Match[str]) -> str:
    escape = match.group(0)
    return "\\ufffd" if len(escape) == 6 else escape


def load_pairs(data: bytes, what: str) -> Any:
    """Parse JSON, objects as JSONObject pair lists, arrays as plain lists."""
    try:
        return go_loads(data, JSONObject)
    except (ValueError, RecursionError) as exc:
        raise TarexportError(f"{what} is not valid JSON ({exc})") from None


# ---------------------------------------------------------------- typed documents

# The Go type a document's value is decoded into: one of the kind names below, a struct as
# {JSON key: type}, or ("list", type) / ("map", type) for a slice or a map with string keys.
GoShape = str | tuple[str, Any] | dict[str, Any]
STRING, INT64, BYTES = "string", "int64", "bytes"
STRINGS: GoShape = ("list", STRING)
STRING_MAP: GoShape = ("map", STRING)
INT64_RANGE = range(-(2**63), 2**63)


def go_typed(value: Any, shape: GoShape, where: str) -> Any:
    """A parsed document (dicts, as refuse_fold_twins makes them) checked as Go's decoder
    fills a value of this shape: a ValueError naming the key where Go fails (a JSON type the
    field cannot take, a number that is not an integer literal within int64 for an int64, a
    string that is not base64 for bytes). Go decodes every field even when the rest of the
    document is fine, so a loader refuses the whole file. A struct's keys come back as the
    field names Go matches them to (case-insensitively), so readers see what Go sees; keys
    of no field are kept as they are (Go ignores them). null suits every type: Go leaves
    the value as it was."""
    if value is None:
        return None
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{where or 'the document'} is not a JSON object")
        typed = {}
        for key, item in value.items():
            field = key if key in shape else next((name for name in shape if go_equal_fold(key, name)), None)
            if field is None:
                typed[key] = item
            else:
                typed[field] = go_typed(item, shape[field], f"{where}.{field}" if where else field)
        return typed
    if isinstance(shape, tuple):
        kind, element = shape
        if kind == "list":
            if not isinstance(value, list):
                raise ValueError(f"{where} is not a JSON list")
            return [go_typed(item, element, f"{where}[{number}]") for number, item in enumerate(value)]
        if not isinstance(value, dict):
            raise ValueError(f"{where} is not a JSON object")
        # entries by their position: a key is the document's text, never quoted in a message
        return {key: go_typed(item, element, f"{where}[{number}]") for number, (key, item) in enumerate(value.items())}
    if shape == STRING:
        if not isinstance(value, str):
            raise ValueError(f"{where} is not a string")
    elif shape == INT64:
        # Go's ParseInt: a float literal (710.0, 1e3) or a quoted number is refused
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} is not an integer (Go decodes it into an int64)")
        if value not in INT64_RANGE:
            raise ValueError(f"{where} is out of range for an int64")
    elif shape == BYTES and not (isinstance(value, str) and _is_go_base64(value)):
        raise ValueError(f"{where} is not base64 (Go decodes it into bytes)")
    return value


_BASE64 = re.compile("[A-Za-z0-9+/]*={0,2}")


def _is_go_base64(text: str) -> bool:
    """Go's base64.StdEncoding: padded, skipping CR and LF."""
    text = text.replace("\r", "").replace("\n", "")
    return len(text) % 4 == 0 and _BASE64.fullmatch(text) is not None
