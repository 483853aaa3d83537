"""Fuzz target `rules`: any text through the rules language's front door.

`check`, `compile_rules`, `format_source` and, for a program that compiles, evaluation
by the generated evaluator and by the reference evaluator, for a creation and an update.

Invariants (rules/__init__.py, rules/format.py, rules-language.md §9–§10): nothing
raises, except `format_source`'s FormatError for text that does not parse; problems are
diagnostics, each with a code, a severity and a span inside the text, and they render;
`check` and `compile_rules` give the same diagnostics, and compile exactly when there is
no error; a program that parses formats to text that parses to the same program with
no diagnostic and the same comments, and formats to itself again; the two evaluators
give equal plans. Each call stays within 50 ms of CPU and 64 MiB.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any, cast

from rules import CompileResult, Context, FormatError, compile_rules, format_source, parse, render
from rules import check as check_rules
from rules.diagnostics import Diagnostic, SourceMap
from rules.vocabulary import FieldType
from tests.fuzz.harness import FUZZ_LIMITS, ROOT, Finding, Limits, run

NAME = "rules"
# The fields of tests/rules/cases.toml: the built-ins plus one of each type.
FIELDS: dict[str, FieldType] = {
    "department": "text",
    "employee_id": "text",
    "entitlements": "set",
    "level": "number",
    "vip": "bool",
}
ATTRIBUTES = ("email", "groups", "department", "memberOf", "displayName", "employeeType")
TOKEN = {
    "email": ["Ada.Lovelace@Example.com"],
    "groups": ["eng-core", "Sales", "", "CN=eng,OU=Apps,DC=example,DC=com"],
    "department": ["Engineering"],
    "memberOf": ["CN=vpn,OU=Net,DC=example,DC=com"],
    "displayName": ["Ada Lovelace"],
    "employeeType": ["employee", "contractor"],
    "level": ["3.50"],
    "address.country": ["NL"],
}
CONTEXT = Context(
    subject="Ada.Lovelace@Example.com",
    subject_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    issuer="http://www.okta.com/exk1demo",
    connection="okta",
    authn_context="urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
)
USER: dict[str, Any] = {
    "username": "ada",
    "email": "ada@example.com",
    "department": "sales",
    "level": 2,
    "vip": False,
    "groups": ["old", "eng-core"],
    "roles": ["viewer"],
    "entitlements": [],
}
_CODE = re.compile(r"[EW]\d{3}\Z")


def check(data: bytes, limits: Limits = FUZZ_LIMITS) -> None:
    """The front door on `data` as UTF-8 text; raise Finding when an invariant breaks."""
    check_text(data.decode("utf-8", "replace"), limits)


def check_text(text: str, limits: Limits = FUZZ_LIMITS) -> None:
    """The front door on `text`; raise Finding when an invariant breaks."""

    def fail(key: str, detail: str) -> Finding:
        return Finding(NAME, "invariant", detail, key)

    def measured(what: str, fn: Callable[[], object], *allowed: type[Exception]) -> object:
        return run(NAME, what, fn, limits=limits, allowed=allowed).value

    diagnostics = cast(
        list[Diagnostic],
        measured("check", lambda: check_rules(text, FIELDS, attributes=ATTRIBUTES)),
    )
    compiled = cast(
        CompileResult,
        measured("compile_rules", lambda: compile_rules(text, FIELDS, attributes=ATTRIBUTES)),
    )
    _check_diagnostics(text, diagnostics, fail)
    if compiled.diagnostics != diagnostics:
        raise fail("check-vs-compile", "check and compile_rules give different diagnostics")
    has_errors = any(d.severity == "error" for d in diagnostics)
    if compiled.ok == has_errors:
        raise fail("ok", f"compiled {compiled.ok} with errors {has_errors}")

    program, syntax = parse(text)
    if (program is None) != any(d.severity == "error" for d in syntax):
        raise fail("parse", "parse gave no program without a syntax error, or both")
    formatted = measured("format_source", lambda: format_source(text), FormatError)
    if program is None:
        if formatted is not None:
            raise fail("format", "formatted text that does not parse")
    else:
        if not isinstance(formatted, str):
            raise fail("format", "format_source raised FormatError on a program that parses")
        again, problems = parse(formatted)
        if problems or again is None:
            first = problems[0].message if problems else ""
            raise fail("format-reparse", f"the formatted text does not parse: {first}")
        if again != program:
            raise fail("format-meaning", "the formatted text parses to another program")
        before = sorted(c.text.rstrip() for c in program.comments)
        if sorted(c.text.rstrip() for c in again.comments) != before:
            raise fail("format-comments", "formatting lost or changed a comment")
        if format_source(formatted) != formatted:
            raise fail("format-idempotent", "formatting the formatted text changes it")

    rules = compiled.rules
    if rules is None:
        return
    for label, user in (("create", None), ("update", USER)):
        fast = measured(
            f"evaluate({label})", functools.partial(rules.evaluate, TOKEN, CONTEXT, user)
        )
        slow = rules.evaluate_reference(TOKEN, CONTEXT, user)
        if fast != slow:
            raise fail(f"evaluate-{label}", f"the evaluators differ ({label}): {fast} != {slow}")


def _check_diagnostics(
    text: str, diagnostics: list[Diagnostic], fail: Callable[[str, str], Finding]
) -> None:
    source = SourceMap(text)
    for d in diagnostics:
        if d.severity not in ("error", "warning") or not _CODE.match(d.code) or not d.message:
            raise fail("diagnostic", f"a diagnostic without severity, code or message: {d}")
        if not 0 <= d.span.start <= len(text) or not d.span.start <= d.span.end <= len(text):
            raise fail("span", f"{d.code} span {d.span} outside the text ({len(text)})")
        try:
            render(d, source, "fuzz.rules")
            d.to_json(source, "fuzz.rules")
        except Exception as exc:
            raise fail("render", f"{d.code} does not render: {exc!r}") from exc


# ----------------------------------------------------------------- seeds and hostile


def seeds() -> Iterator[bytes]:
    """Golden sources, the demo's rules, the language cases' sources, the reference's
    example, and HOSTILE."""
    import tomllib

    for folder in (ROOT / "tests" / "rules" / "golden", ROOT / "examples" / "demo" / "rules"):
        for path in sorted(folder.rglob("*.rules")):
            yield path.read_bytes()
    cases = tomllib.loads((ROOT / "tests" / "rules" / "cases.toml").read_text(encoding="utf-8"))
    for case in cases.get("case", []):
        yield case["source"].encode("utf-8")
    docs = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    for block in re.findall(r"```(?:rules)?\n(.*?)```", docs, re.S):
        yield block.encode("utf-8")
    for make in HOSTILE.values():
        yield make()


HOSTILE: dict[str, Callable[[], bytes]] = {
    "deep-parentheses": lambda: b"x = " + b"(" * 3000 + b"1" + b")" * 3000,
    "long-chain": lambda: b"display_name = " + b' + "a"' * 3000,
    "deep-if": lambda: b"x = " + b"if true then " * 500 + b"1" + b" else 2" * 500,
    "unterminated-string": lambda: b'username = "abc\n' * 200,
    "nul-and-controls": lambda: b'username = "\x00\x01"\n# \x00\ngroups += "\x7f"',
    "lone-cr": lambda: b'username = "a"\r\remail = "b"\r# c\r',
    "catastrophic-regex": lambda: (
        b'groups = [g for g in @groups if g matches "(a+)+$"]\nusername = "u"'
    ),
}
