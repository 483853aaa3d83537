"""Safe XML parsing for token intake: no DTD, no entities, no network, bounded trees.

Every byte string that reaches lxml from a token goes through `parse_xml`. A DOCTYPE or
an entity declaration is refused as `dtd` *before* libxml2 sees the document, so no
entity is ever expanded (XXE, billion laughs); the parser is configured so that even a
declaration that slipped past the byte check could not be loaded or resolved.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

from engine.bounds import MAX_NAMESPACE_WORK, check_xml_counts
from engine.token import TokenRejected

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}
SAMLP = "{" + NS["samlp"] + "}"
SAML = "{" + NS["saml"] + "}"
DS = "{" + NS["ds"] + "}"
XENC = "{" + NS["xenc"] + "}"
MD = "{" + NS["md"] + "}"

# `<!DOCTYPE` or `<!ENTITY` in any common encoding of the markup (UTF-8/ASCII, UTF-16).
_DTD_MARKERS = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_DTD_MARKERS_16 = ("<!DOCTYPE", "<!ENTITY")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_blank_text=False,
        remove_comments=False,
        strip_cdata=True,
        collect_ids=False,  # xml:id never enters the ID table xmlsec resolves #id in
    )


# lxml parsers must not be shared between threads (a shared one has been seen to
# mis-resolve namespace prefixes under load): one per thread, made on first use.
_local = threading.local()


def _thread_parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _parser()
    return parser


def _utf16(data: bytes) -> bool:
    return data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00<" in data[:4] or b"<\x00" in data[:4]


def has_dtd_marker(data: bytes) -> bool:
    """True when the bytes hold a DOCTYPE or ENTITY declaration (checked pre-parse)."""
    if _DTD_MARKERS.search(data):
        return True
    if _utf16(data):
        for codec in ("utf-16-le", "utf-16-be"):
            text = data.decode(codec, errors="ignore").upper()
            if any(marker in text for marker in _DTD_MARKERS_16):
                return True
    return False


def parse_xml(data: bytes, what: str = "token") -> etree._Element:
    """Parse untrusted XML bytes; `dtd` for any DOCTYPE/entity, `malformed` otherwise
    (also before parsing, for more markup or namespace declarations than engine.bounds
    allows)."""
    if has_dtd_marker(data):
        raise TokenRejected("dtd", f"{what}: a DOCTYPE or entity declaration is not allowed")
    text = None
    if _utf16(data):
        codec = "utf-16-be" if data.startswith((b"\xfe\xff", b"\x00<")) else "utf-16-le"
        text = data.decode(codec, errors="ignore")
    markup, declarations = check_xml_counts(data, text)
    try:
        root = etree.fromstring(data, _thread_parser())
    except etree.XMLSyntaxError as exc:
        raise TokenRejected("malformed", f"{what}: not well-formed XML: {exc}") from None
    except (ValueError, MemoryError) as exc:
        raise TokenRejected("malformed", f"{what}: cannot parse XML: {exc}") from None
    if root is None:
        raise TokenRejected("malformed", f"{what}: empty document")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise TokenRejected("dtd", f"{what}: a DOCTYPE or entity declaration is not allowed")
    if declarations * declarations * markup > MAX_NAMESPACE_WORK:  # else it cannot pass
        _check_namespace_scopes(root, what)
    return root


def _check_namespace_scopes(root: etree._Element, what: str) -> None:
    """`malformed` when canonicalising the tree would pass MAX_NAMESPACE_WORK: the sum,
    over elements, of the square of the namespaces in scope (libxml2's c14n compares
    every namespace in scope with every other at each element)."""
    work, pending = 0, 0
    scopes = [0]
    for event, node in etree.iterwalk(root, events=("start-ns", "start", "end")):
        if event == "start-ns":
            pending += 1
        elif event == "start":
            scope = scopes[-1] + pending
            pending = 0
            scopes.append(scope)
            work += scope * scope
            if work > MAX_NAMESPACE_WORK and isinstance(node, etree._Element):
                raise TokenRejected(
                    "malformed",
                    f"{what}: too many namespaces in scope of too many elements (the "
                    f"element <{etree.QName(node).localname}> has {scope})",
                )
        else:
            scopes.pop()


def child(parent: etree._Element, tag: str) -> etree._Element | None:
    """The first child element `tag` ("{namespace}name"): what `parent.find(tag)` gives,
    by lxml's C iterator (`find` goes through ElementPath, in Python, each time)."""
    for found in parent.iterchildren(tag):
        return found
    return None


def children(parent: etree._Element, *tags: str) -> list[etree._Element]:
    """The elements at the child path `tags` (what `findall("a/b")` gives), in order."""
    found = [parent]
    for tag in tags:
        found = [node for above in found for node in above.iterchildren(tag)]
    return found


def text_of(element: etree._Element | None) -> str:
    """The full text of an element: every text node below it, comments skipped.

    A comment never truncates a value (`a<!---->b` is "ab"), and nested markup gives
    its text. Whitespace around the value is trimmed.
    """
    if element is None:
        return ""
    if not len(element):  # no children, no comments: the common case, without itertext
        return (element.text or "").strip()
    return "".join(element.itertext()).strip()
