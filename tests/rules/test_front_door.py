"""`compile_rules(generate=False)`: the editor's fast path gives the same plans."""

from __future__ import annotations

from rules import Context, compile_rules

SOURCE = """
let mail = lower(first(@email))
deny "no e-mail" when mail == null
username = email_local(mail)
email    = mail
groups   = [lower(g) for g in @groups if g matches r"^eng-"]
groups  += "everyone"
rule "first" on create {
    active = true
}
"""


def test_the_reference_path_plans_like_the_compiled_one() -> None:
    fast = compile_rules(SOURCE, generate=False)
    full = compile_rules(SOURCE)
    assert fast.ok and full.ok and fast.rules and full.rules
    assert fast.diagnostics == full.diagnostics
    attributes = {"email": ["Ada@Example.com"], "groups": ["eng-core", "Sales", "eng-ops"]}
    for user in (None, {"username": "ada", "groups": ["old"]}):
        context = Context(subject="ada")
        assert fast.rules.evaluate(attributes, context, user) == full.rules.evaluate(
            attributes, context, user
        )
    denied = fast.rules.evaluate({}, Context(subject="x"), None)
    assert denied.denied == "no e-mail"


def test_errors_are_reported_the_same_way() -> None:
    broken = 'username = lower(@email)\ndeny "x" when @department == "Sales"\n'
    assert compile_rules(broken, generate=False).diagnostics == compile_rules(broken).diagnostics
    assert compile_rules(broken, generate=False).rules is None
