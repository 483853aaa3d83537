"""The help screen (f1): the screens, their keys and what the app never does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# jitprov

| key | everywhere |
| --- | --- |
{screens}
| `ctrl+p` | command palette: every action, searchable |
| `f1` | this help |
| `ctrl+q` | quit (asks first when rules are unsaved) |

| key | Connections |
| --- | --- |
| `enter` | edit the highlighted connection's form |
| `ctrl+s` | save the form (validated like `jitprov check`, comments kept) |
| `n` | new connection · `i` import IdP metadata · `e` edit its rules |

| key | Rules |
| --- | --- |
| `ctrl+s` | save · `ctrl+f` format · `ctrl+t` run all cases |
| `f8` | jump to the next problem (or select one in the panel) |
| `escape` | leave the editor (then `1`–`5` switch screens again) |

| key | Test bench |
| --- | --- |
| `d` | decode and dry-run the token · `a` apply it (writes the store) |
| `ctrl+t` | run all cases |

| key | Users and Audit |
| --- | --- |
| `/` | search · `enter` open the row · `[` `]` previous / next page |

Nothing in the Rules preview or a dry run is ever written: only **apply** and
**save** change anything, through the same functions as the command line.
"""


class HelpScreen(ModalScreen[None]):
    """Keys and screens; any of escape, f1 or q closes it."""

    BINDINGS = [Binding("escape,f1,q", "close", "Close")]

    def __init__(self, screens: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self.screens = screens

    def compose(self) -> ComposeResult:
        rows = "\n".join(f"| `{key}` | {title} screen |" for key, title in self.screens.values())
        with VerticalScroll(id="help"):
            yield Markdown(HELP.format(screens=rows))

    def action_close(self) -> None:
        self.dismiss(None)
