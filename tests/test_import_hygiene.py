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


ONE_COMMAND_PROBE = """
import sys
from tui.cli import run
code = run(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.startswith("tui.commands."))
print(code, ",".join(loaded))
"""


def _loaded_commands(*argv: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", ONE_COMMAND_PROBE, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    code, _, loaded = done.stdout.strip().rpartition("\n")[2].partition(" ")
    return code, loaded


def test_a_command_loads_its_own_module_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A command run builds its own parser, not the fifteen others (the engine modules
    they import cost every short-lived run, such as a script calling `apply`)."""
    config = tmp_path / "jitprov.toml"
    config.write_text('[store]\npath = "jitprov.db"\n')
    # `--config`'s value is not taken for the command, even when it spells one.
    code, loaded = _loaded_commands("--config", str(config), "users", "list", "--json")
    assert code == "0"
    assert "tui.commands.users" in loaded.split(",")
    others = {"apply", "check", "serve", "test", "tui", "mint", "migrate", "init"}
    assert not {f"tui.commands.{name}" for name in others} & set(loaded.split(","))


def test_help_and_unknown_commands_still_see_every_command() -> None:
    probe = "from tui.cli import build_parser, command_in, COMMANDS; import sys\n"
    probe += "for argv in ([], ['--help'], ['-h', 'apply'], ['nope'], ['--version']):\n"
    probe += "    assert command_in(argv) is None, argv\n"
    probe += "assert command_in(['--config', 'apply', 'users']) == 'users'\n"
    probe += "assert command_in(['--json', 'apply', '--help']) == 'apply'\n"
    probe += (
        "print(sorted(build_parser()._subparsers._group_actions[0].choices) == sorted(COMMANDS))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "True"
    listed = subprocess.run(
        [sys.executable, "-c", "from tui.cli import main; main(['--help'])"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0
    assert all(name in listed.stdout for name in ("apply", "serve", "prune", "migrate"))
