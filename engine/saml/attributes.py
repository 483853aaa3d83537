"""Read what the rules see from a verified Assertion: NameID, AuthnContext, attributes.

Attribute merge for the rules language (rules-language.md §4): an attribute's `Name`
wins; its `FriendlyName` is also reachable when no attribute has that Name; attributes
sharing a Name (or, for the FriendlyName view, a FriendlyName) are merged into one list
in document order; empty values are dropped. Values are the element's full text
(comments never truncate; nested markup gives its text).
"""

from __future__ import annotations

from lxml import etree

from engine.saml.xml import SAML, children, text_of

_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_STATEMENT = f"{SAML}AttributeStatement"
_ATTRIBUTE = f"{SAML}Attribute"
_VALUE = f"{SAML}AttributeValue"
_AUTHN_STATEMENT = f"{SAML}AuthnStatement"
_AUTHN_CONTEXT = f"{SAML}AuthnContext"
_CLASS_REF = f"{SAML}AuthnContextClassRef"


def read_attributes(assertion: etree._Element) -> dict[str, list[str]]:
    """The merged attribute map of one Assertion (AttributeStatements only)."""
    by_name: dict[str, list[str]] = {}
    by_friendly: dict[str, list[str]] = {}
    for statement in assertion.iterchildren(_STATEMENT):
        for attribute in statement.iterchildren(_ATTRIBUTE):
            values = []
            for value in attribute:  # children: comments too, skipped by their tag
                if value.tag != _VALUE or value.get(_XSI_NIL) in ("true", "1"):
                    continue
                text = text_of(value)
                if text:
                    values.append(text)
            name = attribute.get("Name", "")
            friendly = attribute.get("FriendlyName", "")
            if name:
                by_name.setdefault(name, []).extend(values)
            if friendly:
                by_friendly.setdefault(friendly, []).extend(values)
    merged = dict(by_name)
    for friendly, values in by_friendly.items():
        if friendly not in merged:
            merged[friendly] = values
    return merged


def read_authn_context(assertion: etree._Element) -> str | None:
    """The first AuthnStatement's AuthnContextClassRef, when there is one."""
    found = children(assertion, _AUTHN_STATEMENT, _AUTHN_CONTEXT, _CLASS_REF)
    value = text_of(found[0] if found else None)
    return value or None
