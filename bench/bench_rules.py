"""Rules benchmarks: compiled evaluation against hand-written Python, and check latency.

(a) A realistic 30-statement rules file evaluated on a realistic token, against a
    hand-written Python function producing the very same Plan (target ratio ≤ 1.5).
(b) `check` (parse + check) of dense 50-, 500- and 5,000-line files against a 100 ms
    budget (the baseline is the budget itself: a ratio ≤ 1 meets it).

Run standalone: `python -m bench.bench_rules [--quick]`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from bench.harness import Comparison, Stats, measure
from rules import Context, Plan, SetOp, SourceMap, TraceEntry, check, compile_rules, parse
from rules.check import check_program, merged_fields
from rules.functions import FUNCTIONS, compile_regex
from rules.plan import Scalar, Skipped
from rules.vocabulary import FieldType

FIELDS: dict[str, FieldType] = {"department": "text", "employee_id": "text"}

REALISTIC = """\
# Okta → our user store: a realistic mapping
let mail   = lower(first(@email ?? @"urn:oid:0.9.2342.19200300.100.1.3"))
let dept   = first(@department) ?? "unknown"
let given  = first(@givenName)
let family = first(@sn)
let apps   = [dn_value(g, "CN") for g in @memberOf if g matches "(?i)OU=Apps,"]

deny "no e-mail address in the assertion" when mail == null
deny "contractors are not provisioned"     when "contractor" in @employeeType
deny "only example.com accounts"           when not ends_with(mail, "@example.com")

username     = email_local(mail)
email        = mail
given_name   = given
family_name  = family
display_name = first(@displayName) ?? join([given, family], " ")
department   = match dept {
    "Engineering", "R&D" => "engineering"
    "Sales"              => "sales"
    "Support"            => "support"
    else                 => "other"
}
employee_id := first(@employeeNumber)
groups += "everyone"
groups += apps
groups -= "legacy"

rule "first login defaults" on create {
    active = true
    roles  = ["viewer"]
}
rule "engineers" when dept == "Engineering" {
    roles  += "developer"
    groups += "eng"
}
rule "managers" when "manager" in @title {
    roles += "approver"
}
rule "admins" when @memberOf matches "(?i)^CN=Admins," {
    roles += "admin"
}
rule "returning" on update {
    active = true
}
display_name ?= subject
"""

TOKEN: dict[str, list[str]] = {
    "email": ["Ann.Lee@Example.com"],
    "department": ["Engineering"],
    "givenName": ["Ann"],
    "sn": ["Lee"],
    "displayName": ["Ann Lee"],
    "employeeNumber": ["E-10442"],
    "employeeType": ["staff"],
    "title": ["Senior Engineer", "manager"],
    "memberOf": [f"CN=App{i},OU=Apps,DC=example,DC=com" for i in range(8)]
    + [f"CN=Team{i},OU=Groups,DC=example,DC=com" for i in range(12)]
    + ["CN=Admins,OU=Groups,DC=example,DC=com"],
    "locale": ["en-US"],
    "phone": ["+1 555 0100"],
}
CONTEXT = Context(subject="00u1abcd", issuer="https://example.okta.com", connection="okta")

# ---------------------------------------------------------- the hand-written twin

_APPS = compile_regex("(?i)OU=Apps,")
_ADMINS = compile_regex("(?i)^CN=Admins,")
_DN_VALUE = FUNCTIONS["dn_value"].scalar
assert _DN_VALUE is not None
_DEPARTMENTS = {"Engineering": "engineering", "R&D": "engineering", "Sales": "sales"}
_DEPARTMENTS["Support"] = "support"
_T = {
    key: TraceEntry(key.rstrip("2?"), line, rule, op)
    for key, line, rule, op in [
        ("username", 12, None, "="),
        ("email", 13, None, "="),
        ("given_name", 14, None, "="),
        ("family_name", 15, None, "="),
        ("display_name", 16, None, "="),
        ("department", 17, None, "="),
        ("employee_id", 23, None, ":="),
        ("display_name?", 45, None, "?="),
        ("active", 29, "first login defaults", "="),
        ("active2", 43, "returning", "="),
    ]
}


def hand_written(
    attributes: Mapping[str, Sequence[str]],
    context: Context,
    user: Mapping[str, Scalar | Sequence[str]] | None,
) -> Plan:
    """What a careful engineer would write by hand for REALISTIC (same Plan, same trace)."""
    skipped: list[Skipped] = []
    emails = attributes.get("email") or attributes.get("urn:oid:0.9.2342.19200300.100.1.3")
    mail = emails[0].lower() if emails else None
    departments = attributes.get("department")
    dept = departments[0] if departments else "unknown"
    given_names, family_names = attributes.get("givenName"), attributes.get("sn")
    given = given_names[0] if given_names else None
    family = family_names[0] if family_names else None
    member_of = attributes.get("memberOf") or ()
    apps = [v for g in member_of if _APPS.search(g) if (v := _DN_VALUE(g, "CN"))]
    if mail is None:
        return Plan(denied="no e-mail address in the assertion", deny_line=8, skipped=skipped)
    if "contractor" in (attributes.get("employeeType") or ()):
        return Plan(denied="contractors are not provisioned", deny_line=9, skipped=skipped)
    if not mail.endswith("@example.com"):
        return Plan(denied="only example.com accounts", deny_line=10, skipped=skipped)
    fields: dict[str, Scalar] = {}
    trace: list[TraceEntry] = []
    at = mail.rfind("@")
    if at >= 0 and mail[:at]:
        fields["username"] = mail[:at]
        trace.append(_T["username"])
    fields["email"] = mail
    trace.append(_T["email"])
    if given:
        fields["given_name"] = given
        trace.append(_T["given_name"])
    if family:
        fields["family_name"] = family
        trace.append(_T["family_name"])
    display_names = attributes.get("displayName")
    parts = [p for p in (given, family) if p]
    display = display_names[0] if display_names else (" ".join(parts) if parts else None)
    if display:
        fields["display_name"] = display
        trace.append(_T["display_name"])
    fields["department"] = _DEPARTMENTS.get(dept, "other")
    trace.append(_T["department"])
    numbers = attributes.get("employeeNumber")
    fields["employee_id"] = numbers[0] if numbers else None
    trace.append(_T["employee_id"])
    ops = [SetOp("groups", "add", ("everyone",), 24, None)]
    trace.append(TraceEntry("groups", 24, None, "+="))
    if apps:
        ops.append(SetOp("groups", "add", tuple(dict.fromkeys(apps)), 25, None))
        trace.append(TraceEntry("groups", 25, None, "+="))
    ops.append(SetOp("groups", "remove", ("legacy",), 26, None))
    trace.append(TraceEntry("groups", 26, None, "-="))
    if user is None:
        fields["active"] = True
        ops.append(SetOp("roles", "replace", ("viewer",), 30, "first login defaults"))
        trace += [_T["active"], TraceEntry("roles", 30, "first login defaults", "=")]
    else:
        skipped.append(Skipped("first login defaults", 28, "on create: the account already exists"))
    if dept == "Engineering":
        ops.append(SetOp("roles", "add", ("developer",), 33, "engineers"))
        ops.append(SetOp("groups", "add", ("eng",), 34, "engineers"))
        trace += [
            TraceEntry("roles", 33, "engineers", "+="),
            TraceEntry("groups", 34, "engineers", "+="),
        ]
    else:
        skipped.append(Skipped("engineers", 32, "when condition was false"))
    if "manager" in (attributes.get("title") or ()):
        ops.append(SetOp("roles", "add", ("approver",), 37, "managers"))
        trace.append(TraceEntry("roles", 37, "managers", "+="))
    else:
        skipped.append(Skipped("managers", 36, "when condition was false"))
    if any(_ADMINS.search(g) for g in member_of):
        ops.append(SetOp("roles", "add", ("admin",), 40, "admins"))
        trace.append(TraceEntry("roles", 40, "admins", "+="))
    else:
        skipped.append(Skipped("admins", 39, "when condition was false"))
    if user is not None:
        fields["active"] = True
        trace.append(_T["active2"])
    else:
        skipped.append(Skipped("returning", 42, "on update: the account does not exist yet"))
    stored_name = user.get("display_name") if user else None
    if "display_name" not in fields and not stored_name and context.subject:
        fields["display_name"] = context.subject
        trace.append(_T["display_name?"])
    if user is None and not fields.get("username"):
        return Plan(denied="no rule produced a value for username", skipped=skipped)
    trace.sort(key=lambda entry: entry.line)
    return Plan(fields=fields, set_ops=ops, trace=trace, skipped=skipped)


# ------------------------------------------------------------------ check input


def dense_file(lines: int, salt: str = "") -> str:
    """A dense rules file of about `lines` lines: blocks of the realistic statements.

    A different `salt` changes every block's names, so no statement is in the parser's
    per-statement cache (a cold check, as on opening a file)."""
    out: list[str] = ["username = email_local(lower(first(@email)))"]
    block = 0
    while len(out) < lines:
        block += 1
        b = f"{block}{salt}"
        out += [
            f"let mail{b} = lower(first(@email ?? @mail{b}))",
            f'let dept{b} = first(@department) ?? "unknown"',
            f'deny "no mail {b}" when mail{b} == null and "x" in @flag{b}',
            f'display_name = first(@displayName) ?? join([first(@givenName), mail{b}], " ")',
            f'department = match dept{b} {{ "Eng", "R&D" => "eng" "Sales" => "sales" else => "x" }}',
            f'groups += [dn_value(g{b}, "CN") for g{b} in @memberOf if g{b} matches "(?i)OU=A,"]',
            f'rule "r{b}" when dept{b} == "Engineering" {{',
            f'    roles += "developer{b}"',
            f"    email = mail{b}",
            "}",
        ]
    return "\n".join(out) + "\n"  # whole blocks: a few lines over `lines`


def _budget(ms: float) -> Stats:
    return Stats(ms * 1e6, ms * 1e6, 1)


def run(quick: bool) -> list[Comparison]:
    """Both comparisons; `quick` uses fewer rounds and skips the 5,000-line file."""
    result = compile_rules(REALISTIC, FIELDS)
    assert result.rules is not None, result.diagnostics
    rules = result.rules
    for user in (None, {"username": "ann.lee", "display_name": "Ann"}):
        ours, theirs = rules.evaluate(TOKEN, CONTEXT, user), hand_written(TOKEN, CONTEXT, user)
        assert ours == theirs, (ours, theirs)
    rounds, number = (15, 200) if quick else (40, 1000)
    evaluate = rules.evaluate
    compiled = measure(lambda: evaluate(TOKEN, CONTEXT, None), rounds=rounds, number=number)
    baseline = measure(lambda: hand_written(TOKEN, CONTEXT, None), rounds=rounds, number=number)
    comparisons = [
        Comparison(
            stage="rules.evaluate",
            subject="compiled rules (30 statements, realistic token)",
            baseline="hand-written Python giving the same Plan",
            ours=compiled,
            theirs=baseline,
            target=1.5,
            notes="plans asserted equal before timing; includes trace and skipped",
        )
    ]
    for lines in (50, 500) if quick else (50, 500, 5000):
        source = dense_file(lines)
        assert not any(d.severity == "error" for d in check(source, FIELDS)), "must check"
        rounds = 3 if lines > 500 else 7
        fresh = iter([dense_file(lines, f"s{i}") for i in range(rounds + 2)])
        cold = measure(lambda f=fresh: check(next(f), FIELDS), rounds=rounds, number=1)
        warm = measure(lambda s=source: check(s, FIELDS), rounds=rounds, number=1)
        compile_stats = measure(lambda s=source: compile_rules(s, FIELDS), rounds=rounds, number=1)
        program, _ = parse(source)
        assert program is not None
        source_map, fields = SourceMap(source), merged_fields(FIELDS)
        checker = measure(
            lambda p=program, m=source_map, f=fields: check_program(p, m, f), rounds=rounds
        )
        comparisons.append(
            Comparison(
                stage=f"rules.check {lines} lines",
                subject="parse + check, cold (every statement new to the parser)",
                baseline="100 ms budget",
                ours=cold,
                theirs=_budget(100.0),
                target=1.0 if lines == 500 else None,
                notes="the budget applies to the 500-line file",
                extra={
                    "warm_check_ms": round(warm.median_ms, 2),
                    "checker_only_ms": round(checker.median_ms, 2),
                    "warm_compile_rules_ms": round(compile_stats.median_ms, 2),
                },
            )
        )
    return comparisons


def main(argv: list[str]) -> None:
    for comparison in run(quick="--quick" in argv):
        met = {None: "", True: " (met)", False: " (NOT met)"}[comparison.met]
        print(
            f"{comparison.stage:28} ours {comparison.ours.median_ms:9.4f} ms   "
            f"{comparison.baseline}: {comparison.theirs.median_ms:9.4f} ms   "
            f"ratio {comparison.ratio:6.2f}{met}   {comparison.extra or ''}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
