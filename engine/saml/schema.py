"""The SAML 2.0 XML schemas (python3-saml's copies), compiled once per thread.

python3-saml compiles the schema on every call; compiling costs far more than
validating, so the compiled `XMLSchema` objects are kept. Each thread keeps its own:
libxml2's schema objects are not made to be shared between threads (32 threads
compiling and validating one cached schema at once gave `XMLSchemaParseError:
Internal error`), and a server thread compiles its copy once (`warm`) before it
serves. Compiling itself is serialised: libxml2 sets up its built-in schema types on
the first compile in a process, and several threads doing that at once left the process
unable to compile any schema again ("the given type is not a built-in type").
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import onelogin.saml2
from lxml import etree

from engine.token import TokenRejected

_SCHEMAS = Path(onelogin.saml2.__file__).parent / "schemas"


_local = threading.local()
_compiling = threading.Lock()  # one compile at a time, process-wide


def _schema(name: str) -> etree.XMLSchema:
    compiled: dict[str, etree.XMLSchema] | None = getattr(_local, "schemas", None)
    if compiled is None:
        compiled = _local.schemas = {}
    schema = compiled.get(name)
    if schema is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        with _compiling:
            schema = etree.XMLSchema(etree.parse(str(_SCHEMAS / name), parser))
        compiled[name] = schema
    return schema


def protocol_schema() -> etree.XMLSchema:
    """samlp (Response, and through its imports Assertion, ds and xenc)."""
    return _schema("saml-schema-protocol-2.0.xsd")


def metadata_schema() -> etree.XMLSchema:
    """SAML metadata (EntityDescriptor / EntitiesDescriptor)."""
    return _schema("saml-schema-metadata-2.0.xsd")


_ELEMENT = re.compile(r"Element '\{([^}]*)\}")
_STRICT_NAMESPACES = frozenset(
    {"urn:oasis:names:tc:SAML:2.0:protocol", "urn:oasis:names:tc:SAML:2.0:assertion"}
)


# An AttributeValue typed with a type the SAML schemas do not define (eIDAS's
# `eidas:CurrentFamilyNameType`, vendor types, an undeclared `xs:` prefix): its value is
# read as text (product.md §2), so the unknown type is not an error.
_FOREIGN_VALUE_TYPE = re.compile(
    r"Element '\{urn:oasis:names:tc:SAML:2\.0:assertion\}AttributeValue', attribute "
    r"'\{http://www\.w3\.org/2001/XMLSchema-instance\}type': The QName value '([^']*)'"
    r" (?:of the xsi:type attribute does not resolve to a type definition"
    r"|has no corresponding namespace declaration in scope)"
)


def _tolerated(message: str) -> bool:
    """Schema errors about non-SAML elements (a ds:Signature placed where the schema does
    not expect it, as some IdPs do; foreign elements) are left to the signature and
    wrapping checks, which judge them by product.md's rules; an AttributeValue of a
    type outside the SAML schemas is read as text."""
    foreign = _FOREIGN_VALUE_TYPE.match(message)
    if foreign is not None:
        return not any(space in foreign.group(1) for space in _STRICT_NAMESPACES)
    match = _ELEMENT.match(message)
    return match is not None and match.group(1) not in _STRICT_NAMESPACES


def check_schema(element: etree._Element, schema: etree.XMLSchema, what: str) -> None:
    """Raise TokenRejected("malformed") naming the first schema error about a SAML element."""
    doc = element.getroottree() if element.getparent() is None else etree.ElementTree(element)
    if schema.validate(doc):
        return
    for error in schema.error_log:
        if not _tolerated(error.message):
            line = f" (line {error.line})" if error.line else ""
            raise TokenRejected(
                "malformed", f"{what} does not follow the SAML schema{line}: {error.message}"
            )


def warm() -> None:
    """Compile this thread's schemas now (e.g. as a server thread starts) rather than on
    its first token."""
    protocol_schema()
