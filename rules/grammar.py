r"""The pyparsing grammar of the rules language (rules-language.md §2, §5, §7).

Parse actions only build `rules.ast` nodes (spans are offsets into the parsed text);
nothing is evaluated. `rules.parse` feeds this grammar one top-level statement at a
time, with comments already blanked out, and turns exceptions into diagnostics.
Errors the grammar can name precisely raise `CodedError` (E004, E005, E006, E007).

EBNF (whitespace, newlines and comments between tokens are not significant):

    program    = { statement } ;
    statement  = assign | let | deny | rule | clear ;
    assign     = IDENT assign_op expr ;              (* IDENT must not be a keyword: E005 *)
    assign_op  = "=" | ":=" | "?=" | "+=" | "-=" ;
    let        = "let" IDENT "=" expr ;
    clear      = "clear" IDENT ;
    deny       = "deny" STRING [ "when" expr ] ;
    rule       = "rule" STRING [ "on" ( "create" | "update" ) ] [ "when" expr ]
                 "{" { assign | let | deny | clear } "}" ;     (* rules do not nest *)
    expr       = if_expr | coalesce ;
    if_expr    = "if" expr "then" expr "else" expr ;
    coalesce   = or_expr { "??" or_expr } ;
    or_expr    = and_expr { "or" and_expr } ;
    and_expr   = not_expr { "and" not_expr } ;
    not_expr   = "not" not_expr | comparison ;
    comparison = sum [ cmp_op sum ] ;                 (* a second cmp_op: E004 *)
    cmp_op     = "==" | "!=" | "<=" | ">=" | "<" | ">" | "in" | "not" "in" | "matches" ;
    sum        = primary { "+" primary } ;
    primary    = ATTR | STRING | NAME [ args ] | NUMBER | list | "(" expr ")" | match
               | "true" | "false" | "null" | USER_FIELD ;  (* "if" here: E006 *)
    args       = "(" [ expr { "," expr } ] ")" ;
    list       = "[" [ expr ( "for" IDENT "in" expr [ "if" expr ] | { "," expr } ) ] "]" ;
    match      = "match" expr "{" { arm } [ "else" "=>" expr ] "}" ;
    arm        = STRING { "," STRING } "=>" expr ;

    IDENT      = /[A-Za-z_][A-Za-z0-9_]*/ ;   NAME = IDENT that is not a keyword ;
    STRING     = /"([^"\\\n]|\\["\\nt]|\\u[0-9A-Fa-f]{4})*"/ | /r"[^"\n]*"/ ;
    ATTR       = "@" ( /[A-Za-z_][A-Za-z0-9_.:-]*/ | STRING ) ;
    NUMBER     = /-?[0-9]+(\.[0-9]+)?/ ;   (* more than 100 characters: E007 *)
    USER_FIELD = /user\.[A-Za-z_][A-Za-z0-9_]*/ ;

How it is built (for speed, measured in docs/rules.md): the levels coalesce … sum are
one flat `operand { operator operand }` sequence (an operand being a primary, an
`if`, or `not` + operand), folded by precedence climbing in the `_climb` parse action,
which also raises E004, E006 and the error for `not` right after a comparison or `+`.
Every single-token primary is one Regex; a lone token with no operator after it is
one atomic Regex. Keywords and punctuation stay in the tokens (cheaper than Suppress)
and the builders drop them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pyparsing as pp

from rules import ast
from rules.diagnostics import Span
from rules.vocabulary import KEYWORDS, MAX_NUMBER_LENGTH

_IDENT_CHARS = "A-Za-z0-9_"
_NOT_IDENT = f"(?![{_IDENT_CHARS}])"
_KEYWORD_ALT = "|".join(sorted(KEYWORDS, key=len, reverse=True))
IDENT_RE = "[A-Za-z_][A-Za-z0-9_]*"
NAME_RE = f"(?!(?:{_KEYWORD_ALT}){_NOT_IDENT}){IDENT_RE}"
ATTR_NAME_RE = "[A-Za-z_][A-Za-z0-9_.:-]*"
_STRING_BODY = r'"(?:[^"\\\n]|\\.)*"'
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_IDENT_START = re.compile(IDENT_RE)
_ESCAPE_RE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)")


class CodedError(pp.ParseSyntaxException):
    """A syntax error the grammar can name exactly: code, message, span, hint.

    It subclasses ParseSyntaxException so that pyparsing re-raises it unchanged.
    """

    def __init__(
        self, text: str, code: str, message: str, span: Span, hint: str | None = None
    ) -> None:
        super().__init__(text, span.start, message)
        self.code = code
        self.message = message
        self.span = span
        self.hint = hint


@dataclass(frozen=True, slots=True)
class _Tok:
    """An operator or keyword token with its place, for op_span and node spans."""

    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Else:
    """A match's `else => value` arm, until the Match node is built."""

    value: ast.Expr
    span: Span


def decode_string(body: str) -> str:
    """The value of a string literal's body (between the quotes); escapes are pre-checked."""
    if "\\" not in body:
        return body

    def one(found: re.Match[str]) -> str:
        escape = found.group(1)
        return chr(int(escape[1:], 16)) if len(escape) == 5 else _ESCAPES.get(escape, escape)

    return _ESCAPE_RE.sub(one, body)


def _atom(text: str, loc: int, toks: pp.ParseResults) -> ast.Expr:
    """Every single-token primary: attribute, string, number, constant, user.FIELD, name."""
    found: re.Match[str] = toks[0]
    spelled = found.group()
    span = Span(loc, loc + len(spelled))
    kind = found.lastgroup
    if kind == "attr":
        return ast.AttrRef(spelled[1:], span=span)
    if kind == "string":
        return ast.StrLit(decode_string(spelled[1:-1]), span=span)
    if kind == "name":
        return ast.Name(spelled, span)
    if kind == "number":
        if len(spelled) > MAX_NUMBER_LENGTH:
            message = (
                f"number literal too long: {len(spelled)} characters (at most {MAX_NUMBER_LENGTH})"
            )
            hint = 'compare a longer run of digits as text ("...") instead'
            raise CodedError(text, "E007", message, span, hint)
        return ast.NumLit(Decimal(spelled), spelled, span)
    if kind == "raw":
        return ast.StrLit(spelled[2:-1], raw=True, span=span)
    if kind == "quoted":
        return ast.AttrRef(decode_string(spelled[2:-1]), quoted=True, span=span)
    if kind == "user":
        return ast.UserField(spelled[5:], Span(loc + 5, span.end), span)
    return ast.NullLit(span) if spelled == "null" else ast.BoolLit(spelled == "true", span)


def _tok(text: str, loc: int, toks: pp.ParseResults) -> _Tok:
    spelled: str = toks[0]
    canonical = "not in" if spelled[:3] == "not" and len(spelled) > 3 else spelled
    return _Tok(canonical, loc, loc + len(spelled))


def _ident(text: str, loc: int, toks: pp.ParseResults) -> _Tok:
    word: str = toks[0]
    if word in KEYWORDS:
        message = f'"{word}" is a keyword and cannot be used as a name'
        raise CodedError(text, "E005", message, Span(loc, loc + len(word)))
    return _Tok(word, loc, loc + len(word))


def _end(text: str, loc: int, toks: pp.ParseResults) -> int:
    """Closing brackets become their end offset, so the enclosing node knows its end."""
    return loc + 1


def _call(text: str, loc: int, toks: pp.ParseResults) -> ast.Call:
    name = toks[0].rstrip("( \t\r\n")
    args = tuple(t for t in toks[1:-1] if not isinstance(t, str))  # drop the commas
    return ast.Call(name, args, Span(loc, loc + len(name)), Span(loc, toks[-1]))


_PRECEDENCE = {"??": 2, "or": 3, "and": 4, "+": 7}
_PRECEDENCE.update(dict.fromkeys(("==", "!=", "<", "<=", ">", ">=", "in", "not in", "matches"), 6))
_COMPARISON = 6


class _Climber:
    """Precedence climbing over a flat `operand (op operand)*` token list (§5)."""

    def __init__(self, text: str, items: list[Any]) -> None:
        self.text = text
        self.items = items
        self.index = 0

    def expression(self, least: int) -> ast.Expr:
        left = self.unary(least)
        compared = False
        while self.index < len(self.items):
            op: _Tok = self.items[self.index]
            precedence = _PRECEDENCE[op.text]
            if precedence < least:
                break
            if compared and precedence == _COMPARISON:
                hint = "combine them with `and`: `a < b and b < c`"
                message = "comparisons cannot be chained"
                raise CodedError(self.text, "E004", message, Span(op.start, op.end), hint)
            self.index += 1
            right = self.expression(precedence + 1)
            compared = precedence == _COMPARISON
            left = ast.Binary(
                op.text,  # type: ignore[arg-type]
                left,
                right,
                Span(op.start, op.end),
                Span(left.span.start, right.span.end),
            )
        return left

    def unary(self, least: int) -> ast.Expr:
        item = self.items[self.index]
        self.index += 1
        if isinstance(item, _Tok):  # "not"
            if least > _COMPARISON - 1:
                message, hint = (
                    'expected an expression, found "not"',
                    "wrap `not ...` in parentheses",
                )
                raise CodedError(self.text, "E001", message, Span(item.start, item.end), hint)
            operand = self.expression(_COMPARISON - 1)
            return ast.Not(operand, Span(item.start, operand.span.end))
        if isinstance(item, _BareIf):
            if self.index > 1:
                start = item.node.span.start
                message = 'an "if" expression inside an operator needs parentheses'
                hint = "wrap it in parentheses: `x ?? (if c then a else b)`"
                raise CodedError(self.text, "E006", message, Span(start, start + 2), hint)
            return item.node
        node: ast.Expr = item
        return node


@dataclass(frozen=True, slots=True)
class _BareIf:
    """An `if` expression met as an operand, not inside parentheses."""

    node: ast.IfExpr


def _climb(text: str, loc: int, toks: pp.ParseResults) -> ast.Expr:
    if len(toks) == 1 and not isinstance(toks[0], (_Tok, _BareIf)):
        node: ast.Expr = toks[0]
        return node
    return _Climber(text, list(toks)).expression(0)


def _nested_rule(text: str, loc: int, toks: pp.ParseResults) -> None:
    message = 'expected a statement or "}", found "rule"'
    hint = "rules do not nest: move this rule after the closing `}` of the enclosing one"
    raise CodedError(text, "E001", message, Span(loc, loc + 4), hint)


def _nodes(toks: pp.ParseResults) -> list[Any]:
    """The tokens without keywords and punctuation (the only `str` tokens): keeping
    those in the results is cheaper than a Suppress layer around each."""
    return [t for t in toks if not isinstance(t, str)]


def _if(text: str, loc: int, toks: pp.ParseResults) -> _BareIf:
    condition, then, otherwise = _nodes(toks)
    return _BareIf(ast.IfExpr(condition, then, otherwise, Span(loc, otherwise.span.end)))


def _paren(text: str, loc: int, toks: pp.ParseResults) -> ast.Expr:
    inner: ast.Expr = toks[1]  # after "("
    return replace(inner, span=Span(loc, toks[2]))


def _list(text: str, loc: int, toks: pp.ParseResults) -> ast.Expr:
    items = _nodes(toks)
    span = Span(loc, items.pop())
    if len(items) > 1 and isinstance(items[1], _Tok):  # [E for var in L (if C)?]
        var: _Tok = items[1]
        condition = items[3] if len(items) > 3 else None
        return ast.Comprehension(
            items[0], var.text, items[2], condition, Span(var.start, var.end), span
        )
    return ast.ListLit(tuple(items), span)


def _arm(text: str, loc: int, toks: pp.ParseResults) -> ast.MatchArm:
    result: ast.Expr = toks[-1]
    patterns = tuple(t for t in toks[:-1] if not isinstance(t, str))  # drop "," and "=>"
    return ast.MatchArm(patterns, result, Span(loc, result.span.end))


def _else(text: str, loc: int, toks: pp.ParseResults) -> _Else:
    return _Else(toks[-1], Span(loc, loc + 4))


def _match(text: str, loc: int, toks: pp.ParseResults) -> ast.Match:
    items = _nodes(toks)
    end: int = items.pop()
    otherwise = items.pop() if isinstance(items[-1], _Else) else None
    return ast.Match(
        items[0],
        tuple(items[1:]),
        otherwise.value if otherwise else None,
        otherwise.span if otherwise else Span(end - 1, end),
        Span(loc, end),
    )


def _assign_head(text: str, loc: int, toks: pp.ParseResults) -> _Tok:
    spelled: str = toks[0]
    field = _IDENT_START.match(spelled)
    assert field is not None  # the Regex only matches this shape
    _ident(text, loc, pp.ParseResults([field.group()]))
    return _Tok(spelled[field.end() :].strip(), loc, loc + field.end())


def _assign(text: str, loc: int, toks: pp.ParseResults) -> ast.Assign:
    head: _Tok = toks[0]
    value: ast.Expr = toks[1]
    op: ast.AssignOp = head.text  # type: ignore[assignment]  # the Regex admits only these
    field = text[head.start : head.end]
    return ast.Assign(field, op, value, Span(head.start, head.end), Span(loc, value.span.end))


def _let(text: str, loc: int, toks: pp.ParseResults) -> ast.Let:
    name: _Tok = toks[-2]
    value: ast.Expr = toks[-1]
    return ast.Let(name.text, value, Span(name.start, name.end), Span(loc, value.span.end))


def _clear(text: str, loc: int, toks: pp.ParseResults) -> ast.Clear:
    name: _Tok = toks[-1]
    return ast.Clear(name.text, Span(name.start, name.end), Span(loc, name.end))


def _deny(text: str, loc: int, toks: pp.ParseResults) -> ast.Deny:
    items = _nodes(toks)
    message: ast.StrLit = items[0]
    condition: ast.Expr | None = items[1] if len(items) > 1 else None
    end = condition.span.end if condition is not None else message.span.end
    return ast.Deny(message.value, condition, message.span, Span(loc, end))


_STATEMENTS = (ast.Let, ast.Assign, ast.Clear, ast.Deny)


def _rule(text: str, loc: int, toks: pp.ParseResults) -> ast.Rule:
    items = _nodes(toks)
    end: int = items.pop()
    name: ast.StrLit = items.pop(0)
    phase = None
    if items and isinstance(items[0], _Tok):
        phase = items.pop(0).text
    condition = None
    if items and not isinstance(items[0], _STATEMENTS):  # the `when` condition
        condition = items.pop(0)
    return ast.Rule(name.value, phase, condition, tuple(items), name.span, Span(loc, end))


def _build() -> dict[str, pp.ParserElement]:
    """Assemble the grammar; returns the named entry points."""

    def kw(word: str) -> pp.ParserElement:
        return pp.Keyword(word, ident_chars=pp.alphanums + "_").set_name(f'"{word}"')

    def mark(symbol: str) -> pp.ParserElement:
        """Punctuation left in the tokens (cheaper than Suppress); builders drop it."""
        return pp.Literal(symbol).set_name(f'"{symbol}"')

    def lit(symbol: str) -> pp.ParserElement:
        return pp.Suppress(pp.Literal(symbol)).set_name(f'"{symbol}"')

    def closer(symbol: str, name: str) -> pp.ParserElement:
        return pp.Literal(symbol).set_name(name).set_parse_action(_end)

    def regex(pattern: str, name: str, action: Any) -> pp.ParserElement:
        return pp.Regex(pattern).set_name(name).set_parse_action(action)

    expr = pp.Forward().set_name("an expression")
    string = pp.Regex(rf'(?P<string>{_STRING_BODY})|(?P<raw>r"[^"\n]*")', as_match=True)
    string.set_name("a string").set_parse_action(_atom)
    ident = regex(IDENT_RE, "a name", _ident)
    # One Regex for every single-token primary, most frequent first; a name followed
    # by "(" is left to `call`.
    atoms = (
        rf'@(?P<attr>{ATTR_NAME_RE})|(?P<string>{_STRING_BODY})|(?P<raw>r"[^"\n]*")'
        rf"|(?P<name>{NAME_RE})(?![A-Za-z0-9_]|\s*\()|(?P<number>-?[0-9]+(?:\.[0-9]+)?)"
        rf"|@(?P<quoted>{_STRING_BODY})|(?P<user>user\.{IDENT_RE})"
        rf"|(?P<constant>true|false|null){_NOT_IDENT}"
    )
    operators = rf"\?\?|==|!=|<=|>=|<|>|\+(?!=)|(?:or|and|in|matches|not\s+in){_NOT_IDENT}"
    atom = pp.Regex(atoms, as_match=True).set_name("an expression").set_parse_action(_atom)
    # Shortcut for the most common expression, one token with no operator after it:
    # one Regex instead of the operand/operator loop (about a fifth of all calls).
    lone_atom = pp.Regex(rf"(?>{atoms})(?!\s*(?:{operators}))", as_match=True)  # atomic group
    lone_atom.set_name("an expression").set_parse_action(_atom)
    call_args = pp.Opt(expr + (mark(",") - expr)[...]) - closer(")", '"," or ")"')
    call_args.set_name("arguments")
    call = (pp.Regex(rf"{NAME_RE}\s*\(") - call_args).set_name("a call").set_parse_action(_call)

    comp_tail = kw("for") - ident - kw("in") - expr
    comp_tail = (comp_tail - pp.Opt(kw("if") - expr)).set_name("a comprehension")
    items_tail = (mark(",") - expr)[...].set_name("list items")
    list_ = mark("[") - pp.Opt(expr + (comp_tail | items_tail)) - closer("]", '"," or "]"')
    list_.set_name("a list").set_parse_action(_list)
    paren = mark("(") - expr - closer(")", '")"')
    paren.set_name("an expression").set_parse_action(_paren)
    arm = string + (mark(",") - string)[...] - mark("=>") - expr
    arm.set_name("a match arm").set_parse_action(_arm)
    else_arm = (kw("else") - lit("=>") - expr).set_name('"else"')
    else_arm.set_parse_action(_else)
    match_end = (else_arm - closer("}", '"}"')) | closer("}", '"}"')
    match_end.set_name('a string pattern, "else" or "}"')
    match = kw("match") - expr - lit("{") - arm[...] - match_end
    match.set_name("match").set_parse_action(_match)
    if_expr = kw("if") - expr - kw("then") - expr
    if_expr = (if_expr - kw("else") - expr).set_name('"if"').set_parse_action(_if)
    negated = pp.Forward().set_name("an expression")  # only `not` recurses through it
    not_ = (regex(f"not{_NOT_IDENT}", '"not"', _tok) - negated).set_name('"not"')
    operand = (atom | call | list_ | paren | match | not_ | if_expr).set_name("an expression")
    negated <<= operand
    binary = regex(operators, "an operator", _tok)
    flat = (operand + (binary - operand)[...]).set_name("an expression").set_parse_action(_climb)
    expr <<= (lone_atom | flat).set_name("an expression")

    assign_head = regex(rf"{IDENT_RE}\s*(?::=|\?=|\+=|-=|=(?![=>]))", "a field", _assign_head)
    assign = (assign_head - expr).set_name("an assignment").set_parse_action(_assign)
    equals = pp.Suppress(pp.Regex("=(?![=>])")).set_name('"="')
    let = (kw("let") - ident - equals - expr).set_name("let").set_parse_action(_let)
    clear = (kw("clear") - ident).set_name("clear").set_parse_action(_clear)
    deny = kw("deny") - string - pp.Opt(kw("when") - expr)
    deny.set_name("deny").set_parse_action(_deny)
    phase = (kw("create") | kw("update")).set_name('"create" or "update"').set_parse_action(_tok)
    nested_rule = kw("rule").set_parse_action(_nested_rule)
    body_stmt = (assign | let | deny | clear | nested_rule).set_name("a statement")
    rule = (
        kw("rule")
        - string
        - pp.Opt(kw("on") - phase)
        - pp.Opt(kw("when") - expr)
        - lit("{")
        - body_stmt[...]
        - closer("}", 'a statement or "}"')
    )
    rule.set_name("rule").set_parse_action(_rule)
    statement = (assign | let | deny | rule | clear).set_name("a statement")
    program = statement[...].set_name("a program")
    for element in (statement, body_stmt, program, expr):
        element.parse_with_tabs()
        element.streamline()
    return {"statement": statement, "body": body_stmt, "program": program, "expression": expr}


_ENTRY = _build()
STATEMENT: pp.ParserElement = _ENTRY["statement"]
BODY_STATEMENT: pp.ParserElement = _ENTRY["body"]  # a statement inside a rule body
PROGRAM: pp.ParserElement = _ENTRY["program"]
EXPRESSION: pp.ParserElement = _ENTRY["expression"]
