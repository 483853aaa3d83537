"""The rules editor: a TextArea with the rules language's colours and inline problems.

Textual 8.2.8 highlights through tree-sitter, which has no grammar for our language, so
this subclass overrides `_build_highlight_map` (the one hook TextArea calls after every
edit) to fill the per-line highlight map from `highlight.scan_line`, plus one mark per
diagnostic. TextArea stores highlights as UTF-8 byte offsets per line; the scanner
works in code points, hence the conversion for non-ASCII lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.style import Style
from textual.widgets import TextArea
from textual.widgets.text_area import TextAreaTheme

from tui.widgets.highlight import scan_line

THEME = TextAreaTheme(
    name="jitprov-rules",
    syntax_styles={
        "comment": Style(color="#7f848e", italic=True),
        "string": Style(color="#98c379"),
        "string.regex": Style(color="#56b6c2"),
        "attribute": Style(color="#e5c07b"),
        "keyword": Style(color="#c678dd", bold=True),
        "constant": Style(color="#d19a66"),
        "number": Style(color="#d19a66"),
        "function": Style(color="#61afef"),
        "field": Style(color="#e06c75"),
        "context": Style(color="#56b6c2", italic=True),
        "operator": Style(color="#abb2bf"),
        # Problems keep the token's colour and add an underline and a tint.
        "problem.error": Style(underline=True, bgcolor="#5c1e1e"),
        "problem.warning": Style(underline=True, bgcolor="#4d4017"),
    },
)


@dataclass(frozen=True, slots=True)
class Mark:
    """A problem's place in the text: rows and columns from 0, end exclusive."""

    row: int
    column: int
    end_row: int
    end_column: int
    severity: str


class RulesEditor(TextArea):
    """Edits one rules file: line numbers, syntax colours, problems underlined."""

    def __init__(self, text: str = "", *, id: str | None = None) -> None:
        self._marks: tuple[Mark, ...] = ()
        super().__init__(
            text,
            language=None,
            show_line_numbers=True,
            soft_wrap=False,
            tab_behavior="indent",
            id=id,
        )
        self.register_theme(THEME)
        self.theme = THEME.name
        self.indent_width = 4

    def set_marks(self, marks: Sequence[Mark]) -> None:
        """Show these problems in the text (replacing the previous ones)."""
        marks = tuple(marks)
        if marks == self._marks:
            return
        self._marks = marks
        self._build_highlight_map()
        self.refresh()

    def _build_highlight_map(self) -> None:
        self._line_cache.clear()
        highlights = self._highlights
        highlights.clear()
        lines = self.document.lines
        for row, line in enumerate(lines):
            tokens = scan_line(line)
            if not tokens:
                continue
            if line.isascii():
                highlights[row] = list(tokens)
            else:
                highlights[row] = [
                    (_byte(line, start), _byte(line, end), kind) for start, end, kind in tokens
                ]
        for mark in getattr(self, "_marks", ()):
            if mark.row >= len(lines):
                continue
            line = lines[mark.row]
            end = mark.end_column if mark.end_row == mark.row else len(line)
            end = max(end, mark.column + 1)  # an empty span still shows one cell
            start = min(mark.column, len(line))
            highlights[mark.row].append(
                (_byte(line, start), _byte(line, end) if end <= len(line) else None, _kind(mark))
            )


def _kind(mark: Mark) -> str:
    return "problem.error" if mark.severity == "error" else "problem.warning"


def _byte(line: str, column: int) -> int:
    """The UTF-8 byte offset of code point `column` in `line`."""
    return len(line[:column].encode("utf-8"))
