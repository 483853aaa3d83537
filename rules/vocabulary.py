"""The language's fixed names (keywords, built-in fields, context names) and limits."""

from __future__ import annotations

from typing import Literal, TypeAlias

FieldType: TypeAlias = Literal["text", "number", "bool", "set"]
FIELD_TYPES: tuple[str, ...] = ("text", "number", "bool", "set")

KEYWORDS: frozenset[str] = frozenset(
    [
        "let",
        "rule",
        "when",
        "on",
        "create",
        "update",
        "deny",
        "clear",
        "if",
        "then",
        "else",
        "match",
        "matches",
        "for",
        "in",
        "not",
        "and",
        "or",
        "true",
        "false",
        "null",
        "user",
    ]
)

BUILTIN_FIELDS: dict[str, FieldType] = {
    "username": "text",
    "email": "text",
    "given_name": "text",
    "family_name": "text",
    "display_name": "text",
    "active": "bool",
    "groups": "set",
    "roles": "set",
}
REQUIRED_FIELDS: tuple[str, ...] = ("username",)

CONTEXT_NAMES: tuple[str, ...] = (
    "subject",
    "subject_format",
    "issuer",
    "connection",
    "authn_context",
)

# Limits on what a rules file may hold, so that no phase (parse, check, compile,
# evaluate, format) can be driven into Python's recursion or int/str conversion limits.
# An expression more than MAX_DEPTH levels deep: E001 from the parser (E028 from the
# checker for a tree built some other way). No rules file needs this many.
MAX_DEPTH = 100
# The longest number literal, in characters (sign, digits and point): E007. The same
# bound product.md §2 puts on a token's JSON numbers; far below Python's int/str
# conversion limit (4300 digits) that a longer literal would run into.
MAX_NUMBER_LENGTH = 100
