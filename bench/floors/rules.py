"""The rules floor: rules files written by hand as plain Python functions.

One function per rules file the bench evaluates: the demo's `okta.rules`, `entra.rules`
and `shib.rules` (examples/demo/rules), the rules stage's 30-statement file (`REALISTIC`
in bench/bench_rules.py) and the end to end stage's rules (`RULES` in
bench/bench_end_to_end.py). Each takes the attribute bag (name → list of values), the
token's subject and the stored account (None on a first sign-in), as jitprov's
evaluation does, and gives what it decides, in this normalised form:

- `{"denied": message}` when a `deny` (or the missing username of a first sign-in)
  refuses the sign-in;
- otherwise `{"fields": {field: value}, "sets": [(field, kind, values), ...]}`: the final
  value of every single-valued field assigned (None: emptied), and the set operations in
  file order, `kind` one of "replace", "add", "remove", "clear", `values` a tuple of
  distinct values in first-seen order.

jitprov's `Plan` also carries a trace (which line set each field) and the rules skipped,
which these functions do not build: jitprov's figure includes them.

The language's functions are written here by hand (`first`, `lower`, `email_local`,
`dn_value`, `ascii`, `join`, ...), following docs/rules.md. Regular expressions use the
standard library's `re` (jitprov uses RE2): for these patterns the two agree, given that
RE2's `$` is written `\\Z` (Python's `$` also matches before a final newline).

No jitprov code: the standard library only.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

Attributes = Mapping[str, Sequence[str]]
User = Mapping[str, Any] | None
Outcome = dict[str, Any]
SetOps = list[tuple[str, str, tuple[str, ...]]]

_EMPTY: tuple[str, ...] = ()


# --------------------------------------------------------------- the functions


def _first(values: Sequence[str] | None) -> str | None:
    return values[0] if values else None


def _email_local(text: str | None) -> str | None:
    """The part before the last `@`; None without one."""
    if text is None:
        return None
    at = text.rfind("@")
    return None if at < 0 else text[:at]


def _join(parts: Sequence[str | None], separator: str) -> str | None:
    kept = [p for p in parts if p]
    return separator.join(kept) if kept else None


def _stored(user: User, field: str) -> bool:
    """Whether the account holds a value for a single-valued field ("" is none)."""
    if user is None:
        return False
    value = user.get(field)
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | Decimal) and value != ""


_HEX = frozenset("0123456789abcdefABCDEF")


def _dn_components(dn: str) -> list[str]:
    """An LDAP DN's `type=value` components: split at `,`, `;` and `+` outside quotes and
    not escaped by a backslash (escapes are kept for the value to decode)."""
    if "\\" not in dn and '"' not in dn:
        return dn.replace(";", ",").replace("+", ",").split(",")
    components, start, quoted, i = [], 0, False, 0
    while i < len(dn):
        char = dn[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char in ",;+" and not quoted:
            components.append(dn[start:i])
            start = i + 1
        i += 1
    components.append(dn[start:])
    return components


def _dn_decode(raw: str) -> str:
    """A DN value as text: spaces around it dropped (an escaped one kept), quotes
    removed, `\\,`-style escapes and `\\XX` hex pairs (UTF-8 bytes) decoded."""
    raw = raw.lstrip(" ")
    while raw.endswith(" ") and not raw.endswith("\\ "):
        raw = raw[:-1]
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        raw = raw[1:-1]
    if "\\" not in raw:
        return raw
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw):
            if i + 2 < len(raw) and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
                out.append(int(raw[i + 1 : i + 3], 16))
                i += 3
            else:
                out += raw[i + 1].encode("utf-8", "surrogatepass")
                i += 2
            continue
        out += raw[i].encode("utf-8", "surrogatepass")
        i += 1
    return out.decode("utf-8", "replace")


def _dn_value(dn: str, wanted: str) -> str | None:
    """The value of the first component of type `wanted` (given case-folded)."""
    for component in _dn_components(dn):
        name, equals, raw = component.partition("=")
        if equals and name.strip().casefold() == wanted:
            return _dn_decode(raw) or None
    return None


_TRANSLITERATION = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "ø": "o",
        "ł": "l",
        "đ": "d",
        "þ": "th",
        "Æ": "Ae",
        "Ø": "O",
        "Ł": "L",
        "Đ": "D",
        "Þ": "Th",
    }
)


def _ascii(text: str) -> str:
    """Letters without their accents (ß → ss and the like), anything else not ASCII
    dropped."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATION))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def _distinct(values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _no_username(user: User, fields: Mapping[str, Any]) -> bool:
    return user is None and not fields.get("username")


_NO_USERNAME = {"denied": "no rule produced a value for username"}


# -------------------------------------------------------- examples/demo/rules/okta.rules

_TEAM_GROUP = re.compile(r"^(eng|sales|ops)-")
_OKTA_DEPARTMENTS = {"Engineering": "engineering", "R&D": "engineering", "Sales": "sales"}
_OKTA_DENY_MAIL = {"denied": "no e-mail address in the assertion"}
_OKTA_DENY_CONTRACTOR = {"denied": "contractors are not provisioned"}


def okta(attributes: Attributes, subject: str | None, user: User) -> Outcome:
    """examples/demo/rules/okta.rules."""
    get = attributes.get
    emails = get("email")
    mail = emails[0].lower() if emails else None
    dept = _first(get("department"))
    if mail is None:
        return _OKTA_DENY_MAIL
    if any(kind.lower() == "contractor" for kind in get("employeeType") or _EMPTY):
        return _OKTA_DENY_CONTRACTOR
    fields: dict[str, Any] = {}
    username = _email_local(mail)
    if username:
        fields["username"] = username
    if mail:
        fields["email"] = mail
    given, family = _first(get("firstName")), _first(get("lastName"))
    if given:
        fields["given_name"] = given
    if family:
        fields["family_name"] = family
    display = _join((given, family), " ")
    if display:
        fields["display_name"] = display
    employee_id = _first(get("employeeNumber"))
    if employee_id:
        fields["employee_id"] = employee_id
    fields["department"] = _OKTA_DEPARTMENTS.get(dept, "other")  # type: ignore[arg-type]
    groups = _distinct(g.lower() for g in get("groups") or _EMPTY if _TEAM_GROUP.search(g))
    sets: SetOps = [("groups", "replace", groups), ("groups", "add", ("everyone",))]
    if user is None:  # rule "first login defaults" on create
        fields["active"] = True
        sets.append(("roles", "replace", ("viewer",)))
    if dept == "Engineering":  # rule "engineers get the developer role"
        sets.append(("roles", "add", ("developer",)))
    if "display_name" not in fields and not _stored(user, "display_name") and subject:
        fields["display_name"] = subject
    if _no_username(user, fields):
        return _NO_USERNAME
    return {"fields": fields, "sets": sets}


# ------------------------------------------------------- examples/demo/rules/entra.rules

_CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
_MS_CLAIMS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/"
_ENTRA_DEPARTMENTS = {"R&D": "rnd", "Finance": "finance"}
_ENTRA_DENY = {"denied": "no user principal name in the token"}


def entra(attributes: Attributes, subject: str | None, user: User) -> Outcome:
    """examples/demo/rules/entra.rules."""
    get = attributes.get
    names = get(_CLAIMS + "name")
    upn = names[0].lower() if names else None
    mails = get(_CLAIMS + "emailaddress")
    mail = (mails[0].lower() if mails else None) or upn
    given = _first(get(_CLAIMS + "givenname"))
    surname = _first(get(_CLAIMS + "surname"))
    dept = _first(get(_MS_CLAIMS + "department"))
    admin = "5f3c0e1a-admins" in (get(_MS_CLAIMS + "groups") or _EMPTY)
    if upn is None:
        return _ENTRA_DENY
    fields: dict[str, Any] = {}
    at = upn.find("@")
    username = _ascii(upn if at < 0 else upn[:at])
    if username:
        fields["username"] = username
    if mail:
        fields["email"] = mail
    if given:
        fields["given_name"] = given
    if surname:
        fields["family_name"] = surname
    display = _join((given, surname), " ") or upn
    if display:
        fields["display_name"] = display
    fields["department"] = _ENTRA_DEPARTMENTS.get(dept, "general")  # type: ignore[arg-type]
    sets: SetOps = [("groups", "replace", ("staff",))]
    if admin:  # rule "tenant administrators"
        sets.append(("groups", "add", ("admins",)))
        sets.append(("roles", "add", ("admin",)))
    if user is not None and "leaver" in (get(_MS_CLAIMS + "role") or _EMPTY):
        fields["active"] = False  # rule "leavers lose access" on update
        sets.append(("roles", "clear", _EMPTY))
    if _no_username(user, fields):
        return _NO_USERNAME
    return {"fields": fields, "sets": sets}


# -------------------------------------------------------- examples/demo/rules/shib.rules

_MAIL = "urn:oid:0.9.2342.19200300.100.1.3"
_EPPN = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"
_AFFILIATION = "urn:oid:1.3.6.1.4.1.5923.1.1.1.9"
_ENTITLEMENT = "urn:oid:1.3.6.1.4.1.5923.1.1.1.7"
_ENTITLEMENT_VALUE = re.compile(r"^urn:mace:university\.example:(.+)\Z")
_SHIB_DENY = {"denied": "only members of the university may sign in"}


def shib(attributes: Attributes, subject: str | None, user: User) -> Outcome:
    """examples/demo/rules/shib.rules."""
    get = attributes.get
    mails = get(_MAIL)
    mail = mails[0].lower() if mails else None
    eppn = _first(get(_EPPN))
    if "member@university.example" not in (get(_AFFILIATION) or _EMPTY):
        return _SHIB_DENY
    fields: dict[str, Any] = {}
    username = _email_local(eppn or mail)
    if username:
        fields["username"] = username
    if mail:
        fields["email"] = mail
    given, family = _first(get("urn:oid:2.5.4.42")), _first(get("urn:oid:2.5.4.4"))
    if given:
        fields["given_name"] = given
    if family:
        fields["family_name"] = family
    search = _ENTITLEMENT_VALUE.search
    entitlements = _distinct(
        found.group(1) for e in get(_ENTITLEMENT) or _EMPTY if (found := search(e))
    )
    sets: SetOps = [("entitlements", "replace", entitlements)]
    if not _stored(user, "cost_center"):
        cost_center = _first(get("urn:oid:2.16.840.1.113730.3.1.2"))
        if cost_center:
            fields["cost_center"] = cost_center
    if _no_username(user, fields):
        return _NO_USERNAME
    return {"fields": fields, "sets": sets}


# ------------------------------------- the rules stage's 30 statements (bench_rules.REALISTIC)

_APPS = re.compile(r"(?i)OU=Apps,")
_ADMINS = re.compile(r"(?i)^CN=Admins,")
_DEPARTMENTS = {
    "Engineering": "engineering",
    "R&D": "engineering",
    "Sales": "sales",
    "Support": "support",
}
_DENY_MAIL = {"denied": "no e-mail address in the assertion"}
_DENY_CONTRACTOR = {"denied": "contractors are not provisioned"}
_DENY_DOMAIN = {"denied": "only example.com accounts"}


def realistic(attributes: Attributes, subject: str | None, user: User) -> Outcome:
    """bench/bench_rules.py's REALISTIC: 30 statements, five rules."""
    get = attributes.get
    emails = get("email") or get("urn:oid:0.9.2342.19200300.100.1.3")
    mail = emails[0].lower() if emails else None
    dept = _first(get("department")) or "unknown"
    given, family = _first(get("givenName")), _first(get("sn"))
    member_of = get("memberOf") or _EMPTY
    apps = [cn for g in member_of if _APPS.search(g) if (cn := _dn_value(g, "cn"))]
    if mail is None:
        return _DENY_MAIL
    if "contractor" in (get("employeeType") or _EMPTY):
        return _DENY_CONTRACTOR
    if not mail.endswith("@example.com"):
        return _DENY_DOMAIN
    fields: dict[str, Any] = {}
    username = _email_local(mail)
    if username:
        fields["username"] = username
    if mail:
        fields["email"] = mail
    if given:
        fields["given_name"] = given
    if family:
        fields["family_name"] = family
    display = _first(get("displayName")) or _join((given, family), " ")
    if display:
        fields["display_name"] = display
    fields["department"] = _DEPARTMENTS.get(dept, "other")
    fields["employee_id"] = _first(get("employeeNumber")) or None
    sets: SetOps = [("groups", "add", ("everyone",))]
    if apps:
        sets.append(("groups", "add", _distinct(apps)))
    sets.append(("groups", "remove", ("legacy",)))
    if user is None:  # rule "first login defaults" on create
        fields["active"] = True
        sets.append(("roles", "replace", ("viewer",)))
    if dept == "Engineering":  # rule "engineers"
        sets.append(("roles", "add", ("developer",)))
        sets.append(("groups", "add", ("eng",)))
    if "manager" in (get("title") or _EMPTY):  # rule "managers"
        sets.append(("roles", "add", ("approver",)))
    if any(_ADMINS.search(g) for g in member_of):  # rule "admins"
        sets.append(("roles", "add", ("admin",)))
    if user is not None:  # rule "returning" on update
        fields["active"] = True
    if "display_name" not in fields and not _stored(user, "display_name") and subject:
        fields["display_name"] = subject
    if _no_username(user, fields):
        return _NO_USERNAME
    return {"fields": fields, "sets": sets}


# ------------------------------------------ the end to end stage's rules (bench_end_to_end)

_DENY_NO_MAIL = {"denied": "no e-mail address"}


def end_to_end(attributes: Attributes, subject: str | None, user: User) -> Outcome:
    """bench/bench_end_to_end.py's RULES."""
    get = attributes.get
    emails = get("email")
    mail = emails[0].lower() if emails else None
    if mail is None:
        return _DENY_NO_MAIL
    fields: dict[str, Any] = {}
    username = _email_local(mail)
    if username:
        fields["username"] = username
    if mail:
        fields["email"] = mail
    display = _join((_first(get("givenName")), _first(get("sn"))), " ")
    if display:
        fields["display_name"] = display
    fields["department"] = _first(get("department")) or "unknown"
    groups = _distinct(
        cn.lower()
        for g in get("memberOf") or _EMPTY
        if _APPS.search(g)
        if (cn := _dn_value(g, "cn"))
    )
    sets: SetOps = [("groups", "replace", groups), ("groups", "add", ("everyone",))]
    if _no_username(user, fields):
        return _NO_USERNAME
    return {"fields": fields, "sets": sets}


# Each demo rules file's function, by connection (examples/demo/jitprov.toml).
DEMO = {"okta": okta, "entra": entra, "shib": shib}
