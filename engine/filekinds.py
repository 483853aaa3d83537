"""What a file a connection names holds, checked when the config loads.

Each file a connection names is checked at load for what it should hold, so that a
wrong file (a certificate given as metadata, metadata as a certificate, a certificate
as a key) is a ConfigError naming the key, not a sign-in refused later. The checks
accept what the engine's own readers accept (engine.saml.keys, engine.saml.metadata,
engine.saml.decrypt / authn_request through xmlsec, engine.oidc.code_flow through
joserfc, engine.oidc.keys) and stay cheap, as every command loads the config: of a
metadata file (federation aggregates run to tens of megabytes) only the start is read,
up to its root element's start tag, by plain string scanning; certificates are parsed;
of a private key, its PEM header is enough; a JWKS is parsed as JSON. Each is read
whole only up to MAX_KEY_FILE_BYTES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

FileKind = Literal["metadata", "certificate", "private_key", "client_key", "jwks"]

METADATA_HEAD_BYTES = 65_536  # of a metadata file, only this much is read at load
MAX_KEY_FILE_BYTES = 1_048_576  # certificate, key and JWKS files (a fetched JWKS's bound)

EXPECTED_IN_FILE: dict[str, str] = {
    "metadata": "SAML metadata XML (an EntityDescriptor or EntitiesDescriptor)",
    "certificate": "an X.509 certificate (PEM -----BEGIN CERTIFICATE-----, DER or base64)",
    "private_key": "a PEM private key (-----BEGIN PRIVATE KEY-----)",
    "client_key": "an RSA or EC private key (PEM -----BEGIN PRIVATE KEY-----, or DER)",
    "jwks": 'a JWKS (a JSON object with a "keys" list)',
}

_MD_NAMESPACE = "urn:oasis:names:tc:SAML:2.0:metadata"
_METADATA_ROOTS = ("EntityDescriptor", "EntitiesDescriptor")
_XML_SPACE = " \t\r\n"
_UTF8_BOM = b"\xef\xbb\xbf"
_PEM_BEGIN = b"-----BEGIN "
_PEM_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_CERT_END = b"-----END CERTIFICATE-----"


def file_problem(path: Path, kind: FileKind) -> str | None:
    """What the file at `path` holds instead of `kind` ("a PEM certificate", "an empty
    file", ...), or None when it holds `kind`; OSError when it cannot be read."""
    with path.open("rb") as stream:
        if kind == "metadata":
            head = stream.read(METADATA_HEAD_BYTES)
            whole = len(head) < METADATA_HEAD_BYTES or not stream.read(1)
            return _metadata_problem(head, whole)
        data = stream.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        return (
            f"{_what(data)} of more than {MAX_KEY_FILE_BYTES} bytes"
            " (the most jitprov reads of a certificate, key or JWKS file)"
        )
    if not data.removeprefix(_UTF8_BOM).strip():
        return _what(data)
    if kind == "certificate":
        return _certificate_problem(data)
    if kind == "jwks":
        return _jwks_problem(data)
    return _private_key_problem(data, kind)


class _Found(Exception):
    """What a metadata file's start holds instead of a metadata root element."""


def _metadata_problem(head: bytes, whole: bool) -> str | None:
    """None when the XML at the start of a file (`head`; `whole`: all of it) has an
    EntityDescriptor or EntitiesDescriptor of SAML metadata as its root element."""
    try:
        qname, namespace = _root_element(_xml_text(head, whole), whole)
    except _Found as found:
        return str(found)
    local = qname.rpartition(":")[2]
    if namespace == _MD_NAMESPACE and local in _METADATA_ROOTS:
        return None
    where = f"in namespace {_shown(namespace)}" if namespace else "in no namespace"
    return f"XML whose root element is <{_shown(qname)}> {where}"


def _utf16(data: bytes) -> bool:
    """As engine.saml.xml: UTF-16 by its byte order mark or a `<` beside a NUL."""
    return data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00<" in data[:4] or b"<\x00" in data[:4]


def _xml_text(head: bytes, whole: bool) -> str:
    """The start of an XML file as text (UTF-16, UTF-8, or the ASCII-compatible encoding
    its declaration names); _Found when it is not XML, or not the UTF-8 it claims."""
    if _utf16(head):
        codec = "utf-16-be" if head.startswith((b"\xfe\xff", b"\x00<")) else "utf-16-le"
        even = head[: len(head) - len(head) % 2]
        return even.decode(codec, errors="replace").removeprefix("\ufeff")
    body = head.removeprefix(_UTF8_BOM)
    if not body.lstrip(_XML_SPACE.encode()).startswith(b"<"):
        raise _Found(_what(head))
    encoding = _declared_encoding(body)
    if encoding is not None and encoding not in ("utf-8", "utf8", "us-ascii", "ascii"):
        return body.decode("latin-1")  # scanned for ASCII markup only
    import codecs

    try:
        codecs.getincrementaldecoder("utf-8")().decode(body, final=whole)
    except UnicodeDecodeError as exc:
        offset = exc.start + len(head) - len(body)
        raise _Found(
            f"XML that is not UTF-8 text (byte 0x{body[exc.start]:02X} at offset {offset})"
        ) from None
    return body.decode("utf-8", errors="replace")  # a character cut at the end, at most


def _declared_encoding(body: bytes) -> str | None:
    """The `encoding` of an XML declaration at the very start, lower-cased, or None."""
    if not body.startswith(b"<?xml"):
        return None
    end = body.find(b"?>")
    declaration = body[: end if end >= 0 else 200]
    at = declaration.find(b"encoding")
    if at < 0:
        return None
    rest = declaration[at + len(b"encoding") :].lstrip().removeprefix(b"=").lstrip()
    if rest[:1] not in (b'"', b"'"):
        return None
    close = rest.find(rest[:1], 1)
    if close < 0:
        return None
    return rest[1:close].decode("latin-1").strip().lower().replace("_", "-")


def _root_element(text: str, whole: bool) -> tuple[str, str]:
    """The root element of XML text (the file's start; `whole`: all of it): its name as
    written and its namespace. Skips the declaration, comments, processing
    instructions and whitespace; _Found for a DOCTYPE (no DTDs are read) or a start
    that is not XML."""
    size = len(text)
    cut = "" if whole else f" in the first {METADATA_HEAD_BYTES} bytes"
    at = 0
    if text.startswith("<?xml") and text[5:6] in (*_XML_SPACE, "?"):
        end = text.find("?>", 5)
        if end < 0:
            raise _Found(f"XML whose declaration does not end{cut}")
        at = end + 2
    while True:
        while at < size and text[at] in _XML_SPACE:
            at += 1
        if at >= size:
            raise _Found(f"XML without a root element{cut}")
        if text.startswith("<!--", at):
            end = text.find("-->", at + 4)
            if end < 0:
                raise _Found(f"XML with a comment that does not end{cut}")
            at = end + 3
        elif text.startswith("<?", at):
            if text[at + 2 : at + 5].lower() == "xml" and text[at + 5 : at + 6] in (
                *_XML_SPACE,
                "?",
            ):
                raise _Found("XML whose declaration (<?xml ...?>) is not at the start of the file")
            end = text.find("?>", at + 2)
            if end < 0:
                raise _Found(f"XML with a processing instruction that does not end{cut}")
            at = end + 2
        elif text.startswith("<!", at):
            declared = text[at + 2 : at + 80].lstrip(_XML_SPACE).upper()
            if declared.startswith(("DOCTYPE", "ENTITY")):
                raise _Found("XML with a DOCTYPE, which jitprov refuses (no DTD is read)")
            raise _Found("XML with <! markup before its root element")
        elif text.startswith("<", at):
            return _start_tag(text, at + 1, cut)
        else:
            raise _Found("XML with text before its root element")


def _start_tag(text: str, at: int, cut: str) -> tuple[str, str]:
    """The name and namespace of the element whose start tag begins at `at` (after `<`),
    from the namespace declarations among its attributes."""
    size = len(text)
    unended = f"XML whose root element's start tag does not end{cut}"
    stops = (*_XML_SPACE, "/", ">")
    end = at
    while end < size and text[end] not in stops:
        end += 1
    qname = text[at:end]
    if not qname or qname.startswith(("=", '"', "'")):
        raise _Found("XML that is not well-formed (a < without an element name)")
    declared: dict[str, str] = {}
    while True:
        while end < size and text[end] in _XML_SPACE:
            end += 1
        if end >= size:
            raise _Found(unended)
        if text[end] == ">" or text.startswith("/>", end):
            break
        start = end
        while end < size and text[end] not in (*_XML_SPACE, "=", "/", ">"):
            end += 1
        name = text[start:end]
        while end < size and text[end] in _XML_SPACE:
            end += 1
        if end >= size:
            raise _Found(unended)
        if not name or text[end] != "=":
            raise _Found(f"XML whose root element <{_shown(qname)}> is not well-formed")
        end += 1
        while end < size and text[end] in _XML_SPACE:
            end += 1
        if end >= size:
            raise _Found(unended)
        quote = text[end]
        if quote not in ('"', "'"):
            raise _Found(f"XML whose root element <{_shown(qname)}> is not well-formed")
        close = text.find(quote, end + 1)
        if close < 0:
            raise _Found(unended)
        if name == "xmlns" or name.startswith("xmlns:"):
            declared[name[6:]] = _unescape(text[end + 1 : close])
        end = close + 1
    prefix = qname.rpartition(":")[0]
    if prefix and prefix not in declared:
        raise _Found(f"XML whose root element <{_shown(qname)}> has an undeclared prefix")
    return qname, declared.get(prefix, "")


def _unescape(value: str) -> str:
    """An attribute value with XML's predefined entities replaced."""
    if "&" not in value:
        return value
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'")):
        value = value.replace(entity, char)
    return value.replace("&amp;", "&")


def _pem_blocks(data: bytes) -> list[bytes]:
    """The certificate blocks of a PEM file, as engine.saml.keys finds them: from each
    BEGIN CERTIFICATE to the first END CERTIFICATE after it (with something between)."""
    blocks = []
    at = data.find(_PEM_CERT_BEGIN)
    while at >= 0:
        end = data.find(_PEM_CERT_END, at + len(_PEM_CERT_BEGIN) + 1)
        if end < 0:
            break
        end += len(_PEM_CERT_END)
        blocks.append(data[at:end])
        at = data.find(_PEM_CERT_BEGIN, end)
    return blocks


def _certificate_problem(data: bytes) -> str | None:
    """None when the file gives certificates as engine.saml.keys reads them: every PEM
    CERTIFICATE block, else the whole file as DER, else as base64 of DER."""
    import warnings

    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm

    blocks = _pem_blocks(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old IdP certificates: negative serials and the like
        for number, block in enumerate(blocks, 1):
            which = f" (the certificate {number} of {len(blocks)})" if len(blocks) > 1 else ""
            try:
                x509.load_pem_x509_certificate(block).public_key()
            except (ValueError, UnsupportedAlgorithm):
                return f"a PEM certificate block that is not an X.509 certificate{which}"
        if blocks:
            return None
        stripped = data.strip()
        if stripped.startswith(b"\x30"):
            der, what = stripped, "DER data"
        else:
            import base64

            try:
                der = base64.b64decode(b"".join(stripped.split()), validate=True)
            except ValueError:
                return _what(data)
            what = "base64 text"
        try:
            x509.load_der_x509_certificate(der).public_key()
        except (ValueError, UnsupportedAlgorithm):
            return f"{what} that is not an X.509 certificate"
    return None


def _pem_labels(data: bytes) -> list[tuple[str, int]]:
    """The labels of the PEM blocks in `data` ("CERTIFICATE", "PRIVATE KEY", ...), each
    with where its BEGIN line ends."""
    labels = []
    at = data.find(_PEM_BEGIN)
    while at >= 0:
        start = at + len(_PEM_BEGIN)
        end = data.find(b"-----", start, start + 64)
        if end < 0:
            at = data.find(_PEM_BEGIN, start)
            continue
        label = data[start:end]
        if label and all(32 <= byte < 127 for byte in label):
            labels.append((label.decode("ascii"), end + 5))
        at = data.find(_PEM_BEGIN, end + 5)
    return labels


def _private_key_problem(data: bytes, kind: FileKind) -> str | None:
    """None when the file holds a private key the engine can use: a PEM private key
    (xmlsec reads `decryption_key` and `sp_key`; joserfc reads `client_key`, which may
    also be an OpenSSH key or DER). Sniffed from the PEM header: not parsed."""
    for label, end in _pem_labels(data):
        if not label.endswith("PRIVATE KEY"):
            continue
        if label == "ENCRYPTED PRIVATE KEY" or b"ENCRYPTED" in data[end : end + 64]:
            return "an encrypted private key (jitprov reads unencrypted keys only)"
        if label == "OPENSSH PRIVATE KEY" and kind != "client_key":
            return "an OpenSSH private key (convert it: ssh-keygen -p -m PKCS8 -f FILE)"
        if label == "DSA PRIVATE KEY" and kind == "client_key":
            return "a DSA private key (client_key must be RSA or EC)"
        return None
    if kind == "client_key" and data.strip().startswith(b"\x30"):
        import warnings

        from cryptography import x509

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                x509.load_der_x509_certificate(data.strip())
        except ValueError:
            return None  # DER, not a certificate: a private key, as joserfc reads it
        return "a DER certificate"
    return _what(data)


def _jwks_problem(data: bytes) -> str | None:
    """None when the file is a JWKS as engine.oidc.keys reads it: a JSON object with a
    `keys` list, or a single JWK (an object with `kty`)."""
    import json

    try:
        parsed = json.loads(data)
    except RecursionError:
        return "JSON nested too deeply"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        if data.removeprefix(_UTF8_BOM).lstrip()[:1] in (b"{", b"["):
            return f"invalid JSON ({exc})"
        return _what(data)
    if isinstance(parsed, dict):
        if "kty" in parsed or isinstance(parsed.get("keys"), list):
            return None
        if "keys" in parsed:
            return f'a JSON object whose "keys" is not a list (it is {_json_kind(parsed["keys"])})'
        return 'a JSON object without "keys"'
    return f"JSON that is {_json_kind(parsed)}"


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true or false"
    if value is None:
        return "null"
    return "a number"


def _what(data: bytes) -> str:
    """What a file's bytes look like, for "found ...": "a PEM certificate", "SAML
    metadata XML", "JSON", "binary data", ..."""
    if not data:
        return "an empty file"
    if _utf16(data):
        even = data[: min(len(data), METADATA_HEAD_BYTES) // 2 * 2]
        codec = "utf-16-be" if data.startswith((b"\xfe\xff", b"\x00<")) else "utf-16-le"
        text = even.decode(codec, errors="replace").removeprefix("\ufeff")
        if text.lstrip(_XML_SPACE).startswith("<"):
            return _xml_kind(text)
        return "UTF-16 text"
    body = data.removeprefix(_UTF8_BOM).lstrip(_XML_SPACE.encode())
    if not body:
        return "a file holding only whitespace"
    labels = _pem_labels(data[:METADATA_HEAD_BYTES])
    if labels:
        label = labels[0][0]
        if label in ("CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"):
            return "a PEM certificate"
        if label.endswith("PRIVATE KEY"):
            return "a PEM private key"
        if label.endswith("PUBLIC KEY"):
            return "a PEM public key"
        return f"a PEM {_shown(label)} block"
    if body.startswith(b"<"):
        return _xml_kind(data[:METADATA_HEAD_BYTES].decode("utf-8", errors="replace"))
    if body[:1] in (b"{", b"["):
        return "a JWKS (JSON)" if b'"keys"' in body[:METADATA_HEAD_BYTES] else "JSON"
    if body.startswith(b"\x30"):
        return "binary data (DER)"
    import codecs

    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:METADATA_HEAD_BYTES])
    except UnicodeDecodeError:
        return "binary data"
    if any(c < " " and c not in _XML_SPACE for c in text):
        return "binary data"
    return "text that is not PEM, XML or JSON"


def _xml_kind(text: str) -> str:
    """What XML text is: SAML metadata, or XML of another root element."""
    try:
        qname, namespace = _root_element(text.removeprefix("\ufeff"), False)
    except _Found:
        return "XML"
    if namespace == _MD_NAMESPACE and qname.rpartition(":")[2] in _METADATA_ROOTS:
        return "SAML metadata XML"
    return f"XML whose root element is <{_shown(qname)}>"


def _shown(text: str) -> str:
    """A name read from a file, for a message: printable, and not too long."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= 80 else clean[:80] + "..."
