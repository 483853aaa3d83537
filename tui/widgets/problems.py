"""The problems panel: the rules file's diagnostics, one line each; choosing one posts
`ProblemList.Chosen` so the screen can move the editor's cursor there."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui.widgets.views import Problem


class ProblemList(OptionList):
    """Lists problems; empty means "no problems found"."""

    class Chosen(Message):
        """The user picked a problem (to jump to)."""

        def __init__(self, problem: Problem) -> None:
            super().__init__()
            self.problem = problem

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.problems: tuple[Problem, ...] = ()

    def show(self, problems: Sequence[Problem]) -> None:
        problems = tuple(problems)
        if problems == self.problems and self.option_count:
            return
        self.problems = problems
        highlighted = self.highlighted
        self.clear_options()
        if not problems:
            self.add_option(Option(Text("✔ no problems found", style="green"), disabled=True))
            self.border_title = "problems"
            return
        for problem in problems:
            style = "red" if problem.severity == "error" else "yellow"
            text = Text(problem.label, style=style)
            if problem.hint:
                text.append(f"  hint: {problem.hint}", style="dim")
            self.add_option(Option(text))
        errors = sum(p.severity == "error" for p in problems)
        self.border_title = f"problems: {errors} ✘ {len(problems) - errors} ⚠"
        if highlighted is not None:
            self.highlighted = min(highlighted, len(problems) - 1)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self.problems):
            self.post_message(self.Chosen(self.problems[event.option_index]))
