"""`jitprov tui` (and `jitprov` with no command): the Textual interface on the workspace.

Textual and the app are imported only when the command runs, so the other commands
start fast and never depend on the interface's modules.
"""

from __future__ import annotations

import argparse
from typing import Any

from tui.cli import EXIT_OK, Workspace


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "tui",
        parents=[common],
        help="the terminal interface",
        description="Edit connections and rules, test rules, browse users and the audit log.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ws: Workspace) -> int:
    """Open the app; a missing or invalid workspace is reported before it starts."""
    config = ws.config  # raises ConfigError (one line, exit 1) when there is none
    from tui.app import make_app
    from tui.facade import Facade

    app = make_app(Facade(config.path, _config=config))
    app.run()
    return EXIT_OK
