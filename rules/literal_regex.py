"""Patterns that are plain text: decide `matches` with string methods, RE2 otherwise.

Many rules patterns match a fixed piece of text: `"(?i)OU=Apps,"`, `"^(eng|sales)-"`.
The compiler turns those into `in`, `startswith`, `endswith` or a set lookup. For
ASCII text the answer is provably RE2's. Text with other characters still goes to
RE2: under `(?i)` RE2 folds some non-ASCII letters onto ASCII ones (K, the Kelvin
sign, matches `k`). Case-sensitive needles hold ASCII only, so any text is safe.
The same holds for one extraction shape, `regex_extract(t, "^prefix(.+)$")` (or
`(.*)`): on ASCII text, group 1 is what follows the prefix when that holds no newline
(RE2's `.` never matches one, and its `$` is the end of the text). Every other
extraction, and every replacement, runs on RE2.

The recognised form is deliberately small: an optional `(?i)`, an optional `^`, then
printable ASCII characters (a punctuation character may be escaped with a backslash)
and groups `( | )` / `(?: | )` of such characters, without nesting, then an optional
`$`. Every pattern outside that form, or with more than `MAX_NEEDLES` spellings, is
left to RE2. The needles are a product of the groups' alternatives, so they are few
and short: the work per test is linear in the text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "MAX_NEEDLES",
    "LiteralPattern",
    "list_matcher",
    "literal_pattern",
    "prefix_extractor",
    "text_matcher",
]

MAX_NEEDLES = 16
_META = frozenset(".^$*+?()[]{}|\\")
_ESCAPABLE = frozenset(chr(c) for c in range(0x21, 0x7F) if not chr(c).isalnum() and chr(c) != "_")

Search: TypeAlias = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class LiteralPattern:
    """A pattern that matches exactly when one of `needles` occurs: anywhere, at the
    start (`start`), at the end (`end`), or as the whole text (both). With `fold`, the
    needles are lower case and matching ignores ASCII case (for ASCII text only)."""

    needles: tuple[str, ...]
    start: bool
    end: bool
    fold: bool

    def test(self, text: str) -> bool:
        """The match on text the form covers (any text, or ASCII text when `fold`)."""
        if self.fold:
            text = text.lower()
        if self.start and self.end:
            return text in self.needles
        if self.start:
            return text.startswith(self.needles)
        if self.end:
            return text.endswith(self.needles)
        return any(needle in text for needle in self.needles)


def _parts(body: str) -> list[tuple[str, ...]] | None:
    """The pattern body as a sequence of alternatives sets; None outside the form."""
    parts: list[tuple[str, ...]] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 < len(body) and body[i + 1] in _ESCAPABLE:
                parts.append((body[i + 1],))
                i += 2
                continue
            return None
        if char == "(":
            close = body.find(")", i)
            if close < 0:
                return None
            inner = body[i + 1 : close]
            if inner.startswith("?:"):
                inner = inner[2:]
            alternatives: list[str] = []
            for alternative in inner.split("|"):
                pieces = _parts(alternative)
                if pieces is None or any(len(p) != 1 for p in pieces):
                    return None
                alternatives.append("".join(p[0] for p in pieces))
            parts.append(tuple(dict.fromkeys(alternatives)))
            i = close + 1
            continue
        if char in _META or not (" " <= char <= "~"):
            return None
        parts.append((char,))
        i += 1
    return parts


def literal_pattern(pattern: str) -> LiteralPattern | None:
    """The literal form of an RE2 pattern, or None when it has none (see the module)."""
    body = pattern
    fold = body.startswith("(?i)")
    if fold:
        body = body[4:]
    start = body.startswith("^")
    if start:
        body = body[1:]
    end = body.endswith("$") and not body.endswith("\\$")
    if end:
        body = body[:-1]
    parts = _parts(body)
    if parts is None:
        return None
    needles: list[str] = [""]
    for alternatives in parts:
        if len(needles) * len(alternatives) > MAX_NEEDLES:
            return None
        needles = [n + a for n in needles for a in alternatives]
    if fold:
        needles = [n.lower() for n in needles]
    return LiteralPattern(tuple(dict.fromkeys(needles)), start, end, fold)


def text_matcher(literal: LiteralPattern, search: Search) -> Search:
    """`text matches pattern` for one text: the literal test, RE2 where it must."""
    if not literal.fold:
        return literal.test
    test = literal.test

    def matches(text: str) -> bool:
        return test(text) if text.isascii() else bool(search(text))

    return matches


def list_matcher(literal: LiteralPattern, search: Search) -> Callable[[Sequence[str]], bool]:
    """`list matches pattern`: whether any value matches (stops at the first)."""
    one = text_matcher(literal, search)

    def any_matches(values: Sequence[str]) -> bool:
        for value in values:  # noqa: SIM110 (a loop: no generator frame per value)
            if one(value):
                return True
        return False

    return any_matches


def prefix_extractor(
    pattern: str, extract: Callable[[str], str | None]
) -> Callable[[str], str | None] | None:
    """`regex_extract(t, pattern)` (group 1) for a pattern `^prefix(.+)$` or
    `^prefix(.*)$` with a literal, case-sensitive prefix; `extract` (RE2) takes text
    that is not ASCII. None for any other pattern."""
    for group, least in (("(.+)$", 1), ("(.*)$", 0)):
        if pattern.startswith("^") and pattern.endswith(group):
            body = pattern[1 : -len(group)]
            if body.endswith("\\") or "(" in body:  # a group before would be group 1
                return None
            parts = _parts(body)
            if parts is None or any(len(p) != 1 for p in parts):
                return None
            return _prefixed("".join(p[0] for p in parts), least, extract)
    return None


def _prefixed(
    prefix: str, least: int, extract: Callable[[str], str | None]
) -> Callable[[str], str | None]:
    """Group 1 of `^prefix(.+)$` (`least` 1) or `^prefix(.*)$` (`least` 0)."""
    size = len(prefix) + least

    def prefixed(text: str) -> str | None:
        if not text.isascii():
            return extract(text)
        if len(text) < size or not text.startswith(prefix):
            return None
        rest = text[len(prefix) :]
        return None if "\n" in rest else rest

    return prefixed
