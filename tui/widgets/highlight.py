"""A small scanner of the rules language's tokens, for syntax highlighting only.

Why not the parser: the editor must colour half-typed text instantly, and every token
of the language fits on one line (strings cannot hold a newline, comments end at the
line's end), so a per-line scanner with a cache keyed by the line's text is both exact
and cheap. Token kinds are TextArea highlight names (see `RulesEditor`'s theme).
"""

from __future__ import annotations

from functools import lru_cache

from rules.vocabulary import CONTEXT_NAMES, KEYWORDS

Token = tuple[int, int, str]  # (start, end, kind), in code points of one line

_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_ATTR_CHARS = _NAME_CHARS | frozenset(".:-")
_DIGITS = frozenset("0123456789")
_CONSTANTS = frozenset(("true", "false", "null"))
_OPERATORS = frozenset("=<>!?+-:")
_ASSIGNMENTS = ("=", ":=", "?=", "+=", "-=")


def _string_end(line: str, start: int, raw: bool) -> int:
    """The index after the closing quote of the string opening at `start` (or the line's
    end when it is unterminated): the scanner must not lose its place while typing."""
    index = start + 1
    while index < len(line):
        char = line[index]
        if char == "\\" and not raw:
            index += 2
            continue
        if char == '"':
            return index + 1
        index += 1
    return len(line)


@lru_cache(maxsize=4096)
def scan_line(line: str) -> tuple[Token, ...]:
    """The highlighted tokens of one line of rules source."""
    tokens: list[Token] = []
    index, size = 0, len(line)
    while index < size:
        char = line[index]
        if char == "#":
            tokens.append((index, size, "comment"))
            break
        if char == '"':
            end = _string_end(line, index, raw=False)
            tokens.append((index, end, "string"))
            index = end
        elif char == "r" and index + 1 < size and line[index + 1] == '"':
            end = _string_end(line, index + 1, raw=True)
            tokens.append((index, end, "string.regex"))
            index = end
        elif char == "@":
            end = index + 1
            if end < size and line[end] == '"':
                end = _string_end(line, end, raw=False)
            else:
                while end < size and line[end] in _ATTR_CHARS:
                    end += 1
            tokens.append((index, end, "attribute"))
            index = end
        elif char in _NAME_START:
            end = index + 1
            while end < size and line[end] in _NAME_CHARS:
                end += 1
            word = line[index:end]
            kind = _word_kind(word, line, index, end)
            if kind:
                tokens.append((index, end, kind))
            index = end
        elif char in _DIGITS:
            end = index + 1
            while end < size and (line[end] in _DIGITS or line[end] == "."):
                end += 1
            tokens.append((index, end, "number"))
            index = end
        elif char in _OPERATORS:
            end = index + 1
            while end < size and line[end] in _OPERATORS:
                end += 1
            tokens.append((index, end, "operator"))
            index = end
        else:
            index += 1
    return tuple(tokens)


def _word_kind(word: str, line: str, start: int, end: int) -> str | None:
    if word in _CONSTANTS:
        return "constant"
    if word in KEYWORDS:
        return "keyword"
    rest = line[end:].lstrip(" \t")
    if rest.startswith("("):
        return "function"
    if rest.startswith(_ASSIGNMENTS) and not rest.startswith("==") and not line[:start].strip():
        return "field"  # a statement's target: `email = ...`, `groups += ...`
    if word in CONTEXT_NAMES:
        return "context"
    return None
