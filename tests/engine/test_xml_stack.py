"""The XML stack: python3-saml imports, and xmlsec and lxml link the same libxml2.

xmlsec operates on lxml's trees; two different libxml2 builds in one process corrupt
memory or fail signatures in odd ways, so this is checked, not assumed.
"""

from __future__ import annotations

import lxml.etree
import xmlsec


def test_onelogin_saml2_imports() -> None:
    from onelogin.saml2.response import OneLogin_Saml2_Response
    from onelogin.saml2.utils import OneLogin_Saml2_Utils

    assert OneLogin_Saml2_Response and OneLogin_Saml2_Utils


def test_xmlsec_and_lxml_link_the_same_libxml2() -> None:
    assert xmlsec.get_libxml_version() == lxml.etree.LIBXML_VERSION
    assert xmlsec.get_libxml_compiled_version() == lxml.etree.LIBXML_COMPILED_VERSION


def test_schemas_compile_once_per_thread() -> None:
    import threading

    from engine.saml import schema

    assert schema.protocol_schema() is schema.protocol_schema()
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(schema.protocol_schema()))
    thread.start()
    thread.join()
    assert other[0] is not schema.protocol_schema()  # each thread its own copy
