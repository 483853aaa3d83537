"""A rules file cannot reach Python: tricks are compile errors or inert text.

The compiler generates Python source; these tests hold it to its promise that the source
contains no user text at all (no string or number literals, no user names) and runs
with no builtins.
"""

from __future__ import annotations

import io
import keyword
import re
import tokenize

import pytest

from rules import Context, check, compile_rules, parse
from rules.check import check_program, merged_fields
from rules.compile import HELPERS, generate
from rules.diagnostics import SourceMap

OWN_NAME = re.compile(r"^_[a-z]+\d*$")
ALLOWED_NAMES = {*HELPERS, "A", "C", "U", "p", "_evaluate"}
# Methods of str, dict and list the generated code calls: only ever after a `.`.
METHODS = {"get", "append", "sort", "remove", "lower", "upper", "strip", "rfind", "join"}
METHODS |= {"startswith", "endswith", "isascii"}
# A comment: the rules line and its statement as names, operators and parameter names;
# never a quote, a backslash or anything but printable ASCII.
COMMENT = re.compile(r"^# [A-Za-z0-9_ @.,()\[\]{}=<>!?:;+*-]*$")


def generated(source: str) -> str:
    program, errors = parse(source)
    assert program is not None, errors
    result = check_program(program, SourceMap(source), merged_fields(None))
    assert result.ok, result.diagnostics
    code, _ = generate(program, result.types, merged_fields(None), SourceMap(source))
    return code


def assert_only_own_tokens(code: str) -> None:
    """Every name is ours, a keyword or (after a dot) one of `METHODS`; the only
    literals are the indices 0 and 1; comments hold no literal text."""
    previous = None
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.NAME:
            after_dot = previous is not None and previous.string == "."
            assert (
                keyword.iskeyword(token.string)
                or token.string in ALLOWED_NAMES
                or OWN_NAME.match(token.string)
                or (after_dot and token.string in METHODS)
            ), token.string
        assert token.type != tokenize.STRING, token.string
        if token.type == tokenize.NUMBER:
            assert token.string in ("0", "1"), token.string
        if token.type == tokenize.COMMENT:
            assert COMMENT.match(token.string), token.string
        if token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            previous = token


COMPILE_ERRORS = [
    'username = __import__("os")',
    'username = eval("1")',
    'username = first(@uid)\nemail = getattr(subject, "__class__")',
    "username = user.__class__",
    "username = __class__",
    'username = first(@uid)\n__class__ = "x"',
    'username = first(@uid)\nlet __builtins__ = "x"\nemail = __builtins__ ?? open("f")',
    "username = ().__class__",
    'username = "".__class__',
    "username = first(@uid).__class__",
    'username = "x"; import os',
    'username = "\\x41"',
    "username = first(@uid)\n__import__('os')",
    'username = "a" "b"',
    "username = lambda: 1",
]


@pytest.mark.parametrize("source", COMPILE_ERRORS)
def test_tricks_are_compile_errors(source: str) -> None:
    diagnostics = check(source)
    assert any(d.severity == "error" for d in diagnostics), source
    assert compile_rules(source).rules is None


INERT = [
    ('username = "\\"); import os; (\\""', '"); import os; ("'),
    ('username = "{0.__class__}"', "{0.__class__}"),
    ('username = "{__import__}" + "%s"', "{__import__}%s"),
    ('username = r"\\" + "\\\\"', "\\\\"),
    ('username = "\\u0027); __import__(\\u0027os"', "'); __import__('os"),
    ('username = first(@"__builtins__") ?? "none"', "builtin-value"),
    ('username = first(@x.__dict__) ?? "none"', "none"),
    ('let __class__x = "v"\nusername = __class__x', "v"),
    ("username = \"__import__('os').system('true')\"", "__import__('os').system('true')"),
]


@pytest.mark.parametrize(("source", "expected"), INERT)
def test_hostile_text_is_inert(source: str, expected: str) -> None:
    result = compile_rules(source)
    assert result.rules is not None, result.diagnostics
    attributes = {"__builtins__": ["builtin-value"], "x": ["not this"]}
    plan = result.rules.evaluate(attributes, Context(), None)
    assert plan.fields["username"] == expected
    assert_only_own_tokens(generated(source))


def test_generated_code_has_no_builtins() -> None:
    result = compile_rules('username = first(@uid) ?? "x"')
    assert result.rules is not None
    evaluate = result.rules._evaluator
    assert evaluate.__globals__["__builtins__"] == {}
    names = set(evaluate.__globals__) - {"__builtins__", "_evaluate"}
    assert all(OWN_NAME.match(name) or name in HELPERS for name in names), names


def test_spec_example_generates_only_own_tokens() -> None:
    source = """
let mail = lower(first(@email ?? @"urn:oid:0.9.2342.19200300.100.1.3"))
deny "no e-mail address" when mail == null
username = email_local(mail)
given_name = match first(@department) { "R&D" => "engineering" else => "other" }
display_name = match mail { "x" => mail + "!" else => subject }
groups += [dn_value(g, "CN") for g in @memberOf if g matches "(?i)OU=Apps,"]
rule "first login" on create when 2.5 > 1 { active = true }
"""
    assert_only_own_tokens(generated(source))


def test_hostile_attribute_and_context_values_are_data() -> None:
    result = compile_rules('username = first(@uid) + subject\ngroups = @g + ["{0}"]')
    assert result.rules is not None
    values = ["__import__('os')", "{0.__class__}", "\\", '"', "\x00", "\ud800"]
    plan = result.rules.evaluate(
        {"uid": values, "g": values}, Context(subject="'); import os #"), None
    )
    assert plan.fields["username"] == "__import__('os')'); import os #"
    assert plan.set_ops[0].values == (*values, "{0}")


HOSTILE = [
    'x"); __import__("os").system("true"); ("',
    "two\nlines",
    "back\\slash",
    "{0.__class__}",
    "%s%r'",
    "# looks like a comment",
    "__builtins__['eval']",
]


def rules_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@pytest.mark.parametrize("specialise", [True, False])
def test_no_literal_text_reaches_the_source(specialise: bool) -> None:
    """Strings, messages, rule names, attribute names, match patterns, regexes and list
    members hostile to Python all become parameters; none appears in the source, not
    even in a comment."""
    lines = ['let mail = first(@email) ?? ""']
    for index, text in enumerate(HOSTILE):
        s = rules_string(text)
        lines += [
            f"deny {s} when first(@{s}) == {s}",
            f"rule {rules_string(text + str(index))} when {s} in @{s} {{",
            f"    groups += [{s}, lower({s})]",
            f"    display_name = match mail {{ {s} => {s} + mail else => join([{s}], {s}) }}",
            "}",
            f"given_name = dn_value(mail, {s}) ?? substring_before(mail, {s})",
        ]
    lines += [
        'username = if mail matches r"__import__\\(.os.\\)" then "a" else "b"',
        'roles += [x for x in @memberOf if x matches r"(?i)^cn=__import__,"]',
        'family_name = regex_extract(mail, r"^__builtins__:(.+)$")',
    ]
    source = "\n".join(lines) + "\n"
    result = compile_rules(source, specialise=specialise)
    assert result.rules is not None, result.diagnostics
    code = result.rules.python_source
    assert code is not None
    assert_only_own_tokens(code)
    for text in [*HOSTILE, "__import__", "__builtins__", "email", "memberOf"]:
        assert text not in code, text
    plan = result.rules.evaluate({"email": [HOSTILE[0]], HOSTILE[1]: ["x"]}, Context(), None)
    assert plan == result.rules.evaluate_reference(
        {"email": [HOSTILE[0]], HOSTILE[1]: ["x"]}, Context(), None
    )
