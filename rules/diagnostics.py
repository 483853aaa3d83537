"""Spans, diagnostics and the one renderer used by the CLI and the TUI.

A `Span` is a pair of offsets into the source text, counted in Unicode code points
(Python `str` indices). Lines and columns are derived from it on demand, from 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open range [start, end) of code-point offsets into one source text."""

    start: int
    end: int

    def cover(self, other: Span) -> Span:
        """The smallest span holding both."""
        return Span(min(self.start, other.start), max(self.end, other.end))


@dataclass(frozen=True, slots=True)
class Position:
    """Line and column, both from 1, columns in code points."""

    line: int
    column: int


class SourceMap:
    """Offset to line/column translation for one source text."""

    def __init__(self, text: str) -> None:
        self.text = text
        starts = [0]
        find, index = text.find, text.find("\n")
        while index >= 0:  # str.find, not a loop over every character: checks re-run per keystroke
            starts.append(index + 1)
            index = find("\n", index + 1)
        self._starts = starts

    def position(self, offset: int) -> Position:
        """Line and column (from 1) of a code-point offset."""
        offset = max(0, min(offset, len(self.text)))
        low, high = 0, len(self._starts) - 1
        while low < high:
            mid = (low + high + 1) // 2
            if self._starts[mid] <= offset:
                low = mid
            else:
                high = mid - 1
        return Position(low + 1, offset - self._starts[low] + 1)

    def line_text(self, line: int) -> str:
        """The text of line `line` (from 1), without its newline."""
        start = self._starts[line - 1]
        end = self._starts[line] - 1 if line < len(self._starts) else len(self.text)
        return self.text[start:end]

    def line_count(self) -> int:
        return len(self._starts)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a rules file: what, where, and how to fix it."""

    severity: Severity
    code: str
    message: str
    span: Span
    hint: str | None = None

    def to_json(self, source: SourceMap, path: str) -> dict[str, object]:
        """The `check --json` object (product.md §3)."""
        start = source.position(self.span.start)
        end = source.position(max(self.span.end, self.span.start))
        return {
            "path": path,
            "line": start.line,
            "column": start.column,
            "end_line": end.line,
            "end_column": end.column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


def sort_key(diagnostic: Diagnostic) -> tuple[int, int, str]:
    """Order diagnostics by position, then code."""
    return (diagnostic.span.start, diagnostic.span.end, diagnostic.code)


def render(diagnostic: Diagnostic, source: SourceMap, path: str) -> str:
    """The printed form of rules-language.md §9, with source line, carets and hint.

    ```
    rules/okta.rules:7:15: error[E012]: cannot compare a list with text
       7 | deny "x" when @department == "Sales"
         |               ^^^^^^^^^^^^^^^^^^^^^^
         = hint: use `"Sales" in @department` or `first(@department) == "Sales"`
    ```
    A span running over several lines is underlined to the end of its first line.
    """
    start = source.position(diagnostic.span.start)
    header = (
        f"{path}:{start.line}:{start.column}: "
        f"{diagnostic.severity}[{diagnostic.code}]: {diagnostic.message}"
    )
    text = source.line_text(start.line)
    end = source.position(max(diagnostic.span.end, diagnostic.span.start))
    last_column = end.column if end.line == start.line else len(text) + 1
    width = max(1, last_column - start.column)
    number = str(start.line)
    gutter = " " * len(number)
    lines = [
        header,
        f"   {number} | {text}",
        f"   {gutter} | {' ' * (start.column - 1)}{'^' * width}",
    ]
    if diagnostic.hint:
        lines.append(f"   {gutter} = hint: {diagnostic.hint}")
    return "\n".join(lines)
