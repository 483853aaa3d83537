"""Source text → `Program` plus syntax diagnostics (E001–E007); never raises.

A fast scanner first splits the file into top-level statements, collects comments and
reports lexical errors (E002, E003). Each statement's text (comments blanked) is then
parsed by `rules.grammar` and the result cached by that text, so the editor, which
re-parses on every keystroke, only re-parses the statement that changed. Splitting
also gives error recovery: a syntax error spoils one statement, and parsing resumes
at the next one, so every broken statement in a file is reported.

No tree deeper than `MAX_DEPTH` expression levels leaves this module: deeper nesting
exhausts pyparsing's recursion first, and a long operator chain (`a + b + …`, parsed
flat and folded into a tree as deep as it is long) is measured after parsing. So no
later phase (moving a cached statement, checking, compiling, formatting) can run into
Python's recursion limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, TypeVar, get_args

import pyparsing as pp

from rules import ast
from rules.diagnostics import Diagnostic, Span
from rules.grammar import BODY_STATEMENT, STATEMENT, CodedError
from rules.vocabulary import MAX_DEPTH

__all__ = ["parse"]

# One alternative per token class; strings may be unterminated (checked afterwards).
_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n]+)
    |(?P<comment>\#[^\n]*)
    |(?P<string>r"[^"\n]*"|@?"(?:[^"\\\n]|\\.)*")
    |(?P<open>r"[^"\n]*|@?"(?:[^"\\\n]|\\.)*\\?)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<attr>@[A-Za-z_][A-Za-z0-9_.:-]*)
    |(?P<number>-?[0-9]+(?:\.[0-9]+)?)
    |(?P<op>:=|\?=|\+=|-=|=>|==|!=|<=|>=|\?\?|[=<>+(){}\[\],.@-])
    |(?P<other>.)""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|u|.?)")
_ASSIGN_OPS = frozenset({"=", ":=", "?=", "+=", "-="})
_STATEMENT_WORDS = frozenset({"let", "deny", "rule", "clear"})
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_RAW_HINT = 'use a raw string r"..." to keep backslashes as they are'
_CACHE_LIMIT = 20_000
_BOM = "\ufeff"
_CLOSER = re.compile(r'"([)\]}])"$')
_TOO_DEEP = "expression nested too deeply"
_TOO_DEEP_HINT = f"at most {MAX_DEPTH} levels: split it into `let` steps"
_EXPR_TYPES = get_args(ast.Expr)

N = TypeVar("N")


@dataclass(frozen=True, slots=True)
class _Problem:
    """A syntax error found in one statement (offsets into the file)."""

    code: str
    message: str
    start: int
    end: int
    hint: str | None = None


@dataclass(slots=True)
class _Chunk:
    start: int
    end: int  # end of its last token
    is_rule: bool = False
    lexical: list[_Problem] = field(default_factory=list)  # E002/E003 in its strings
    body_starts: list[int] = field(default_factory=list)  # statements in a rule body
    body_end: int = 0  # the rule's closing "}" (or the chunk's end when it has none)


# statement text (comments blanked) → (offset it was parsed at, statement, problem)
_cache: dict[str, tuple[int, ast.Stmt | None, _Problem | None]] = {}


def parse(source: str) -> tuple[ast.Program | None, list[Diagnostic]]:
    """Parse a whole rules file. The program is None when any syntax error occurred."""
    comments, chunks = _scan(source)
    statements: list[ast.Stmt] = []
    diagnostics: list[Diagnostic] = []
    blanked = _blank(source, comments)
    for chunk in chunks:
        statement, problem = (
            (None, chunk.lexical[0]) if chunk.lexical else _parse_chunk(blanked, chunk)
        )
        if problem is not None:
            problems = [(chunk, problem)]
            if chunk.body_starts:
                inner = _body_problems(blanked, chunk)
                in_body = problem.start >= chunk.body_starts[0]
                problems = inner if in_body and inner else [*problems, *inner]
            diagnostics.extend(_diagnostic(source, where, p) for where, p in problems)
        elif statement is not None:
            statements.append(statement)
    if diagnostics:
        return None, diagnostics
    return ast.Program(tuple(statements), tuple(comments), Span(0, len(source))), []


def _body_problems(blanked: str, chunk: _Chunk) -> list[tuple[_Chunk, _Problem]]:
    """The errors of a broken rule's body statements, each parsed on its own, so a rule
    body resynchronises like the top level and reports every broken statement."""
    starts = chunk.body_starts
    ends = [*starts[1:], chunk.body_end or chunk.end]
    problems = []
    for start, end in zip(starts, ends, strict=True):
        end = start + len(blanked[start:end].rstrip())
        lexical = [p for p in chunk.lexical if start <= p.start < end]
        if lexical:
            problems.append((_Chunk(start, end), lexical[0]))
            continue
        _, problem = _parse_statement(blanked, start, end, BODY_STATEMENT)
        if problem is not None:
            problems.append((_Chunk(start, end), problem))
    return problems


def _parse_chunk(blanked: str, chunk: _Chunk) -> tuple[ast.Stmt | None, _Problem | None]:
    """The statement of one chunk, from the cache (moved to its offset) when possible."""
    text = blanked[chunk.start : chunk.end]
    cached = _cache.get(text)
    if cached is None:
        statement, problem = _parse_statement(blanked, chunk.start, chunk.end)
        if problem is not None and not chunk.start <= problem.start <= problem.end <= chunk.end:
            return statement, problem  # it depends on the text around it: not cached
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
    else:
        offset, statement, problem = cached
        if offset == chunk.start:
            return statement, problem
        statement = shift(statement, chunk.start - offset)
        problem = _moved(problem, chunk.start - offset)
    _cache[text] = (chunk.start, statement, problem)
    return statement, problem


def _moved(problem: _Problem | None, delta: int) -> _Problem | None:
    """A cached statement's problem at the offset the statement now has (its offsets
    are plain ints, which `shift` leaves alone)."""
    if problem is None or delta == 0:
        return problem
    return replace(problem, start=problem.start + delta, end=problem.end + delta)


def _parse_statement(
    text: str, start: int, end: int, grammar: pp.ParserElement = STATEMENT
) -> tuple[ast.Stmt | None, _Problem | None]:
    """Parse the statement at text[start:end] in place, so spans are file offsets.

    `_parse` is pyparsing's own entry point behind `parse_string`; calling it at an
    offset avoids copying the statement out and shifting every span back afterwards.
    """
    try:
        loc, result = grammar._parse(text, start)
        if loc > end:  # ran into the next statement: parse the statement on its own
            return _parse_statement(text[:end], start, end, grammar)
        loc = grammar.preParse(text, loc)
        if loc < end:
            raise pp.ParseException(text, loc, "Expected end of text")
    except CodedError as error:
        if error.span.end > end and len(text) > end:  # it read into the next statement
            return _parse_statement(text[:end], start, end, grammar)
        return None, _Problem(
            error.code, error.message, error.span.start, error.span.end, error.hint
        )
    except pp.ParseBaseException as error:
        if error.loc > end and len(text) > end:
            return _parse_statement(text[:end], start, end, grammar)
        expected = str(error.msg)
        expected = expected[len("Expected ") :] if expected.startswith("Expected ") else expected
        if "end of text" in expected:
            expected = "an operator or a new statement"
        return None, _Problem("E001", f"expected {expected}", error.loc, error.loc)
    except RecursionError:
        return None, _Problem("E001", _TOO_DEEP, start, end, _TOO_DEEP_HINT)
    statement: ast.Stmt = result[0]
    # Each level of an expression takes at least two characters (`a+`, `[`…`]`, `f(`…):
    # a shorter statement cannot be too deep, and most are much shorter.
    if end - start > 2 * MAX_DEPTH:
        deep = _too_deep(statement)
        if deep is not None:
            return None, _Problem("E001", _TOO_DEEP, deep.start, deep.end, _TOO_DEEP_HINT)
    return statement, None


def _too_deep(statement: ast.Stmt) -> Span | None:
    """The span of the first (in the text) of a statement's expressions that nests more
    than MAX_DEPTH levels deep, or None. Iterative, so a chain of any length is measured
    safely, and it never walks below that level."""
    found: Span | None = None
    stack: list[tuple[Any, int, Span | None]] = [(statement, 0, None)]
    while stack:
        node, depth, outer = stack.pop()
        if isinstance(node, tuple):
            stack.extend((item, depth, outer) for item in node)
            continue
        if not is_dataclass(node) or isinstance(node, Span):
            continue
        if isinstance(node, _EXPR_TYPES):
            depth += 1
            outer = outer or node.span
            if depth > MAX_DEPTH:
                if found is None or outer.start < found.start:
                    found = outer
                continue
        names = _FIELDS.get(type(node))
        if names is None:
            names = _FIELDS[type(node)] = tuple(f.name for f in fields(node))
        stack.extend((getattr(node, name), depth, outer) for name in names)
    return found


def _diagnostic(source: str, chunk: _Chunk, problem: _Problem) -> Diagnostic:
    start, end = problem.start, problem.end
    message, hint = problem.message, problem.hint
    if problem.code == "E001" and "found" not in message and message != _TOO_DEEP:
        start, end, found = _found(source, start)
        closer = _CLOSER.search(message)
        if closer is not None and start >= chunk.end:
            hint = f'a bracket is not closed: add the missing "{closer.group(1)}"'
        if start == len(source):  # point just after the statement's last token
            start = end = chunk.end
        message = f"{message}, found {found}"
    return Diagnostic("error", problem.code, message, Span(start, end), hint)


def _found(source: str, offset: int) -> tuple[int, int, str]:
    """The token at or after `offset` (skipping blanks and comments), described."""
    while offset < len(source):
        token = _TOKEN.match(source, offset)
        assert token is not None  # `other` matches any character but a newline
        kind = token.lastgroup
        if kind in ("ws", "comment"):
            offset = token.end()
            continue
        text = token.group()
        if kind == "string":
            what = "a string"
        elif kind == "other" and not text.isprintable():
            what = f"the character U+{ord(text):04X}"
        elif len(text) > 20:
            what = f'"{text[:20]}…"'
        else:
            what = f'"{text}"'
        return token.start(), token.end(), what
    return len(source), len(source), "the end of the file"


def _scan(source: str) -> tuple[list[ast.Comment], list[_Chunk]]:
    """Comments and top-level statement chunks, with lexical errors attached."""
    comments: list[ast.Comment] = []
    chunks: list[_Chunk] = []
    stack: list[str] = []  # open brackets: "(", "[", "{" (expression) or "rule"
    pending_match = 0  # `match` keywords whose "{" has not come yet, at this level
    chunk: _Chunk | None = None
    previous: re.Match[str] | None = None  # previous significant token
    end_before_previous = 0
    before_previous = ""  # text of the token before `previous`: `let` makes NAME = no start
    start = 1 if source.startswith(_BOM) else 0  # editors on Windows may add one
    length = len(source)
    skip = 0  # after an unterminated string: the rest of its line is not read
    # One pass of finditer (`other` matches any character, so the tokens tile the text):
    # the editor re-scans the whole file on every keystroke.
    for token in _TOKEN.finditer(source, start):
        kind = token.lastgroup
        if kind == "ws":
            continue
        if skip and token.start() < skip:
            continue
        offset = token.end()
        text = token.group()
        if kind == "comment":
            comments.append(ast.Comment(text, Span(token.start(), offset)))
            continue
        starts = False
        if kind == "word" and text in _STATEMENT_WORDS:
            starts = True
            token_start = token.start()
        elif kind == "op" and text in _ASSIGN_OPS and previous is not None:
            starts = previous.lastgroup == "word" and before_previous != "let"
            token_start = previous.start()
        if starts and stack and stack[-1] != "rule":
            while stack and stack[-1] != "rule":  # an unclosed bracket: give up on it
                stack.pop()
        if starts and not stack and (chunk is None or chunk.start != token_start):
            if chunk is not None and token_start != token.start():
                chunk.end = end_before_previous  # the word before "=" starts the new one
            chunk = _Chunk(token_start, offset, is_rule=text == "rule")
            chunks.append(chunk)
            pending_match = 0
        elif chunk is None:
            chunk = _Chunk(token.start(), offset)
            chunks.append(chunk)
        elif starts and stack == ["rule"]:
            chunk.body_starts.append(token_start)  # for recovery inside a rule body
        chunk.end = offset
        if kind in ("string", "open"):
            problem = _check_string(text, token.start(), kind == "open")
            if problem is not None:
                chunk.lexical.append(problem)
            if kind == "open":  # skip the rest of the line
                skip = source.find("\n", offset)
                skip = length if skip < 0 else skip
        elif kind == "word" and text == "match":
            pending_match += 1
        elif text in _OPENERS:
            if text == "{" and pending_match == 0 and not stack and chunk.is_rule:
                stack.append("rule")
            else:
                if text == "{" and pending_match > 0:
                    pending_match -= 1
                stack.append(text)
        elif text in (")", "]", "}"):
            opener = {")": "(", "]": "[", "}": "{"}[text]
            for depth in range(len(stack) - 1, -1, -1):
                if stack[depth] == opener or (opener == "{" and stack[depth] == "rule"):
                    if stack[depth] == "rule":
                        chunk.body_end = token.start()
                    del stack[depth:]
                    break
        end_before_previous = previous.end() if previous is not None else 0
        before_previous = previous.group() if previous is not None else ""
        previous = token
    return comments, chunks


def _check_string(text: str, start: int, unterminated: bool) -> _Problem | None:
    """E003 for an unterminated string, E002 for an escape outside the allowed set."""
    quote = text.index('"')
    if unterminated:
        return _Problem(
            "E003",
            "unterminated string: a string must end on the line where it starts",
            start,
            start + len(text),
            'close it with `"`; write a line break as \\n',
        )
    if text[0] == "r":
        return None
    for escape in _ESCAPE.finditer(text, quote + 1, len(text) - 1):
        body = escape.group(1)
        if body in ('"', "\\", "n", "t"):
            continue
        if len(body) == 5 and not 0xD800 <= int(body[1:], 16) <= 0xDFFF:
            continue
        where = start + escape.start()
        return _Problem(
            "E002",
            f'invalid escape sequence "{escape.group()}" in a string',
            where,
            where + len(escape.group()),
            _RAW_HINT + r"; the escapes are \" \\ \n \t \uXXXX",
        )
    return None


def _blank(source: str, comments: list[ast.Comment]) -> str:
    """The source with every comment (and a leading byte-order mark) replaced by
    spaces, offsets unchanged."""
    last = 1 if source.startswith(_BOM) else 0
    parts: list[str] = [" "] if last else []
    for comment in comments:
        parts.append(source[last : comment.span.start])
        parts.append(" " * (comment.span.end - comment.span.start))
        last = comment.span.end
    parts.append(source[last:])
    return "".join(parts)


_FIELDS: dict[type, tuple[str, ...]] = {}


def shift(node: N, delta: int) -> N:
    """A copy of `node` with every span moved by `delta` (for cached statements)."""
    if delta == 0:
        return node
    return _shift(node, delta)  # type: ignore[no-any-return]


def _shift(node: Any, delta: int) -> Any:
    if isinstance(node, Span):
        return Span(node.start + delta, node.end + delta)
    if isinstance(node, tuple):
        return tuple(_shift(item, delta) for item in node)
    if not is_dataclass(node):
        return node
    cls: Any = type(node)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(node))
    return cls(*[_shift(getattr(node, name), delta) for name in names])
