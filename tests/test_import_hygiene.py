"""The layers stay one-directional: `rules` and `engine` never pull in Textual or `tui`."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import importlib, pkgutil, sys
import rules, engine
for package in (rules, engine):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
bad = sorted(m for m in sys.modules if m == "textual" or m.startswith(("textual.", "tui")))
print(",".join(bad))
"""


def test_rules_and_engine_do_not_import_textual_or_tui() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == ""


RULES_PROBE = """
import importlib, pkgutil, sys
import rules
for info in pkgutil.walk_packages(rules.__path__, "rules."):
    importlib.import_module(info.name)
ours = sorted(m for m in sys.modules if m.split(".")[0] in {"engine", "tui", "sqlite_utils", "lxml", "xmlsec", "onelogin", "textual"})
print(",".join(ours))
"""


def test_rules_imports_nothing_of_ours_nor_heavy_libraries() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RULES_PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == ""


START_PROBE = """
import sys
from tui.cli import build_parser
build_parser()
heavy = {"sqlite_utils", "joserfc", "xmlsec", "lxml", "cryptography", "textual", "numpy"}
found = sorted({m.split(".")[0] for m in sys.modules} & heavy)
found += sorted(m for m in sys.modules if m.startswith(("engine.cases", "engine.saml")))
print(",".join(found))
"""


def test_commands_start_without_the_heavy_libraries() -> None:
    """Building the command line (every command's start) leaves the SAML stack, JWT
    keys, schema tooling, the case runner and the TUI for the commands that use them."""
    done = subprocess.run(
        [sys.executable, "-c", START_PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == ""
