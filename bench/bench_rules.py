"""Rules benchmarks: compiled evaluation against the plain-Python floor, and check latency.

(a) Evaluation, against bench/floors/rules.py (each rules file written by hand as a plain
    Python function, none of jitprov's code; target ≤ 1.5x each): the demo's three rules
    files (examples/demo/rules) on the demo's sample attribute bags
    (examples/demo/samples, each for a first sign-in and for a stored account), and a
    realistic 30-statement file (`REALISTIC`) on a realistic token. Before timing, the
    stage asserts that jitprov's plan and the floor's agree on every input (fields and
    set operations; see `normalised`). jitprov's figure includes building the plan's
    trace and skipped rules, which the floor does not build.
(b) `check` (parse + check) of dense 50-, 500- and 5,000-line files, cold (every
    statement new to the parser), against a 100 ms CPU budget for the 500-line file;
    and one line of the 500-line file edited and the file checked again (the editor's
    case: only that statement is parsed anew), against a 10 ms budget.

Everything is CPU time, in turns (bench/harness.py). Run standalone:
`python -m bench.bench_rules [--quick]`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.floors import rules as floors
from bench.harness import MIN_TURNS, Comparison, in_turns
from rules import Context, Plan, SourceMap, check, compile_rules, parse
from rules.check import check_program, merged_fields
from rules.vocabulary import FieldType

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"

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


STORED_USER: dict[str, Any] = {
    "username": "stored",
    "display_name": "Stored Name",
    "cost_center": "CC-0",
    "groups": ["everyone"],
}

Input = tuple[Mapping[str, Sequence[str]], Context, Mapping[str, Any] | None]
Evaluate = Callable[[Mapping[str, Sequence[str]], Context, Mapping[str, Any] | None], Plan]
Floor = Callable[[Mapping[str, Sequence[str]], str | None, Mapping[str, Any] | None], object]


def normalised(plan: Plan) -> dict[str, object]:
    """jitprov's plan in the floors' form (bench/floors/rules.py): the deny message, or
    the fields and the set operations in order; the trace and skipped rules left out."""
    if plan.denied is not None:
        return {"denied": plan.denied}
    return {
        "fields": dict(plan.fields),
        "sets": [(op.field, op.kind, tuple(op.values)) for op in plan.set_ops],
    }


def demo_inputs(connection: str) -> tuple[Evaluate, list[Input]]:
    """A demo connection's compiled rules, and its samples' attribute bags with their
    context, each for a first sign-in and for a stored account."""
    from engine.config import load_config
    from engine.provision import Provisioner
    from engine.sample import load_sample

    config = load_config(DEMO / "jitprov.toml")
    conn = config.connection(connection)
    rules = Provisioner(config).rules(connection)
    inputs: list[Input] = []
    for path in sorted((DEMO / "samples").glob(f"{connection}-*.toml")):
        token = load_sample(path.read_bytes(), conn)
        subject = token.name_id
        if conn.subject_from is not None:
            subject = token.attributes[conn.subject_from][0]
        context = Context(
            subject=subject,
            subject_format=token.name_id_format,
            issuer=token.issuer,
            connection=connection,
            authn_context=token.authn_context,
        )
        inputs += [(token.attributes, context, None), (token.attributes, context, STORED_USER)]
    return rules.evaluate, inputs


def agree(evaluate: Evaluate, floor: Floor, inputs: list[Input]) -> None:
    """jitprov and the floor decide the same on every input, or AssertionError."""
    for attributes, context, user in inputs:
        ours = normalised(evaluate(attributes, context, user))
        theirs = floor(attributes, context.subject, user)
        assert ours == theirs, (context.subject, user is None, ours, theirs)


def _evaluation(
    name: str, subject: str, evaluate: Evaluate, floor: Floor, inputs: list[Input], quick: bool
) -> Comparison:
    agree(evaluate, floor, inputs)
    prepared = [(a, c, c.subject, u) for a, c, u in inputs]

    def ours() -> None:
        for attributes, context, _, user in prepared:
            evaluate(attributes, context, user)

    def theirs() -> None:
        for attributes, _, sub, user in prepared:
            floor(attributes, sub, user)

    started = time.process_time_ns()
    ours()
    once = max(1, time.process_time_ns() - started)
    number = max(20, int((5e6 if quick else 2e7) / once))  # about 5 (20) ms a turn
    found = in_turns(
        {"ours": ours, "floor": theirs}, turns=7 if quick else 21, number=number, warmup=3
    )
    per_input = [[t / len(inputs) for t in found[k]] for k in ("ours", "floor")]
    return Comparison.paired(
        f"rules.evaluate {name}",
        subject,
        "plain Python by hand (bench/floors/rules.py), same decisions",
        per_input[0],
        per_input[1],
        target=1.5,
        notes=f"per evaluation, over {len(inputs)} inputs; outcomes asserted equal first; "
        "jitprov's figure includes the plan's trace, which the floor does not build",
        extra={"inputs": len(inputs)},
    )


def _cpu_rounds(fn: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.process_time_ns()
        fn()
        samples.append(float(time.process_time_ns() - started))
    return samples


def _budget(
    stage: str, subject: str, samples: list[float], ms: float, target: float | None, **kwargs: Any
) -> Comparison:
    return Comparison.paired(
        stage,
        subject,
        f"{ms:g} ms budget",
        samples,
        [ms * 1e6] * len(samples),
        target=target,
        **kwargs,
    )


def edited(source: str, n: int) -> str:
    """`source` with one statement's line changed (a role name), differently for each n."""
    lines = source.splitlines(keepends=True)
    middle = next(i for i in range(len(lines) // 2, len(lines)) if "roles +=" in lines[i])
    lines[middle] = lines[middle].replace('"\n', f'-edit{n}"\n')
    return "".join(lines)


def run(quick: bool) -> list[Comparison]:
    """Evaluation against the floors, then check latency; `quick`: fewer turns, no
    5,000-line file."""
    comparisons = []
    result = compile_rules(REALISTIC, FIELDS)
    assert result.rules is not None, result.diagnostics
    realistic: list[Input] = [(TOKEN, CONTEXT, None), (TOKEN, CONTEXT, STORED_USER)]
    comparisons.append(
        _evaluation(
            "30 statements",
            "compiled rules, 30 statements, realistic token (first sign-in and stored account)",
            result.rules.evaluate,
            floors.realistic,
            realistic,
            quick,
        )
    )
    for connection, floor in floors.DEMO.items():
        evaluate, inputs = demo_inputs(connection)
        comparisons.append(
            _evaluation(
                f"demo {connection}.rules",
                f"compiled examples/demo/rules/{connection}.rules on the demo's "
                f"{connection} samples",
                evaluate,
                floor,
                inputs,
                quick,
            )
        )
    rounds = MIN_TURNS if quick else 9
    for lines in (50, 500) if quick else (50, 500, 5000):
        source = dense_file(lines)
        assert not any(d.severity == "error" for d in check(source, FIELDS)), "must check"
        count = MIN_TURNS if lines > 500 else rounds
        fresh = iter([dense_file(lines, f"s{i}") for i in range(count + 2)])
        check(next(fresh), FIELDS)  # the first check of the process pays for imports
        cold = _cpu_rounds(lambda f=fresh: check(next(f), FIELDS), count)
        warm = _cpu_rounds(lambda s=source: check(s, FIELDS), count)
        compiling = _cpu_rounds(lambda s=source: compile_rules(s, FIELDS), count)
        program, _ = parse(source)
        assert program is not None
        source_map, fields = SourceMap(source), merged_fields(FIELDS)
        checker = _cpu_rounds(
            lambda p=program, m=source_map, f=fields: check_program(p, m, f), count
        )
        median = sorted(warm)[len(warm) // 2]
        comparisons.append(
            _budget(
                f"rules.check {lines} lines",
                "parse + check, cold (every statement new to the parser)",
                cold,
                100.0,
                1.0 if lines == 500 else None,
                notes="CPU time of one check; the budget applies to the 500-line file",
                extra={
                    "warm_check_ms": round(median / 1e6, 2),
                    "checker_only_ms": round(sorted(checker)[len(checker) // 2] / 1e6, 2),
                    "warm_compile_rules_ms": round(sorted(compiling)[len(compiling) // 2] / 1e6, 2),
                },
            )
        )
        if lines == 500:
            check(source, FIELDS)  # every statement in the parser's cache
            edits = iter([edited(source, n) for n in range(rounds + 1)])
            assert next(edits) != source
            again = _cpu_rounds(lambda e=edits: check(next(e), FIELDS), rounds)
            comparisons.append(
                _budget(
                    "rules.check 500 lines, one line edited",
                    "parse + check after one statement changed (the others cached)",
                    again,
                    10.0,
                    1.0,
                    notes="CPU time of one check, as the editor re-checks on a keystroke",
                )
            )
    return comparisons


def main(argv: list[str]) -> None:
    for c in run(quick="--quick" in argv):
        met = {None: "", True: " (met)", False: " (NOT met)"}[c.met]
        spread = f" [{c.spread[0]:.2f}-{c.spread[1]:.2f}]" if c.spread else ""
        print(
            f"{c.stage:40} ours {c.ours.median_ms:9.4f} ms   "
            f"{c.baseline[:30]}: {c.theirs.median_ms:9.4f} ms   "
            f"ratio {c.ratio:6.2f}{spread}{met}   {c.extra or ''}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
