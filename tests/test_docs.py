"""The documentation is for users: it stands without the project's internal files, its
counts of the demo workspace are the demo's, and the README lists every command."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

import pytest

from tui.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DEMO = ROOT / "examples" / "demo"
README = ROOT / "README.md"

# Pages being rewritten elsewhere: empty this list once they are checked too.
NOT_YET_CHECKED: list[str] = []

# What a user-facing page never says: the project's internal files and notes.
FORBIDDEN = ["product.md", "rules-language.md", "§", "../shared", "spec is silent"]

NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}


def _number(text: str) -> int:
    return int(text) if text.isdigit() else NUMBERS[text.lower()]


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- what the demo holds -------------------------------------------------------------


def _demo_connections() -> dict[str, dict[str, object]]:
    config = tomllib.loads(_read(DEMO / "jitprov.toml"))
    connections: dict[str, dict[str, object]] = config["connections"]
    return connections


def _demo_cases() -> dict[str, int]:
    """Case files per folder of examples/demo/tests/."""
    counts: dict[str, int] = {}
    for case in sorted((DEMO / "tests").rglob("*.case.toml")):
        folder = case.parent.relative_to(DEMO / "tests").as_posix()
        counts[folder] = counts.get(folder, 0) + 1
    return counts


def _demo_samples() -> tuple[int, int]:
    """(TOML samples, signed responses) in examples/demo/samples/."""
    samples = DEMO / "samples"
    return len(list(samples.glob("*.toml"))), len(list(samples.glob("*.xml")))


def test_the_demo_is_what_these_tests_assume() -> None:
    connections = _demo_connections()
    assert connections, "the demo has connections"
    assert set(_demo_cases()) == set(connections), "one folder of cases per connection"
    tomls, xmls = _demo_samples()
    assert tomls and xmls >= tomls


# --- the counts the docs state -------------------------------------------------------


def _flat(text: str) -> str:
    return " ".join(text.split())


def _one(pattern: str, text: str, where: str) -> re.Match[str]:
    found = re.search(pattern, _flat(text))
    assert found, f"{where}: no sentence matches {pattern!r}; update it and this test"
    return found


def test_readme_counts_the_demo_connections() -> None:
    connections = _demo_connections()
    saml = [c for c in connections.values() if c.get("protocol") == "saml2"]
    found = _one(r"\(`examples/demo`\) has (\w+) SAML connections", _read(README), "README")
    assert _number(found.group(1)) == len(saml) == len(connections)


def test_testing_md_counts_the_demo() -> None:
    text = _read(DOCS / "testing.md")
    cases = _demo_cases()
    tomls, xmls = _demo_samples()
    found = _one(r"`examples/demo/tests/` holds (\d+) cases over the (\w+) connections", text, "")
    assert int(found.group(1)) == sum(cases.values())
    assert _number(found.group(2)) == len(_demo_connections())
    found = _one(r"has (\w+) SAML connections", text, "testing.md")
    assert _number(found.group(1)) == len(_demo_connections())
    found = _one(r"`examples/demo/samples/` holds (\d+) samples", text, "testing.md")
    assert int(found.group(1)) == tomls
    found = _one(r"(\d+) signed responses in all", text, "testing.md")
    assert int(found.group(1)) == xmls
    # the table: one row per folder, with its number of cases
    rows = dict(re.findall(r"^\| `([\w-]+)/` [^|]*\| (\d+) \|", text, re.MULTILINE))
    assert {folder: int(n) for folder, n in rows.items()} == cases


def test_no_page_miscounts_the_demo() -> None:
    """However a page words it, a count of the demo's connections or cases is the demo's."""
    cases = sum(_demo_cases().values())
    connections = len(_demo_connections())
    said_of_connections = [
        r"\bdemo\b[^.]*? (?:has|with) (\w+) (?:SAML )?connections",
        r"\bthe demo's (\w+) connections",
        r"\bcases over the (?:demo's )?(\w+) connections",
    ]
    said_of_cases = [r"\b(\w+) cases over the (?:demo's )?\w+ connections"]
    for page in _pages():
        text = _flat(_read(page))
        for pattern in said_of_connections:
            for said in re.findall(pattern, text):
                assert _number(said) == connections, (page.name, pattern, said)
        for pattern in said_of_cases:
            for said in re.findall(pattern, text):
                assert _number(said) == cases, (page.name, pattern, said)


# --- pages for users -----------------------------------------------------------------


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_page_stands_without_internal_files(page: Path) -> None:
    if page.name in NOT_YET_CHECKED and page.parent == DOCS:
        pytest.skip(f"{page.name} is in NOT_YET_CHECKED")
    text = _read(page)
    for word in FORBIDDEN:
        assert word not in text, f"{page.name} mentions {word!r}"
    assert not re.search(r"\*\*Choices?\b", text), f"{page.name} has a **Choice** marker"


def test_design_notes_and_getting_started_exist_and_are_linked() -> None:
    readme = _read(README)
    for name in ("getting-started.md", "design.md"):
        assert (DOCS / name).is_file()
        assert f"](docs/{name})" in readme, f"README does not link docs/{name}"


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    text = re.sub(r"```.*?```", "", _read(page), flags=re.DOTALL)
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_relative_links_between_pages_resolve() -> None:
    for page in _pages():
        for target, anchor in re.findall(r"\]\(([^)#\s]*\.md)?(?:#([^)\s]*))?\)", _read(page)):
            if not target and not anchor:
                continue
            linked = page.parent / target if target else page
            assert linked.is_file(), f"{page.name} links {target}"
            if anchor:
                assert anchor in _anchors(linked), f"{page.name} links {target}#{anchor}"


# --- commands --------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_readme_command_table_lists_every_command() -> None:
    commands = _subcommands(build_parser())
    assert {"init", "check", "apply", "test", "serve"} <= set(commands)
    table = _read(README).split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `jitprov")]
    listed = {m for row in rows for m in re.findall(r"`jitprov (\w[\w-]*)", row.split(" | ")[0])}
    missing = set(commands) - listed
    assert not missing, f"README's command table lacks {sorted(missing)}"
    actions = _subcommands(commands["connection"])
    for action in actions:
        assert any(f"`jitprov connection {action}" in row for row in rows), action


def _all_parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    found = [("jitprov", parser)]
    for name, sub in _subcommands(parser).items():
        found.append((f"jitprov {name}", sub))
        found += [(f"jitprov {name} {n}", s) for n, s in _subcommands(sub).items()]
    return found


@pytest.mark.parametrize("name,parser", _all_parsers(), ids=lambda v: str(v))
def test_help_does_not_cite_internal_files(name: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    for word in ("product.md", "rules-language", "§"):
        assert word not in text, f"`{name} --help` mentions {word!r}"


def test_starter_workspace_does_not_cite_internal_files() -> None:
    for template in sorted((ROOT / "engine" / "templates").rglob("*")):
        if template.is_file():
            text = _read(template)
            for word in ("product.md", "rules-language", "§"):
                assert word not in text, f"{template.name} mentions {word!r}"
