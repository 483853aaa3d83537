"""The built-in functions of rules-language.md §6: results, edge cases, totality."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.functions import FUNCTIONS, RegexError, compile_regex, parse_template
from rules.values import format_number, plus


def call(name: str, *args: Any) -> Any:
    signature = FUNCTIONS[name]
    converted = [
        compile_regex(a) if signature.params[min(i, len(signature.params) - 1)] == "regex" else a
        for i, a in enumerate(args)
    ]
    return signature.implementation(*converted)


CASES: list[tuple[str, tuple[Any, ...], Any]] = [
    ("lower", ("ÀBC",), "àbc"),
    ("upper", ("straße",), "STRASSE"),
    ("trim", ("  a b \t",), "a b"),
    ("lower", (["A", "B"],), ["a", "b"]),
    ("lower", (None,), None),
    ("lower", ([],), []),
    ("replace", ("a-b-c", "-", "+"), "a+b+c"),
    ("replace", ("abc", "", "x"), "abc"),
    ("replace", (["a.b", "c"], ".", ""), ["ab", "c"]),
    ("substring_before", ("user@example.com", "@"), "user"),
    ("substring_before", ("plain", "@"), "plain"),
    ("substring_before", ("abc", ""), "abc"),
    ("substring_after", ("a=b=c", "="), "b=c"),
    ("substring_after", ("plain", "@"), "plain"),
    ("regex_extract", ("CN=Admins,OU=Apps", r"^CN=([^,]+)"), "Admins"),
    ("regex_extract", ("OU=Apps", r"^CN=([^,]+)"), None),
    ("regex_extract", ("k=v", r"(\w)=(\w)", 2), "v"),
    ("regex_extract", ("k=v", r"(\w)=(\w)", 0), "k=v"),
    ("regex_extract", ("k=v", r"(\w)=(\w)", 3), None),
    ("regex_extract", ("b", r"(a)|b"), None),
    (
        "regex_extract",
        (["CN=a,OU=Apps", "CN=b,OU=Other", "CN=c,OU=Apps"], r"^CN=([^,]+),OU=Apps"),
        ["a", "c"],
    ),
    ("regex_replace", ("john.smith", r"(\w+)\.(\w+)", r"\2, \1"), "smith, john"),
    ("regex_replace", ("a1b22", r"[0-9]+", "#"), "a#b#"),
    ("regex_replace", ("ab", r"(a)", r"\\1"), "\\1b"),
    ("regex_replace", ("ab", r"(a)|(x)", r"[\2]"), "[]b"),
    ("split", ("a,b,,c", ","), ["a", "b", "c"]),
    ("split", ("a,b", ""), ["a,b"]),
    ("split", ("", ","), []),
    ("split", (None, ","), None),
    ("email_local", ("a@b@example.com",), "a@b"),
    ("email_domain", ("a@b@example.com",), "example.com"),
    ("email_local", ("nobody",), None),
    ("email_domain", (["x@a.org", "none"],), ["a.org"]),
    ("dn_value", ("CN=Smith\\, John,OU=People,DC=ex", "CN"), "Smith, John"),
    ("dn_value", ("cn=Admins,ou=Groups", "CN"), "Admins"),
    ("dn_value", ("OU=People,DC=ex", "dc"), "ex"),
    ("dn_value", ("CN=a\\2Bb,OU=x", "cn"), "a+b"),
    ("dn_value", ("CN=Ren\\C3\\A9,OU=x", "CN"), "René"),
    ("dn_value", ("CN=a+UID=b,OU=x", "UID"), "b"),
    ("dn_value", ('CN="a,b",OU=x', "CN"), "a,b"),
    ("dn_value", ("CN=\\#1\\ ,OU=x", "CN"), "#1 "),
    ("dn_value", ("OU=x", "CN"), None),
    ("dn_value", ("garbage", "CN"), None),
    ("ascii", ("José Ñúñez",), "Jose Nunez"),
    ("ascii", ("Straße",), "Strasse"),
    ("ascii", ("Æsir Øre Łódź Đorđe Þór",), "Aesir Ore Lodz Dorde Thor"),
    ("ascii", ("æ ø ł đ þ ß",), "ae o l d th ss"),
    ("ascii", ("日本 x",), " x"),
    ("ascii", ("ﬁ",), "fi"),
    ("truncate", ("héllo", 2), "hé"),
    ("truncate", ("abc", 10), "abc"),
    ("truncate", ("abc", 0), ""),
    ("truncate", ("abc", -1), ""),
    ("truncate", ("abc", None), None),
    ("first", (["a", "b"],), "a"),
    ("first", ([],), None),
    ("first", (None,), None),
    ("last", (["a", "b"],), "b"),
    ("join", (["a", "b"], ", "), "a, b"),
    ("join", ([], ","), None),
    ("join", (["", ""], ","), None),
    ("unique", (["b", "a", "b"],), ["b", "a"]),
    ("sort", (["b", "B", "a"],), ["B", "a", "b"]),
    ("count", (["a", "b"],), 2),
    ("count", (None,), 0),
    ("count", ([],), 0),
    ("starts_with", ("admin-x", "admin"), True),
    ("ends_with", ("x@corp.com", "@corp.com"), True),
    ("starts_with", (None, "x"), None),
    ("number", (" 42 ",), 42),
    ("number", ("-3",), -3),
    ("number", ("2.50",), Decimal("2.50")),
    ("number", ("1e5",), None),
    ("number", ("٣",), None),
    ("number", ("",), None),
    ("number", ("1.",), None),
    ("bool", (" TRUE ",), True),
    ("bool", ("False",), False),
    ("bool", ("yes",), None),
    ("text", (Decimal("2.50"),), "2.5"),
    ("text", (Decimal("2.0"),), "2"),
    ("text", (42,), "42"),
    ("text", (True,), "true"),
    ("text", (False,), "false"),
    ("text", ("x",), "x"),
    ("text", (None,), None),
    ("coalesce", (None, "", [], "x", "y"), "x"),
    ("coalesce", (None, ""), None),
    ("coalesce", ([], ["a"]), ["a"]),
    ("coalesce", (0, 1), 0),
]


@pytest.mark.parametrize(("name", "args", "expected"), CASES)
def test_function(name: str, args: tuple[Any, ...], expected: Any) -> None:
    result = call(name, *args)
    assert result == expected
    assert type(result) is type(expected) or isinstance(expected, list | type(None))


def test_every_function_has_a_case() -> None:
    assert {name for name, _, _ in CASES} == set(FUNCTIONS)


def test_number_is_never_float() -> None:
    assert isinstance(call("number", "2.5"), Decimal)
    assert isinstance(call("number", "2"), int)
    huge = "9" * 5000
    assert call("number", huge) == Decimal(huge)
    assert call("text", call("number", huge)) == huge


def test_numbers_print_and_add_exactly() -> None:
    assert format_number(Decimal("-0.0")) == "0"
    assert format_number(Decimal("10.100")) == "10.1"
    assert plus(Decimal("0.1"), Decimal("0.2")) == Decimal("0.3")
    assert plus(2, Decimal("0.5")) == Decimal("2.5")
    assert plus(None, 1) is None


def test_regex_errors_and_linear_time() -> None:
    with pytest.raises(RegexError):
        compile_regex("(")
    with pytest.raises(RegexError):
        compile_regex(r"(a)\1")  # back-references are not regular: RE2 refuses
    hostile = compile_regex(r"(a+)+$")
    assert call("regex_extract", "a" * 50_000 + "!", r"(a+)+$") is None
    assert not hostile.search("a" * 100_000 + "b")


def test_template() -> None:
    assert parse_template(r"\1-\\-\x") == (1, "-\\-\\x")


SCALARS = st.one_of(
    st.none(),
    st.text(),
    st.integers(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.booleans(),
    st.lists(st.text(), max_size=5),
)


@given(name=st.sampled_from(sorted(FUNCTIONS)), args=st.lists(SCALARS, min_size=1, max_size=4))
def test_functions_are_total(name: str, args: list[Any]) -> None:
    signature = FUNCTIONS[name]
    arity = max(signature.min_args, min(len(args), signature.max_args or len(args)))
    args = (args * 4)[:arity]
    converted: list[Any] = []
    for index, arg in enumerate(args):
        kind = signature.params[min(index, len(signature.params) - 1)]
        converted.append(compile_regex("(x)(y)?") if kind == "regex" else arg)
    result = signature.implementation(*converted)
    if isinstance(result, list) and name != "coalesce":  # coalesce returns an argument
        assert all(isinstance(v, str) and v for v in result)
    assert not isinstance(result, float)


@given(st.text())
def test_ascii_is_ascii_and_lifts(value: str) -> None:
    out = call("ascii", value)
    assert out.isascii()
    assert call("ascii", [value, value]) == [v for v in (out, out) if v]


@given(st.text(), st.text())
def test_split_join_round_trip(value: str, sep: str) -> None:
    pieces = call("split", value, sep)
    assert all(pieces)
    if sep and sep not in value and value:
        assert pieces == [value]


def test_regexes_take_lone_surrogates_and_empty_matches() -> None:
    odd = "a\ud800b"
    assert compile_regex("b").search(odd)
    assert call("regex_extract", odd, "(a.)b") is not None
    assert call("regex_replace", odd, "b", "c") == "a\ud800c"
    assert call("regex_replace", "abc", "x*", "-") == "-a-b-c-"
    assert call("regex_replace", "aaa", "^a", "-") == "-aa"
    assert call("regex_replace", "é", "", "-") == "-é-"
    assert call("regex_extract", "日本語", "(本)", 0) == "本"
