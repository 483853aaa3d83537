"""Rule test cases as code (product.md §5): the front door for `jitprov test` and the TUI.

    items = discover([root / "tests"])
    results = run_cases(config, select(items, pattern))
    write_junit(results, "report.xml"); update_cases(results, config)

`model` reads and checks `*.case.toml`, `runner` runs cases (fresh store each, in
parallel when many), `verdict` compares, `junit` and `update` write files.
"""

from __future__ import annotations

from engine.cases.junit import junit_xml, write_junit
from engine.cases.model import Case, CaseError, case_name, load_case
from engine.cases.runner import CaseRunner, discover, run_cases, select
from engine.cases.update import update_case
from engine.cases.verdict import CaseResult, Problem

__all__ = [
    "Case",
    "CaseError",
    "CaseResult",
    "CaseRunner",
    "Problem",
    "case_name",
    "discover",
    "junit_xml",
    "load_case",
    "run_cases",
    "select",
    "update_case",
    "write_junit",
]
