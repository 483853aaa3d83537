"""The canonical layout of a rules file (rules-language.md §10), for `jitprov fmt`.

One statement a line; four-space indents in rule bodies and match arms; in a run of
consecutive assignments (or of consecutive `let`s) the operators end in one column;
`=>` aligned within a match; comments kept where they were (end-of-line comments on
their line, own-line comments before what followed them; a comment from inside an
expression moves to its own line above the statement); at most one blank line kept
between statements; minimal parentheses; strings re-escaped canonically.
Formatting is idempotent and keeps the meaning: `parse(fmt(s)) == parse(s)`.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from decimal import Decimal

from rules import ast
from rules.diagnostics import Diagnostic
from rules.grammar import ATTR_NAME_RE
from rules.parse import parse

__all__ = ["FormatError", "format_program", "format_source", "string_literal"]

INDENT = "    "
_BARE_ATTR = re.compile(ATTR_NAME_RE)
_PRECEDENCE = {"??": 2, "or": 3, "and": 4, "+": 7}
_COMPARISON = 6
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t"}


class FormatError(Exception):
    """The source has syntax errors, so it cannot be formatted; see `diagnostics`."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def format_source(source: str) -> str:
    """The canonical layout of `source`; raises FormatError when it does not parse."""
    program, diagnostics = parse(source)
    if program is None:
        raise FormatError(diagnostics)
    return format_program(program, source)


def format_program(program: ast.Program, source: str | None = None) -> str:
    """Lay out a program. With the `source` it was parsed from, comments keep their
    lines and blank lines between statements are kept; without it, comments go
    before the statement that follows them and no blank lines are written."""
    layout = _Layout(source, sorted(program.comments, key=lambda c: c.span.start))
    lines = layout.block(program.statements, 0, 1 << 62, "")
    return "\n".join(lines) + "\n" if lines else ""


def string_literal(value: str, raw: bool = False) -> str:
    """The canonical spelling of a string: raw kept raw when it can be, else escaped."""
    if raw and '"' not in value and not any(ord(c) < 32 and c != "\t" for c in value):
        return f'r"{value}"'
    out = []
    for char in value:
        escaped = _ESCAPES.get(char)
        if escaped is None and (ord(char) < 32 or char == "\x7f"):
            escaped = f"\\u{ord(char):04x}"
        out.append(escaped or char)
    return '"' + "".join(out) + '"'


_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _range(comment: ast.Comment) -> tuple[int, int]:
    return comment.span.start, comment.span.end


def _number(node: ast.NumLit) -> str:
    if _NUMBER.fullmatch(node.text) and Decimal(node.text) == node.value:
        return node.text
    return format(node.value, "f")


def _precedence(node: ast.Expr) -> int:
    match node:
        case ast.IfExpr():
            return 1
        case ast.Binary(op=op):
            return _PRECEDENCE.get(op, _COMPARISON)
        case ast.Not():
            return 5
    return 8


@dataclass
class _Layout:
    """The formatter's state: the source (for lines) and the comments not yet placed."""

    source: str | None
    comments: list[ast.Comment]  # sorted by position
    used: set[int] = field(default_factory=set)  # starts of comments already placed
    first_unused: int = 0  # every comment before this index is placed

    def __post_init__(self) -> None:
        self.starts = [c.span.start for c in self.comments]

    # ------------------------------------------------------------ comments

    def _same_line(self, end: int, comment: ast.Comment) -> bool:
        return self.source is not None and "\n" not in self.source[end : comment.span.start]

    def trailing(self, end: int, limit: int = 1 << 62) -> str:
        """`  # comment` when a comment follows offset `end` on the same line (and
        starts before `limit`)."""
        for index in range(bisect_left(self.starts, end), len(self.comments)):
            comment = self.comments[index]
            if comment.span.start >= limit:
                return ""
            if comment.span.start not in self.used:
                if self._same_line(end, comment):
                    self.used.add(comment.span.start)
                    return "  " + comment.text.rstrip()
                return ""
        return ""

    def before(self, limit: int) -> list[ast.Comment]:
        """Unplaced comments starting before `limit` (marked placed)."""
        stop = bisect_left(self.starts, limit)
        found = [
            c for c in self.comments[self.first_unused : stop] if c.span.start not in self.used
        ]
        self.used.update(c.span.start for c in found)
        self.first_unused = max(self.first_unused, stop)
        return found

    def blank_between(self, end: int, start: int) -> bool:
        return self.source is not None and self.source.count("\n", end, start) >= 2

    # ------------------------------------------------------------ statements

    def block(
        self, statements: tuple[ast.Stmt, ...], start: int, limit: int, indent: str
    ) -> list[str]:
        """The lines of a statement list whose text runs from `start` to `limit`;
        comments before `limit` that no statement claims come last."""
        groups: list[list[str]] = []
        kinds: list[str] = []  # per group, for the alignment runs
        previous_end = start

        def add(lines: list[str], kind: str, item_start: int, item_end: int) -> None:
            nonlocal previous_end
            if groups and self.blank_between(previous_end, item_start):
                groups.append([""])
                kinds.append("blank")
            groups.append(lines)
            kinds.append(kind)
            previous_end = item_end

        for statement in statements:
            for comment in self.before(statement.span.start):
                add([indent + comment.text.rstrip()], "comment", *_range(comment))
            text = self.statement(statement, indent)
            hoisted = self.before(statement.span.end)  # comments inside an expression
            for comment in hoisted:
                add(
                    [indent + comment.text.rstrip()],
                    "comment",
                    statement.span.start,
                    statement.span.start,
                )
            text[-1] += self.trailing(statement.span.end, limit)
            add(text, type(statement).__name__, statement.span.start, statement.span.end)
        for comment in self.before(limit):
            add([indent + comment.text.rstrip()], "comment", *_range(comment))
        _align(groups, kinds)
        return [line for group in groups for line in group]

    def statement(self, node: ast.Stmt, indent: str) -> list[str]:
        match node:
            case ast.Assign():
                return self.lines(f"{node.field} {node.op} " + self.expr(node.value), indent)
            case ast.Let():
                return self.lines(f"let {node.name} = " + self.expr(node.value), indent)
            case ast.Clear():
                return [f"{indent}clear {node.field}"]
            case ast.Deny():
                text = "deny " + string_literal(node.message)
                if node.condition is not None:
                    text += " when " + self.expr(node.condition)
                return self.lines(text, indent)
            case ast.Rule():
                return self.rule(node, indent)
        raise TypeError(f"not a statement: {node!r}")  # pragma: no cover

    def rule(self, node: ast.Rule, indent: str) -> list[str]:
        text = "rule " + string_literal(node.name)
        if node.phase is not None:
            text += f" on {node.phase}"
        header_end = node.name_span.end
        if node.condition is not None:
            text += " when " + self.expr(node.condition)
            header_end = node.condition.span.end
        brace = self._find_brace(header_end, node.span.end)
        hoisted = [indent + c.text.rstrip() for c in self.before(brace)]  # inside the header
        head = self.lines(text + " {", indent)
        on_brace = self.trailing(brace + 1, node.span.end - 1)
        head[-1] += on_brace
        body = self.block(node.body, brace + 1, node.span.end - 1, indent + INDENT)
        if not body and not on_brace:
            return [*hoisted, *head[:-1], head[-1] + "}"]
        return [*hoisted, *head, *body, indent + "}"]

    def _find_brace(self, start: int, end: int) -> int:
        """Offset of the `{` opening a rule body (skipping comments)."""
        if self.source is None:
            return start
        position = start
        while True:
            position = self.source.find("{", position, end)
            if position < 0:
                return start
            if not any(c.span.start <= position < c.span.end for c in self.comments):
                return position
            position += 1

    @staticmethod
    def lines(text: str, indent: str) -> list[str]:
        return [indent + line for line in text.split("\n")]

    # ------------------------------------------------------------ expressions

    def expr(self, node: ast.Expr) -> str:
        """One expression; a match spans several lines, continuation lines indented
        relative to the line the expression starts on."""
        match node:
            case ast.StrLit():
                return string_literal(node.value, node.raw)
            case ast.NumLit():
                return _number(node)
            case ast.BoolLit():
                return "true" if node.value else "false"
            case ast.NullLit():
                return "null"
            case ast.AttrRef():
                bare = _BARE_ATTR.fullmatch(node.name)
                return "@" + (string_literal(node.name) if node.quoted or not bare else node.name)
            case ast.Name():
                return node.name
            case ast.UserField():
                return f"user.{node.field}"
            case ast.Call():
                return f"{node.function}(" + ", ".join(self.expr(a) for a in node.args) + ")"
            case ast.ListLit():
                return "[" + ", ".join(self.expr(i) for i in node.items) + "]"
            case ast.Comprehension():
                text = f"[{self.expr(node.element)} for {node.var} in "
                text += self.expr(node.iterable)
                if node.condition is not None:
                    text += " if " + self.expr(node.condition)
                return text + "]"
            case ast.Match():
                return self.match(node)
            case ast.IfExpr():
                parts = (node.condition, node.then, node.otherwise)
                c, t, o = (self.expr(p) for p in parts)
                return f"if {c} then {t} else {o}"
            case ast.Not():
                return "not " + self.operand(node.operand, 5)
            case ast.Binary():
                precedence = _PRECEDENCE.get(node.op, _COMPARISON)
                left_least = precedence + 1 if precedence == _COMPARISON else precedence
                left = self.operand(node.left, left_least)
                right = self.operand(node.right, precedence + 1)
                return f"{left} {node.op} {right}"
        raise TypeError(f"not an expression: {node!r}")  # pragma: no cover

    def operand(self, node: ast.Expr, least: int) -> str:
        text = self.expr(node)
        return text if _precedence(node) >= least else f"({text})"

    def match(self, node: ast.Match) -> str:
        """`match x {` newline, arms indented four with `=>` aligned, `}`. Comments
        are claimed in source order, so nested matches keep theirs."""
        heads = [
            ", ".join(string_literal(p.value, p.raw) for p in arm.patterns) for arm in node.arms
        ]
        ranges = [(arm.span.start, arm.span.end, arm.result) for arm in node.arms]
        if node.otherwise is not None:
            heads.append("else")
            ranges.append((node.else_span.start, node.otherwise.span.end, node.otherwise))
        width = max((len(head) for head in heads), default=0)
        first = ranges[0][0] if ranges else node.span.end
        header = f"match {self.expr(node.subject)} {{"
        lines = [header + self.trailing(node.subject.span.end, first)]
        limits = [r[0] for r in ranges[1:]] + [node.span.end - 1]  # each arm's trailing

        for head, (start, end, result), limit in zip(heads, ranges, limits, strict=False):
            lines.extend(INDENT + c.text.rstrip() for c in self.before(start))
            arm = f"{INDENT}{head.ljust(width)} => {self.expr(result)}"
            lines.append(arm.replace("\n", "\n" + INDENT) + self.trailing(end, limit))
        if self.source is not None:
            lines.extend(INDENT + c.text.rstrip() for c in self.before(node.span.end - 1))
        lines.append("}")
        return "\n".join(lines)


def _align(groups: list[list[str]], kinds: list[str]) -> None:
    """Pad the first line of each statement in a run of assignments (or of lets) so
    that their operators end in the same column."""
    index = 0
    while index < len(groups):
        kind = kinds[index]
        end = index
        while end < len(kinds) and kinds[end] == kind:
            end += 1
        if kind in ("Assign", "Let") and end - index > 1:
            _pad(groups[index:end], kind == "Let")
        index = max(end, index + 1)


_HEAD = re.compile(r"^(\s*)(let )?(\S+) (=|:=|\?=|\+=|-=) ")


def _pad(run: list[list[str]], is_let: bool) -> None:
    heads = [_HEAD.match(group[0]) for group in run]
    width = max(len(h.group(3)) + len(h.group(4)) for h in heads if h is not None)
    for group, head in zip(run, heads, strict=True):
        if head is None:  # pragma: no cover - every Assign/Let line has this shape
            continue
        indent, let, name, op = head.groups()
        padded = name + " " * (width - len(name) - len(op) + 1) + op
        group[0] = f"{indent}{let or ''}{padded} " + group[0][head.end() :]
