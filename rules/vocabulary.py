"""The language's fixed names: keywords, built-in fields, context names."""

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
