"""SAML 2.0 intake: decode, validate (python3-saml's schemas + xmlsec), extract; mint.

The front door for the provisioning pipeline and the intake dispatcher:

    looks_like_saml(raw) -> bool
    decode_saml(raw, max_bytes) -> bytes          # the XML; TokenRejected on failure
    validate_saml(raw, connection, *, now, request_id=None) -> Token
    validate_decoded(decoded, connection, *, now, request_id=None) -> Token
                                                  # base64 intake decoded already
"""

from engine.saml.decode import decode_saml, looks_like_saml
from engine.saml.validate import validate_decoded, validate_saml

__all__ = ["decode_saml", "looks_like_saml", "validate_decoded", "validate_saml"]
