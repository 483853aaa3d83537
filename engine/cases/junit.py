"""`jitprov test --junit FILE`: one JUnit XML testsuite, one testcase per case.

The shape CI servers read (Jenkins, GitLab, GitHub actions' reporters): a `testsuites`
root holding one `testsuite` with the counts, each `testcase` with a `failure` (the case
ran and differs: the diff text) or an `error` (the case file or its rules are broken).
Characters XML 1.0 cannot hold are replaced, so any message gives a valid file.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from engine.cases.verdict import CaseResult

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
SUITE = "jitprov"


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def junit_xml(results: Sequence[CaseResult], *, suite: str = SUITE) -> str:
    """The JUnit XML document for a run, as text (UTF-8 declared)."""
    failures = sum(r.status == "failed" for r in results)
    errors = sum(r.status == "error" for r in results)
    total = sum(r.seconds for r in results)
    counts = {
        "name": suite,
        "tests": str(len(results)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": "0",
        "time": f"{total:.3f}",
    }
    root = ET.Element("testsuites", counts)
    testsuite = ET.SubElement(root, "testsuite", counts)
    for result in results:
        folder = str(Path(result.path).parent).replace("/", ".").replace("\\", ".").strip(".")
        case = ET.SubElement(
            testsuite,
            "testcase",
            {
                "name": _text(result.name),
                "classname": _text(f"{suite}.{folder}" if folder else suite),
                "file": _text(result.path),
                "time": f"{result.seconds:.3f}",
            },
        )
        if result.status == "passed":
            continue
        tag = "failure" if result.status == "failed" else "error"
        first = result.problems[0].message if result.problems else tag
        element = ET.SubElement(case, tag, {"message": _text(first), "type": tag})
        element.text = _text("\n".join(result.diff_lines()))
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def write_junit(results: Sequence[CaseResult], path: str | Path) -> None:
    """Write the report; raises OSError when the file cannot be written."""
    Path(path).write_text(junit_xml(results), encoding="utf-8")
