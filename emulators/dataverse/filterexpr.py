"""OData ``$filter``: tokenizer, recursive-descent parser with type checks, and evaluator."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import bad_request, unknown_property
from .metadata import ColType, Table
from .values import parse_date, parse_datetime

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<punct>[(),])
  | (?P<string>'(?:[^']|'')*')
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)

_COMPARE = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual"}
_COMPARE |= {"lt": "LessThan", "le": "LessThanOrEqual"}
_FUNCS = ("contains", "startswith", "endswith")
_STRINGS = (ColType.STRING, ColType.MEMO)
_NUMBERS = (ColType.INT, ColType.BIGINT, ColType.DECIMAL)
_TIMES = (ColType.DATETIME, ColType.DATE)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class Prop:
    """A property reference."""

    name: str
    type: ColType


@dataclass(frozen=True)
class Lit:
    """A literal; ``type`` None means ``null``."""

    value: Any
    type: ColType | None


Operand = Prop | Lit
Predicate = Callable[[Mapping[str, Any]], bool]


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise bad_request(f"Syntax error at position {pos} in '{text}'.")
        if match.lastgroup != "ws":
            tokens.append(Token(match.lastgroup, match.group(), pos))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, table: Table) -> None:
        self.text = text
        self.table = table
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise bad_request(f"Syntax error: unexpected end of expression in '{self.text}'.")
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise bad_request(
                f"Syntax error at position {tok.pos} in '{self.text}': expected '{text}'."
            )

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "ident" and tok.text == word

    def parse(self) -> Predicate:
        if not self.tokens:
            raise bad_request("The $filter expression is empty.")
        pred = self.parse_or()
        tok = self.peek()
        if tok is not None:
            raise bad_request(
                f"Syntax error at position {tok.pos} in '{self.text}': unexpected '{tok.text}'."
            )
        return pred

    def parse_or(self) -> Predicate:
        left = self.parse_and()
        while self.is_word("or"):
            self.take()
            right = self.parse_and()
            left = _or(left, right)
        return left

    def parse_and(self) -> Predicate:
        left = self.parse_not()
        while self.is_word("and"):
            self.take()
            right = self.parse_not()
            left = _and(left, right)
        return left

    def parse_not(self) -> Predicate:
        if self.is_word("not"):
            self.take()
            inner = self.parse_not()
            return lambda row: not inner(row)
        return self.parse_primary()

    def parse_primary(self) -> Predicate:
        tok = self.peek()
        if tok is not None and tok.text == "(":
            self.take()
            inner = self.parse_or()
            self.expect(")")
            return inner
        if tok is not None and tok.kind == "ident" and tok.text in _FUNCS:
            return self.parse_function()
        left = self.parse_operand()
        op_tok = self.take()
        if op_tok.kind != "ident" or op_tok.text not in _COMPARE:
            raise bad_request(
                f"Syntax error at position {op_tok.pos} in '{self.text}': "
                f"expected a comparison operator, found '{op_tok.text}'."
            )
        right = self.parse_operand()
        return _comparison(op_tok.text, left, right)

    def parse_function(self) -> Predicate:
        name = self.take().text
        self.expect("(")
        prop = self.parse_operand()
        self.expect(",")
        lit = self.parse_operand()
        self.expect(")")
        if not isinstance(prop, Prop) or prop.type not in _STRINGS:
            raise bad_request(f"The first argument of '{name}' must be a string property.")
        if not isinstance(lit, Lit) or lit.type not in _STRINGS:
            raise bad_request(f"The second argument of '{name}' must be a string literal.")
        needle = str(lit.value).casefold()
        prop_name = prop.name

        def check(row: Mapping[str, Any]) -> bool:
            value = row.get(prop_name)
            if not isinstance(value, str):
                return False
            hay = value.casefold()
            if name == "contains":
                return needle in hay
            if name == "startswith":
                return hay.startswith(needle)
            return hay.endswith(needle)

        return check

    def parse_operand(self) -> Operand:
        tok = self.take()
        if tok.kind == "ident":
            if tok.text == "null":
                return Lit(None, None)
            if tok.text in ("true", "false"):
                return Lit(tok.text == "true", ColType.BOOL)
            kind = self.table.property_type(tok.text)
            if kind is None:
                raise unknown_property(self.table.logical, tok.text)
            return Prop(tok.text, kind)
        if tok.kind == "string":
            return Lit(tok.text[1:-1].replace("''", "'"), ColType.STRING)
        if tok.kind == "guid":
            return Lit(tok.text.lower(), ColType.GUID)
        if tok.kind == "number":
            is_int = "." not in tok.text
            return Lit(int(tok.text) if is_int else float(tok.text), _number_type(tok.text))
        if tok.kind == "datetime":
            parsed = parse_datetime(tok.text)
            if parsed is None:
                raise bad_request(f"The literal '{tok.text}' is not a valid Edm.DateTimeOffset.")
            return Lit(parsed, ColType.DATETIME)
        if tok.kind == "date":
            if parse_date(tok.text) is None:
                raise bad_request(f"The literal '{tok.text}' is not a valid Edm.Date.")
            return Lit(tok.text, ColType.DATE)
        raise bad_request(
            f"Syntax error at position {tok.pos} in '{self.text}': unexpected '{tok.text}'."
        )


def _number_type(text: str) -> ColType:
    return ColType.INT if "." not in text else ColType.DECIMAL


def _family(kind: ColType) -> str:
    if kind in _STRINGS:
        return "string"
    if kind in _NUMBERS:
        return "number"
    if kind in _TIMES:
        return "time"
    return kind.value


def _comparison(op: str, left: Operand, right: Operand) -> Predicate:
    lt, rt = left.type, right.type
    if lt is not None and rt is not None and _family(lt) != _family(rt):
        raise bad_request(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{lt.edm}' and '{rt.edm}' for operator kind '{_COMPARE[op]}'."
        )
    if isinstance(left, Lit) and isinstance(right, Lit):
        raise bad_request("A comparison needs at least one property.")
    get_left = _getter(left, rt)
    get_right = _getter(right, lt)

    def check(row: Mapping[str, Any]) -> bool:
        a, b = get_left(row), get_right(row)
        if a is None or b is None:
            if op == "eq":
                return a is None and b is None
            if op == "ne":
                return (a is None) != (b is None)
            return False
        if op == "eq":
            return bool(a == b)
        if op == "ne":
            return bool(a != b)
        if op == "gt":
            return bool(a > b)
        if op == "ge":
            return bool(a >= b)
        if op == "lt":
            return bool(a < b)
        return bool(a <= b)

    return check


def _normalise(value: Any, kind: ColType | None, other: ColType | None) -> Any:
    if value is None:
        return None
    if kind in _STRINGS or kind == ColType.GUID:
        return str(value).casefold()
    if kind == ColType.DATE and other == ColType.DATETIME:
        return f"{value}T00:00:00Z"
    if kind == ColType.DATETIME and other == ColType.DATE:
        return str(value)[:10]
    return value


def _getter(operand: Operand, other: ColType | None) -> Callable[[Mapping[str, Any]], Any]:
    if isinstance(operand, Lit):
        fixed = _normalise(operand.value, operand.type, other)
        return lambda _row: fixed
    name, kind = operand.name, operand.type
    return lambda row: _normalise(row.get(name), kind, other)


def compile_filter(text: str, table: Table) -> Predicate:
    """Parse ``$filter`` for ``table`` into a predicate over row values (ApiError 400 if bad)."""
    return _Parser(text, table).parse()


def _and(a: Predicate, b: Predicate) -> Predicate:
    return lambda row: a(row) and b(row)


def _or(a: Predicate, b: Predicate) -> Predicate:
    return lambda row: a(row) or b(row)
