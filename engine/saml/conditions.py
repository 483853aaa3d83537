"""The checks after the signatures: issuer, InResponseTo, audience, recipient, time.

Each raises TokenRejected with the product.md §2 code and a message saying what was
expected and what was found. They read only the verified Response and Assertion.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from lxml import etree

from engine.config import Connection
from engine.moments import shifted, stamp
from engine.saml.xml import SAML, child, children, text_of
from engine.token import TokenRejected

BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
_ISSUER = f"{SAML}Issuer"
_SUBJECT = f"{SAML}Subject"
_SUBJECT_CONFIRMATION = f"{SAML}SubjectConfirmation"
_SUBJECT_CONFIRMATION_DATA = f"{SAML}SubjectConfirmationData"
_CONDITIONS = f"{SAML}Conditions"
_AUDIENCE_RESTRICTION = f"{SAML}AudienceRestriction"
_AUDIENCE = f"{SAML}Audience"

_DATETIME = re.compile(
    r"\A(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?\Z"
)


def parse_time(value: str, what: str) -> datetime | None:
    """An xs:dateTime (UTC when no offset; any number of fraction digits) → aware datetime
    in UTC; None when its offset takes it outside the years 1–9999 in UTC."""
    text = value.strip()
    match = _DATETIME.match(text)
    if not match:
        raise TokenRejected("malformed", f"{what}: not a date-time: {value!r}")
    if len(text) == 20 and text[19] == "Z" and text.isascii():
        try:  # the common spelling, YYYY-MM-DDTHH:MM:SSZ: read by datetime itself
            return datetime.fromisoformat(text)
        except ValueError:
            pass  # (say why below)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        stamp = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise TokenRejected("malformed", f"{what}: invalid date-time {value!r}: {exc}") from None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        return shifted(stamp, -sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return stamp


def show(moment: datetime) -> str:
    """A UTC timestamp as SAML writes it."""
    return stamp(moment)


def bearer_data(assertion: etree._Element) -> list[etree._Element]:
    """SubjectConfirmationData of every bearer SubjectConfirmation (may be empty)."""
    found = []
    for subject in assertion.iterchildren(_SUBJECT):
        for confirmation in subject.iterchildren(_SUBJECT_CONFIRMATION):
            if confirmation.get("Method") == BEARER:
                data = child(confirmation, _SUBJECT_CONFIRMATION_DATA)
                if data is not None:
                    found.append(data)
    return found


def check_issuers(
    response: etree._Element | None, assertion: etree._Element, connection: Connection
) -> None:
    """Response Issuer (when present) and Assertion Issuer equal `issuer` exactly."""
    expected = connection.issuer
    pairs = []
    if response is not None:
        node = child(response, _ISSUER)
        if node is not None:
            pairs.append(("Response", text_of(node)))
    pairs.append(("Assertion", text_of(child(assertion, _ISSUER))))
    for where, found in pairs:
        if found != expected:
            raise TokenRejected(
                "wrong-issuer", f'{where} Issuer "{found}" is not the connection\'s "{expected}"'
            )


def check_in_response_to(
    response: etree._Element | None,
    assertion: etree._Element,
    connection: Connection,
    request_id: str | None,
    bearers: list[etree._Element] | None = None,
) -> str | None:
    """Every InResponseTo equals `request_id` when given; one must exist when required.
    Returns the (signed) InResponseTo, if any.

    Only signed data counts (product.md §2): the caller passes `response` only when the
    Response's own signature covers it; the Assertion's bearer SubjectConfirmationData
    is always covered by a verified signature (its own or the Response's). An
    InResponseTo on an unsigned Response is treated as absent. (`bearers`: the
    assertion's `bearer_data`, when the caller has it.)
    """
    values = []
    if response is not None:
        found = response.get("InResponseTo")
        if found is not None:
            values.append(("Response", found))
    for data in bearer_data(assertion) if bearers is None else bearers:
        found = data.get("InResponseTo")
        if found is not None:
            values.append(("SubjectConfirmationData", found))
    if request_id is not None:
        for where, found in values:
            if found != request_id:
                raise TokenRejected(
                    "wrong-request",
                    f'{where} InResponseTo "{found}" is not the request ID "{request_id}"',
                )
    if not values and (request_id is not None or connection.require_in_response_to):
        wanted = f'"{request_id}"' if request_id is not None else "one"
        raise TokenRejected(
            "wrong-request",
            f"expected InResponseTo {wanted}, found none (an unsolicited response)",
        )
    if len({found for _, found in values}) > 1:
        shown = ", ".join(f'{where} "{found}"' for where, found in values)
        raise TokenRejected("wrong-request", f"InResponseTo values differ: {shown}")
    return values[0][1] if values else None


def check_audience(assertion: etree._Element, connection: Connection) -> None:
    """At least one AudienceRestriction, and each one names `audience` exactly."""
    restrictions = children(assertion, _CONDITIONS, _AUDIENCE_RESTRICTION)
    if not restrictions:
        raise TokenRejected(
            "wrong-audience",
            f'audience "{connection.audience}" expected, but the Assertion has no '
            "AudienceRestriction",
        )
    for restriction in restrictions:
        audiences = [text_of(a) for a in restriction.iterchildren(_AUDIENCE)]
        if connection.audience not in audiences:
            listed = ", ".join(f'"{a}"' for a in audiences)
            raise TokenRejected(
                "wrong-audience",
                f'audience "{connection.audience}" not in AudienceRestriction [{listed}]',
            )


def check_recipient(
    response: etree._Element | None,
    assertion: etree._Element,
    connection: Connection,
    bearers: list[etree._Element] | None = None,
) -> None:
    """With `recipient` set: every bearer Recipient, and Destination when present, equal it.
    (`bearers`: the assertion's `bearer_data`, when the caller has it.)"""
    expected = connection.recipient
    if expected is None:
        return
    if response is not None and response.get("Destination") is not None:
        found = response.get("Destination")
        if found != expected:
            raise TokenRejected(
                "wrong-recipient", f'Response Destination "{found}" is not "{expected}"'
            )
    for data in bearer_data(assertion) if bearers is None else bearers:
        found = data.get("Recipient")
        if found is None:
            raise TokenRejected(
                "wrong-recipient",
                f'SubjectConfirmationData has no Recipient; expected "{expected}"',
            )
        if found != expected:
            raise TokenRejected(
                "wrong-recipient",
                f'SubjectConfirmationData Recipient "{found}" is not "{expected}"',
            )


def check_times(
    assertion: etree._Element,
    skew: int,
    now: datetime,
    bearers: list[etree._Element] | None = None,
) -> datetime:
    """Conditions and bearer windows with `skew` seconds; returns the earliest end + skew.

    Not yet valid when now < NotBefore - skew; expired when now >= NotOnOrAfter + skew.
    (`bearers`: the assertion's `bearer_data`, when the caller has it.)
    """
    margin = timedelta(seconds=skew)
    windows: list[tuple[str, etree._Element]] = []
    conditions = child(assertion, _CONDITIONS)
    if conditions is not None:
        windows.append(("Conditions", conditions))
    for data in bearer_data(assertion) if bearers is None else bearers:
        windows.append(("SubjectConfirmationData", data))
    ends: list[datetime] = []
    for where, node in windows:
        text = node.get("NotBefore")
        if text is not None:
            start = parse_time(text, f"{where} NotBefore")
            earliest = None if start is None else shifted(start, -margin)
            if earliest is None:
                raise TokenRejected(
                    "not-yet-valid",
                    f"{where} NotBefore {text} is outside the years 1-9999 once clock_skew "
                    f"({skew} s) is applied",
                )
            if now < earliest:
                assert start is not None
                raise TokenRejected(
                    "not-yet-valid",
                    f"{where} NotBefore is {show(start)}; now is {show(now)} (clock_skew {skew} s)",
                )
        text = node.get("NotOnOrAfter")
        if text is not None:
            end = parse_time(text, f"{where} NotOnOrAfter")
            latest = None if end is None else shifted(end, margin)
            if latest is None:
                raise TokenRejected(
                    "expired",
                    f"{where} NotOnOrAfter {text} is outside the years 1-9999 once clock_skew "
                    f"({skew} s) is applied",
                )
            if now >= latest:
                assert end is not None
                raise TokenRejected(
                    "expired",
                    f"{where} NotOnOrAfter is {show(end)}; now is {show(now)} "
                    f"(clock_skew {skew} s)",
                )
            ends.append(latest)
    return min(ends)
