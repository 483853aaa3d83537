"""`jitprov check --emit-python FILE`: the Python a rules file compiles to.

On the demo's okta.rules: the output is the very source the evaluator is compiled from,
it compiles, a comment names each rules line, and no literal of the rules file (a deny
message, a string, an attribute name) appears in it: literals are parameters.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import pytest

from engine.config import load_config
from rules import compile_rules, parse
from rules.ast import (
    AttrRef,
    Binary,
    Call,
    Comprehension,
    Deny,
    Expr,
    IfExpr,
    Let,
    ListLit,
    Match,
    Not,
    Rule,
    Stmt,
    StrLit,
)
from tui.cli import run

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
OKTA = DEMO / "rules" / "okta.rules"


def emitted(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert run(["--config", str(DEMO / "jitprov.toml"), "check", *argv]) == 0
    out: str = capsys.readouterr().out
    return out


def strip_strings(source: str) -> str:
    """The rules source without its string literals and comments: its names."""
    return re.sub(r'#[^\n]*|r?"(?:[^"\\\n]|\\.)*"', " ", source)


def literals(statements: tuple[Stmt, ...]) -> set[str]:
    """Every piece of literal text in a program: strings (patterns, regexes, list items),
    attribute names, deny messages, rule names."""
    found: set[str] = set()

    def expr(node: Expr | None) -> None:
        match node:
            case StrLit(value=value):
                found.add(value)
            case AttrRef(name=name):
                found.add(name)
            case Call(args=args):
                for arg in args:
                    expr(arg)
            case ListLit(items=items):
                for item in items:
                    expr(item)
            case Comprehension(element=element, iterable=iterable, condition=condition):
                for part in (element, iterable, condition):
                    expr(part)
            case Match(subject=subject, arms=arms, otherwise=otherwise):
                expr(subject)
                expr(otherwise)
                for arm in arms:
                    expr(arm.result)
                    found.update(p.value for p in arm.patterns)
            case IfExpr(condition=condition, then=then, otherwise=otherwise):
                for part in (condition, then, otherwise):
                    expr(part)
            case Binary(left=left, right=right):
                expr(left)
                expr(right)
            case Not(operand=operand):
                expr(operand)
            case _:
                pass

    for statement in statements:
        match statement:
            case Deny(message=message, condition=condition):
                found.add(message)
                expr(condition)
            case Rule(name=name, condition=condition, body=body):
                found.add(name)
                expr(condition)
                found |= literals(body)
            case Let(value=value):
                expr(value)
            case _:
                expr(getattr(statement, "value", None))
    return found


def test_emit_python_prints_the_compiled_source(capsys: pytest.CaptureFixture[str]) -> None:
    out = emitted(capsys, "--emit-python", str(OKTA))
    config = load_config(DEMO / "jitprov.toml")
    result = compile_rules(OKTA.read_text(), config.fields)
    assert result.rules is not None
    assert out == result.rules.python_source
    compile(out, "okta.rules.py", "exec")
    assert out.startswith("#") and "def _make(" in out and "def _evaluate(A, C, U):" in out


def test_emit_python_names_the_rules_lines(capsys: pytest.CaptureFixture[str]) -> None:
    out = emitted(capsys, "--emit-python", str(OKTA))
    source = OKTA.read_text()
    program, _ = parse(source)
    assert program is not None
    for statement in program.statements:
        inner = statement.body if isinstance(statement, Rule) else ()
        for node in (statement, *inner):
            line = source.count("\n", 0, node.span.start) + 1
            assert f"# line {line}: " in out, line
    assert "# line 8: username = email_local(mail)\n" in out
    assert "# line 2: let mail = lower(first(@_k" in out  # the attribute is a parameter


def test_emit_python_holds_no_literal_of_the_rules_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = emitted(capsys, "--emit-python", str(OKTA))
    source = OKTA.read_text()
    program, _ = parse(source)
    assert program is not None
    tokens = list(tokenize.generate_tokens(io.StringIO(out).readline))
    assert not [t for t in tokens if t.type == tokenize.STRING]
    # Names may appear in comments (fields, `let` names, functions); literal text never.
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", strip_strings(source)))
    texts = {t for t in literals(program.statements) if t not in names and len(t) > 2}
    assert "no e-mail address in the assertion" in texts
    assert "contractors are not provisioned" in texts
    assert r"^(eng|sales|ops)-" in texts
    for text in texts:
        assert text not in out, text
    deny = "no e-mail address in the assertion"
    parameter = next(line for line in out.splitlines() if "# line 5: deny _k" in line)
    assert deny not in parameter


def test_emit_python_json(capsys: pytest.CaptureFixture[str]) -> None:
    out = emitted(capsys, "--json", "--emit-python", str(OKTA))
    document = json.loads(out)
    assert document["path"] == str(OKTA)
    compile(document["python"], "okta.rules.py", "exec")


def test_emit_python_of_a_file_with_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.rules"
    broken.write_text('username = lower(nope)\ndeny "secret text" when true\n')
    assert run(["--config", str(DEMO / "jitprov.toml"), "check", "--emit-python", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "E010" in out and "def _make" not in out and "1 error" in out


def test_emit_python_takes_one_file(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--config", str(DEMO / "jitprov.toml"), "check", "--emit-python", str(OKTA), "x"]
    assert run(argv) == 1
    assert "one rules file" in capsys.readouterr().err


def test_emit_python_without_a_config_uses_the_built_in_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "plain.rules"
    rules.write_text('username = first(@uid) ?? "anonymous"\n')
    monkeypatch.chdir(tmp_path)
    assert run(["check", "--emit-python", "plain.rules"]) == 0
    out = capsys.readouterr().out
    compile(out, "plain.rules.py", "exec")
    assert "anonymous" not in out and "uid" not in out
