"""Rule test cases (engine.cases): loading with keyed errors, seeding, verdicts and diffs,
parallel order. The CLI (`jitprov test`) is in test_cases_cli.py.

Each test copies tests/engine/data/cases (a workspace with a create-and-update, a
create-only and an update-only connection, all on one rules file) into a temporary
folder and writes the cases it needs there.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
import provision_fixtures  # noqa: F401  (puts the project's `rules` package first)

from engine.cases import CaseError, CaseResult, discover, load_case, run_cases, select
from engine.cases.model import toml_text
from engine.cases.runner import CaseRunner
from engine.config import Config, load_config

DATA = Path(__file__).parent / "data" / "cases"
SAML_DATA = Path(__file__).parent / "data" / "saml"
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"

ADA = """\
connection = "okta"
token = "ada.toml"
unsigned = true
"""


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A copy of the test workspace (its certificate path points at ../saml)."""
    root = tmp_path / "cases"
    shutil.copytree(DATA, root)
    shutil.copytree(SAML_DATA, tmp_path / "saml")
    return root


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.case.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_one(ws: Path, text: str, name: str = "case") -> CaseResult:
    config = load_config(ws / "jitprov.toml")
    path = write(ws, name, text)
    runner = CaseRunner(config)
    try:
        return runner.run_path(path, path.name)
    finally:
        runner.close()


def config_of(ws: Path) -> Config:
    return load_config(ws / "jitprov.toml")


# -- verdicts ----------------------------------------------------------------------


def test_the_data_workspace_cases_pass(ws: Path) -> None:
    results = run_cases(config_of(ws), discover([ws / "tests"]))
    assert [(r.name, r.status) for r in results] == [
        ("ada-created", "passed"),
        ("ada-updated", "passed"),
        ("contractor-denied", "passed"),
        ("legacy-update-only", "passed"),
        ("portal-create-only", "passed"),
    ]
    assert not (ws / "jitprov.db").exists()  # the workspace's store is never opened


def test_wrong_outcome_is_a_failure_with_the_deny_line(ws: Path) -> None:
    text = """\
connection = "okta"
unsigned = true
[sample]
subject = "alan"
[sample.attributes]
uid = "alan"
type = "contractor"
[expect]
outcome = "created"
"""
    result = run_one(ws, text)
    assert result.status == "failed"
    assert result.diff_lines() == [
        "  outcome:",
        '    - expected: "created"',
        '    + actual:   "denied"',
        "      ← denied: contractors are not provisioned (deny at okta.rules:1)",
    ]


def test_wrong_field_value_names_the_line_that_set_it(ws: Path) -> None:
    result = run_one(
        ws, ADA + '[expect]\noutcome = "created"\n[expect.user]\ndepartment = "sales"\n'
    )
    assert result.status == "failed"
    assert result.diff_lines() == [
        "  user.department:",
        '    - expected: "sales"',
        '    + actual:   "engineering"',
        "      ← set by okta.rules:5 (department =)",
    ]


def test_wrong_set_lists_missing_and_unexpected_members(ws: Path) -> None:
    text = ADA + '[expect]\noutcome = "created"\n[expect.user]\ngroups = ["everyone", "ops"]\n'
    result = run_one(ws, text)
    assert result.status == "failed"
    assert result.diff_lines() == [
        "  user.groups:",
        '    - expected: ["everyone", "ops"]',
        '    + actual:   ["eng", "everyone"]',
        '      missing "ops"; unexpected "eng"',
        "      ← set by okta.rules:6 (groups =)",
    ]


def test_sets_compare_ignoring_order_and_fields_not_listed_are_ignored(ws: Path) -> None:
    text = ADA + '[expect]\noutcome = "created"\n[expect.user]\ngroups = ["everyone", "eng"]\n'
    assert run_one(ws, text).status == "passed"


def test_reason_and_message_has_are_checked(ws: Path) -> None:
    text = 'connection = "okta"\ntoken = "ada.toml"\n[expect]\noutcome = "rejected"\n'
    assert run_one(ws, text + 'reason = "unsigned"\n').status == "passed"
    wrong = run_one(ws, text + 'reason = "expired"\nmessage_has = "nope"\n')
    assert [p.key for p in wrong.problems] == ["reason", "message_has"]
    assert "samples are accepted only with --unsigned-samples" in wrong.problems[0].trace


def test_a_field_not_set_by_the_rules_says_so(ws: Path) -> None:
    text = ADA + '[given.user]\nusername = "ada"\nlevel = 3\n'
    text += '[expect]\noutcome = "updated"\n[expect.user]\nlevel = 4\n'
    result = run_one(ws, text)
    assert result.problems[0].trace == (
        "not set by the rules (the value is the stored one, from [given.user])"
    )
    fixed = text.replace("level = 4", "level = 3.0")  # numbers compare as numbers
    assert run_one(ws, fixed).status == "passed"


def test_given_user_members_belong_to_the_connection_and_local_ones_survive(ws: Path) -> None:
    text = (
        ADA
        + """\
[given.user]
username = "ada"
groups = ["old"]
[given.user.local]
groups = ["manual", "old"]
[expect]
outcome = "updated"
[expect.user]
groups = ["eng", "everyone", "manual", "old"]
"""
    )
    # "old" is held twice: the sync drops okta's row, the local row keeps the value.
    assert run_one(ws, text).status == "passed"


def test_given_accounts_are_unlinked_and_found_by_link_by(ws: Path) -> None:
    text = (
        ADA
        + """\
[[given.accounts]]
username = "ada"
email = "Ada@Example.com"
groups = ["wiki"]
[expect]
outcome = "linked"
[expect.user]
groups = ["eng", "everyone", "wiki"]
"""
    )
    assert run_one(ws, text).status == "passed"


def test_username_conflict_is_denied(ws: Path) -> None:
    text = (
        ADA
        + """\
[[given.accounts]]
username = "ADA"
email = "someone-else@example.com"
[expect]
outcome = "denied"
message_has = 'username "ada" is already taken'
"""
    )
    assert run_one(ws, text).status == "passed"


def test_expect_user_after_a_denial_needs_an_account(ws: Path) -> None:
    text = 'connection = "legacy"\ntoken = "ada.toml"\nunsigned = true\n'
    text += '[expect]\noutcome = "denied"\n[expect.user]\nusername = "ada"\n'
    result = run_one(ws, text)
    assert result.status == "failed"
    assert "no account after the run" in result.problems[0].message


def test_a_case_without_expect_fails_and_says_how_to_record_it(ws: Path) -> None:
    result = run_one(ws, ADA)
    assert result.status == "failed"
    assert "--update" in result.problems[0].message


def test_signed_demo_response_and_a_tampered_copy(tmp_path: Path) -> None:
    config = load_config(DEMO / "jitprov.toml")
    original = (DEMO / "samples" / "okta-engineer.xml").read_text(encoding="utf-8")
    (tmp_path / "good.xml").write_text(original, encoding="utf-8")
    (tmp_path / "tampered.xml").write_text(
        original.replace(">Engineering<", ">Sales<"), encoding="utf-8"
    )
    head = 'connection = "okta"\nat = "2024-05-01T12:01:00Z"\n'
    write(tmp_path, "good", head + 'token = "good.xml"\n[expect]\noutcome = "created"\n')
    write(
        tmp_path,
        "tampered",
        head + 'token = "tampered.xml"\n[expect]\noutcome = "rejected"\nreason = "bad-signature"\n',
    )
    results = run_cases(config, discover([tmp_path]))
    assert [(r.name, r.status) for r in results] == [("good", "passed"), ("tampered", "passed")], [
        r.problems for r in results
    ]


# -- broken case files: errors naming the file and the key ---------------------------


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('connection = "okta"\ntoken = \n', None, "invalid TOML"),
        (ADA + "colour = 1\n", "colour", "unknown key"),
        (ADA + '[given.user]\ncolour = "red"\n', "given.user.colour", "unknown field"),
        (ADA + "[given.nobody]\nx = 1\n", "given.nobody", "unknown key"),
        (ADA + '[expect]\noutcome = "created"\nwhy = 1\n', "expect.why", "unknown key"),
        (ADA.replace("ada.toml", "missing.xml"), "token", "no such file 'missing.xml'"),
        (ADA.replace("unsigned = true", 'unsigned = "yes"'), "unsigned", "expected true or"),
        (ADA + "[given.user]\nusername = 7\n", "given.user.username", "expected a string"),
        (ADA + '[given.user]\ngroups = "eng"\n', "given.user.groups", "list of strings"),
        (ADA + '[given.user.local]\ndepartment = ["x"]\n', "given.user.local.department", "set"),
        (ADA + '[expect]\noutcome = "made"\n', "expect.outcome", "expected one of"),
        (ADA + '[expect]\nreason = "expired"\n', "expect.outcome", "missing"),
        (ADA + '[expect]\noutcome = "rejected"\nreason = "late"\n', "expect.reason", "reason"),
        (
            ADA + '[expect]\noutcome = "created"\n[expect.user]\nactive = "yes"\n',
            "expect.user.active",
            "expected true or false",
        ),
        (ADA.replace('"okta"', '"okat"'), "connection", "unknown connection 'okat'"),
        ('token = "ada.toml"\n', "connection", "missing"),
        ('connection = "okta"\n', "token", "either token"),
        (ADA + '[sample]\nsubject = "x"\n', "token", "not both"),
        ('connection = "okta"\n[sample]\nsubject = "x"\nnick = "y"\n', "sample", "unknown key"),
        (ADA + 'at = "yesterday"\n', "at", "ISO 8601"),
        (ADA + "at = 2024-05-01T12:00:00\n", "at", "zone"),
        (
            ADA + '[[given.accounts]]\nusername = "a"\n[[given.accounts]]\nusername = "A"\n',
            "given.accounts[1].username",
            "given twice",
        ),
    ],
)
def test_broken_case_files_are_errors_naming_file_and_key(
    ws: Path, text: str, key: str | None, words: str
) -> None:
    result = run_one(ws, text, name="broken")
    assert result.status == "error"
    [problem] = result.problems
    assert problem.key == key
    assert problem.message.startswith("broken.case.toml: ")
    if key:
        assert f": {key}: " in problem.message
    assert words in problem.message


def test_load_case_raises_case_error(ws: Path) -> None:
    path = write(ws, "x", ADA + "extra = 1\n")
    with pytest.raises(CaseError) as caught:
        load_case(path, config_of(ws), "shown/x.case.toml")
    assert str(caught.value) == (
        "shown/x.case.toml: extra: unknown key; expected one of connection, token, sample, "
        "at, unsigned, request_id, nonce, given, expect"
    )


def test_rules_that_do_not_compile_are_an_error_for_each_case(ws: Path) -> None:
    (ws / "okta.rules").write_text("username = \n", encoding="utf-8")
    result = run_one(ws, ADA + '[expect]\noutcome = "created"\n')
    assert result.status == "error"
    assert "do not compile" in result.problems[0].message


# -- discovery, selection, parallel order --------------------------------------------


def test_discovery_is_recursive_sorted_and_takes_files_as_given(ws: Path) -> None:
    (ws / "tests" / "sub").mkdir()
    write(ws / "tests" / "sub", "a-first", ADA)
    (ws / "tests" / "notes.toml").write_text("x = 1\n")
    items = discover([ws / "tests", ws / "tests" / "ada-created.case.toml"])
    names = [p.relative_to(ws / "tests").as_posix() for p, _ in items]
    assert names == sorted(names)
    assert "sub/a-first.case.toml" in names and "notes.toml" not in names
    assert len(names) == len(set(names)) == 6
    with pytest.raises(FileNotFoundError):
        discover([ws / "nope"])


def test_select_matches_name_or_path_case_insensitively(ws: Path) -> None:
    items = discover([ws / "tests"], shown=lambda p: p.relative_to(ws).as_posix())
    assert [p.name for p, _ in select(items, "ADA")] == [
        "ada-created.case.toml",
        "ada-updated.case.toml",
    ]
    assert len(select(items, "tests/")) == 5
    assert select(items, "zzz") == []


def test_parallel_runs_report_in_sorted_order_like_a_serial_run(ws: Path) -> None:
    folder = ws / "many"
    folder.mkdir()
    for i in range(120):
        outcome = "created" if i % 7 else "denied"  # every 7th case fails
        body = ADA.replace("ada.toml", "../ada.toml") + f'[expect]\noutcome = "{outcome}"\n'
        write(folder, f"case-{i:03d}", body)
    items = discover([folder])
    config = config_of(ws)
    serial = run_cases(config, items, jobs=1)
    parallel = run_cases(config, items, jobs=3, min_per_worker=10)
    assert [r.name for r in parallel] == [f"case-{i:03d}" for i in range(120)]
    assert [(r.name, r.status) for r in parallel] == [(r.name, r.status) for r in serial]
    assert sum(r.status == "failed" for r in parallel) == len(range(0, 120, 7))


def test_junit_text_is_valid_xml_whatever_the_messages_hold() -> None:
    import xml.etree.ElementTree as ET

    from engine.cases import junit_xml
    from engine.cases.verdict import Problem

    results = [
        CaseResult("ok", "t/ok.case.toml", "passed"),
        CaseResult("bad\x01", "t/bad.case.toml", "error", [Problem(None, "nul \x00 & <x>")]),
    ]
    root = ET.fromstring(junit_xml(results).encode("utf-8"))
    [suite] = root
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "1")
    error = suite[1].find("error")
    assert error is not None and error.get("message") == "nul \ufffd & <x>"


def test_an_empty_string_expects_no_value(ws: Path) -> None:
    text = (
        ADA + '[expect]\noutcome = "created"\n[expect.user]\nfamily_name = ""\nentitlements = []\n'
    )
    assert run_one(ws, text).status == "passed"
    wrong = run_one(ws, text.replace('family_name = ""', 'department = ""'))
    assert wrong.problems[0].message == 'user.department: expected null, got "engineering"'


def test_create_only_leaves_a_linked_account_unchanged(ws: Path) -> None:
    text = 'connection = "portal"\ntoken = "ada.toml"\nunsigned = true\n'
    text += '[given.user]\nusername = "ada"\ndepartment = "sales"\n'
    text += '[expect]\noutcome = "unchanged"\n[expect.user]\ndepartment = "sales"\n'
    assert run_one(ws, text).status == "passed"


def test_given_user_with_a_transient_subject_is_found_by_link_by_not_linked(ws: Path) -> None:
    text = """\
connection = "okta"
unsigned = true
[sample]
subject = "_f00d"
subject_format = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
[sample.attributes]
uid = "ada"
email = "ada@example.com"
[given.user]
username = "ada"
email = "ada@example.com"
[expect]
outcome = "unchanged"
"""
    # Had the seed linked the transient subject, link_by would refuse the account as
    # "already linked to another identity".
    assert run_one(ws, text).status == "passed"


SCALARS = st.one_of(
    st.text(),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
)
TABLES = st.recursive(
    st.dictionaries(st.text(), st.one_of(SCALARS, st.lists(st.text()))),
    lambda inner: st.dictionaries(st.text(), inner),
    max_leaves=12,
)


@given(TABLES)
def test_inline_samples_serialise_to_toml_that_reads_back_the_same(table: dict) -> None:
    assert tomllib.loads(toml_text(table)) == table
