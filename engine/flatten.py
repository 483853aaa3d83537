"""OIDC claims → rules-language attributes (rules-language.md §4).

Every claim becomes an attribute: nested objects give dotted names (`address.country`),
an array of scalars gives a multi-valued attribute, an array of objects merges into
dotted names (`groups: [{"name": "a"}, {"name": "b"}]` gives `groups.name = [a, b]`),
numbers and booleans become their text (§3), JSON `null` and `""` are absent.

A top-level claim whose own name contains a dot wins over a nested path of the same
spelling. Generalised: when several claims spell one attribute name, the one reached
through the fewest object levels wins (a top-level `"a.b"` is depth 0, `{"a": {"b"}}`
depth 1); paths of the same depth merge in claim order. Arrays nested in arrays are
flattened into the same name (a choice: the spec is silent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.sample import scalar_text


def flatten_claims(claims: Mapping[str, Any]) -> dict[str, list[str]]:
    """The attributes of an ID token's claims, as rules-language.md §4 reads them."""
    found: dict[str, tuple[int, list[str]]] = {}
    for name, value in claims.items():
        _walk(name, value, 0, found)
    return {name: values for name, (_, values) in found.items() if values}


def _walk(name: str, value: Any, depth: int, found: dict[str, tuple[int, list[str]]]) -> None:
    kind = type(value)
    if kind is str:  # the common cases first: the Mapping check (an ABC's) is slow
        text: str | None = value
    elif kind is int:
        text = str(value)
    elif kind is dict or isinstance(value, Mapping):
        for key, inner in value.items():
            _walk(f"{name}.{key}", inner, depth + 1, found)
        return
    elif kind is list or isinstance(value, list):
        for item in value:
            _walk(name, item, depth, found)
        return
    else:
        text = None if value is None else scalar_text(value)
    if text is None or text == "":
        return
    current = found.get(name)
    if current is None or depth < current[0]:
        found[name] = (depth, [text])
    elif depth == current[0]:
        current[1].append(text)
