"""`WWW-Authenticate`, read as RFC 9110 §11.6.1 (formerly RFC 7235 §4.1) writes it.

One header may hold several challenges and a response may carry several headers; a
challenge is a scheme, then either one token68 or comma-separated `name=value` parameters
whose value is a token or a quoted-string (with backslash escapes, commas allowed inside).
Scheme and parameter names are case-insensitive: both are kept in lower case here.
A comma thus ends a parameter or a challenge: what follows it tells which (`name=` is
another parameter, a token followed by anything else starts the next challenge).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# ASCII only: \w would also take letters and digits of every other script
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
WHITESPACE = re.compile(r"[ \t]*")
PARAMETER_START = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*=")


class ChallengeError(ValueError):
    """A header that is not a list of challenges; the message never quotes the header."""


@dataclass(frozen=True)
class Challenge:
    scheme: str  # in lower case: "bearer", "basic", ...
    params: dict[str, str] = field(default_factory=dict)  # names in lower case, values unquoted
    token68: str = ""


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Every challenge of every `WWW-Authenticate` value, in order; ChallengeError when
    one of them is malformed (a server whose challenge cannot be read is not answered)."""
    challenges: list[Challenge] = []
    for value in values:
        challenges.extend(_Parser(value).challenges())
    return challenges


def choose_challenge(challenges: list[Challenge]) -> Challenge | None:
    """Bearer when offered (a token scoped to the repository), else Basic, else None."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def challenges(self) -> list[Challenge]:
        found = []
        while True:
            self._skip_separators()
            if self._at_end():
                return found
            found.append(self._challenge())

    def _at_end(self) -> bool:
        return self.pos >= len(self.text)

    def _peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def _skip_whitespace(self) -> None:
        self.pos = WHITESPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def _skip_separators(self) -> None:
        """Whitespace and commas: a list may hold empty elements (RFC 9110 §5.6.1)."""
        while True:
            self._skip_whitespace()
            if self._peek() != ",":
                return
            self.pos += 1

    def _token(self, what: str) -> str:
        match = TOKEN.match(self.text, self.pos)
        if not match:
            raise ChallengeError(f"expected {what} at character {self.pos + 1}")
        self.pos = match.end()
        return match.group()

    def _challenge(self) -> Challenge:
        scheme = self._token("an auth scheme").lower()
        after_scheme = self.pos
        self._skip_whitespace()
        if self._at_end() or self._peek() == ",":
            # `name=` after the comma still belongs to this challenge (the list rule allows
            # empty elements; no challenge starts with `name=`), anything else is the next one
            comma = self.pos
            self._skip_separators()
            if self._at_end() or not PARAMETER_START.match(self.text, self.pos):
                self.pos = comma
                return Challenge(scheme)
        elif self.pos == after_scheme:  # the scheme runs into something that is not a space
            raise ChallengeError(f"expected a space after the auth scheme at character {self.pos + 1}")
        else:
            token68 = TOKEN68.match(self.text, self.pos)
            end = WHITESPACE.match(self.text, token68.end()).end() if token68 else 0  # type: ignore[union-attr]
            if token68 and (end == len(self.text) or self.text[end] == ","):
                self.pos = end
                return Challenge(scheme, token68=token68.group())
        params: dict[str, str] = {}
        while True:
            name, value = self._parameter()
            if name in params:  # RFC 9110: each name at most once; which one would count?
                raise ChallengeError(f"a parameter appears twice in the {scheme} challenge")
            params[name] = value
            self._skip_whitespace()
            if self._at_end():
                break
            if self._peek() != ",":
                raise ChallengeError(f"expected a comma at character {self.pos + 1}")
            comma = self.pos
            self._skip_separators()
            if self._at_end() or not PARAMETER_START.match(self.text, self.pos):
                self.pos = comma  # the next challenge begins after this comma
                break
        return Challenge(scheme, params)

    def _parameter(self) -> tuple[str, str]:
        name = self._token("a parameter name").lower()
        self._skip_whitespace()
        if self._peek() != "=":
            raise ChallengeError(f"expected '=' at character {self.pos + 1}")
        self.pos += 1
        self._skip_whitespace()
        if self._peek() == '"':
            return name, self._quoted_string()
        return name, self._token("a parameter value")

    def _quoted_string(self) -> str:
        start = self.pos
        self.pos += 1  # the opening quote
        out: list[str] = []
        while not self._at_end():
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\":  # quoted-pair: the next character stands for itself
                self.pos += 1
                if self._at_end():
                    break
                char = self.text[self.pos]
            if not _text_character(char):
                raise ChallengeError(f"a control character in a quoted-string at character {self.pos + 1}")
            out.append(char)
            self.pos += 1
        raise ChallengeError(f"the quoted-string at character {start + 1} does not end")


def _text_character(char: str) -> bool:
    """qdtext and quoted-pair's second character: HTAB, SP, VCHAR and obs-text (0x80-0xFF)."""
    code = ord(char)
    return code == 0x09 or 0x20 <= code <= 0x7E or 0x80 <= code <= 0xFF
