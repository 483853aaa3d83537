"""The validated token: what token intake hands to the provisioning pipeline.

Every form (SAML Response or Assertion, OIDC ID token, TOML sample) ends here, or in a
`TokenRejected` carrying one reason code of product.md §2 steps 2–3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeAlias

ReasonCode: TypeAlias = Literal[
    "too-large",
    "malformed",
    "dtd",
    "idp-error",
    "decryption-failed",
    "unsigned",
    "bad-signature",
    "untrusted-signer",
    "unsupported",
    "signature-wrapping",
    "wrong-issuer",
    "wrong-request",
    "wrong-audience",
    "wrong-recipient",
    "not-yet-valid",
    "expired",
    "wrong-nonce",
    "replay",
    # Browser sign-ins (docs/sso.md): a return URL outside the connection's return_urls,
    # and an OIDC code the token endpoint would not exchange.
    "wrong-return-url",
    "exchange-failed",
]

REASON_CODES: tuple[str, ...] = ReasonCode.__args__  # type: ignore[attr-defined]

TokenKind: TypeAlias = Literal["saml", "oidc", "sample"]


class TokenRejected(Exception):
    """The token failed decoding or validation; `reason` is a product.md §2 code."""

    def __init__(self, reason: ReasonCode, message: str, subject: str | None = None) -> None:
        super().__init__(message)
        self.reason: ReasonCode = reason
        self.message = message
        # The subject the token claims, when it could be read before the failing check
        # (for the result and the audit row only: it was not validated).
        self.subject = subject


@dataclass(frozen=True, slots=True)
class Token:
    """A token that passed every check of product.md §2 step 2.

    `attributes` is already merged for the rules language (rules-language.md §4): an
    attribute's SAML Name wins; a FriendlyName is reachable when no attribute has that
    Name; several same-Name attributes are merged; empty values dropped. OIDC claims are
    flattened to dotted names. `name_id` is the NameID value (or OIDC `sub`); the
    pipeline decides the subject (it applies `subject_from`).
    """

    kind: TokenKind
    name_id: str | None
    name_id_format: str | None
    issuer: str | None
    authn_context: str | None
    attributes: dict[str, list[str]]
    token_id: str | None
    expires_at: datetime | None  # when the replay entry may be forgotten; None = never
    email_verified: bool = False  # OIDC: the email_verified claim is JSON true
    claims: dict[str, object] = field(default_factory=dict)  # OIDC raw claims (for display)
    in_response_to: str | None = None  # SAML: the request the (signed) response answers
