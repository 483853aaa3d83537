"""The TOML *sample* form (product.md §2): a stand-in for a validated token.

A sample is unsigned, so it is for rule testing only: intake accepts it only with
`--unsigned-samples` (see engine.intake). `parse_sample_text` reads and checks the
TOML into a `Sample` (also used by `mint` and the rule test runner); `load_sample`
turns it into a `Token` for one connection.

```toml
subject = "jdoe@example.com"
subject_format = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"  # optional
issuer = "http://www.okta.com/exk1abc"   # optional; must equal the connection's
authn_context = "urn:...:PasswordProtectedTransport"                       # optional
token_id = "sample-1"                    # optional; replay checks use it when given
[attributes]
email = "jdoe@example.com"               # one value, or a list
memberOf = ["CN=eng,OU=Apps", "CN=vpn,OU=Net"]
```

Choices where the spec is silent: attribute values may also be TOML integers, decimals
and booleans (written as text the way rules-language.md §3 writes them); a nested table
under `[attributes]` gives dotted names (`[attributes.address] country = "NL"` is
`@address.country`, as OIDC claims flatten); dates, inline arrays of tables and nested
lists are refused. Without `token_id` no replay check is possible: the token has no id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from engine.bounds import check_text
from engine.config import Connection, load_toml, toml_problem
from engine.token import Token, TokenRejected

_TEXT_KEYS = ("subject", "subject_format", "issuer", "authn_context", "token_id")
_KEYS = (*_TEXT_KEYS, "attributes")


@dataclass(frozen=True, slots=True)
class Sample:
    """A parsed, type-checked sample; `attributes` values are text, in file order."""

    subject: str
    subject_format: str | None = None
    issuer: str | None = None
    authn_context: str | None = None
    token_id: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)


def parse_sample_text(text: str) -> Sample:
    """Parse and check sample TOML; raises TokenRejected("malformed") naming the key."""
    try:
        data = load_toml(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, an over-long integer
        raise TokenRejected("malformed", f"sample: invalid TOML: {toml_problem(exc)}") from None
    return sample_from_table(data)


def sample_from_table(data: Mapping[str, Any]) -> Sample:
    """Check a sample's parsed TOML; raises TokenRejected("malformed") naming the key."""
    for key in data:
        if key not in _KEYS:
            raise TokenRejected(
                "malformed",
                f"sample: unknown key {key!r}; expected one of {', '.join(_KEYS)}",
            )
    texts: dict[str, str | None] = {}
    for key in _TEXT_KEYS:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise TokenRejected(
                "malformed", f"sample: {key}: expected a string, got {describe_value(value)}"
            )
        if value is not None:
            check_text(value, f"sample: {key}")
        texts[key] = value if value else None  # "" is no value
    subject = texts.pop("subject")
    if subject is None or not subject.strip():
        raise TokenRejected("malformed", "sample: subject: missing (a non-empty string)")
    table = data.get("attributes", {})
    if not isinstance(table, dict):
        raise TokenRejected(
            "malformed", f"sample: attributes: expected a table, got {describe_value(table)}"
        )
    attributes: dict[str, list[str]] = {}
    _collect(table, "", attributes)
    return Sample(subject=subject, attributes=attributes, **texts)


def load_sample(
    data: bytes | str, connection: Connection, *, parsed: Mapping[str, Any] | None = None
) -> Token:
    """A sample as a Token for `connection`: checks its issuer, drops empty values.
    `parsed` is `data`'s TOML table when the caller has parsed it already.

    The token never expires for replay (`expires_at` None), and has no id (so no replay
    check) unless the sample gives `token_id`.
    """
    if parsed is not None:
        sample = sample_from_table(parsed)
    else:
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TokenRejected("malformed", f"sample: not UTF-8 text: {exc}") from None
        # Whitespace and BOMs around it, as intake strips them before it detects a sample.
        sample = parse_sample_text(data.strip(" \t\r\n\f\v\ufeff"))
    if sample.issuer is not None and (
        sample.issuer != connection.issuer
        if connection.tenants is None
        else connection.tenant_of(sample.issuer) is None
    ):
        raise TokenRejected(
            "wrong-issuer",
            f"sample issuer {sample.issuer!r} is not the connection's {connection.issuer!r}",
        )
    attributes = {
        name: [v for v in values if v != ""] for name, values in sample.attributes.items()
    }
    return Token(
        kind="sample",
        name_id=sample.subject,
        name_id_format=sample.subject_format,
        issuer=sample.issuer if sample.issuer is not None else connection.issuer,
        authn_context=sample.authn_context,
        attributes={name: values for name, values in attributes.items() if values},
        token_id=sample.token_id,
        expires_at=None,
    )


def scalar_text(value: Any) -> str | None:
    """A TOML or JSON scalar as rules-language text (§3); None when it is not a scalar.

    Booleans are "true"/"false"; integers have no point; decimals lose trailing zeros
    and never use an exponent.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        number = Decimal(str(value)) if isinstance(value, float) else value
        text = format(number, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    return None


def _collect(table: dict[str, Any], prefix: str, out: dict[str, list[str]]) -> None:
    for name, value in table.items():
        key = f"{prefix}{name}"
        check_text(key, "sample: an attribute name")
        if not name:
            raise TokenRejected("malformed", f"sample: attributes: empty attribute name {key!r}")
        if isinstance(value, dict):
            _collect(value, key + ".", out)
            continue
        items = value if isinstance(value, list) else [value]
        values: list[str] = []
        for item in items:
            text = None if isinstance(item, datetime | date | time) else scalar_text(item)
            if text is None:
                raise TokenRejected(
                    "malformed",
                    f"sample: attributes.{key}: expected a string or a list of strings, "
                    f"got {describe_value(item)}",
                )
            check_text(text, f"sample: attributes.{key}")
            values.append(text)
        out.setdefault(key, []).extend(values)


def describe_value(value: object) -> str:
    """A TOML value as an error message names it ("a table", "the number 3", ...)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, datetime | date | time):
        return "a date/time"
    if isinstance(value, int | float):
        return f"the number {value}"
    return repr(value)
