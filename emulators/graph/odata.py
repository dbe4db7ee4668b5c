"""OData query options: a ``$filter`` parser/evaluator, ``$select``, ``$expand``, ``$top``…"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from .errors import GraphError
from .ids import parse_iso

Env = dict[str, Any]
T = TypeVar("T")
Expr = Callable[[Mapping[str, Any], Env], Any]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^']|'')*')
     |(?P<dt>\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)
     |(?P<num>-?\d+(?:\.\d+)?)
     |(?P<punct>[(),:/])
     |(?P<name>[A-Za-z_@$][A-Za-z0-9_.@]*)
    )""",
    re.VERBOSE,
)
_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"startswith", "endswith", "contains"}
KNOWN_OPTIONS = {
    "$filter",
    "$select",
    "$expand",
    "$top",
    "$skip",
    "$orderby",
    "$count",
    "$skiptoken",
    "$deltatoken",
    "$search",
}


def _invalid(message: str) -> GraphError:
    return GraphError(400, "BadRequest", f"Invalid filter clause: {message}")


@dataclass
class _Token:
    kind: str
    text: str


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise _invalid(f"syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind)))
        pos = match.end()
    return tokens


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        moment = parse_iso(value) if len(value) >= 10 and value[:4].isdigit() else None
        return moment if moment is not None else value.lower()
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    a, b = _norm(left), _norm(right)
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if a is None or b is None:
        return False
    comparable = (
        (isinstance(a, datetime) and isinstance(b, datetime))
        or (isinstance(a, str) and isinstance(b, str))
        or (isinstance(a, int | float) and isinstance(b, int | float))
    )
    if not comparable:
        return False
    if op == "gt":
        return bool(a > b)
    if op == "ge":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    return bool(a <= b)


class _Parser:
    def __init__(self, text: str, known: Collection[str]) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.known = known
        self.vars: set[str] = set()

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise _invalid("unexpected end of expression.")
        self.pos += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.text == text

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise _invalid(f"expected '{text}' but found '{token.text}'.")

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token and token.kind == "name" and token.text.lower() == word:
            self.pos += 1
            return True
        return False

    def parse(self) -> Expr:
        expr = self.parse_or()
        if self.peek() is not None:
            raise _invalid(f"unexpected '{self.take().text}'.")
        return expr

    def parse_or(self) -> Expr:
        left = self.parse_and()
        while self.keyword("or"):
            right = self.parse_and()
            left = (lambda a, b: lambda item, env: bool(a(item, env)) or bool(b(item, env)))(
                left, right
            )
        return left

    def parse_and(self) -> Expr:
        left = self.parse_unary()
        while self.keyword("and"):
            right = self.parse_unary()
            left = (lambda a, b: lambda item, env: bool(a(item, env)) and bool(b(item, env)))(
                left, right
            )
        return left

    def parse_unary(self) -> Expr:
        if self.keyword("not"):
            inner = self.parse_unary()
            return lambda item, env: not inner(item, env)
        left = self.parse_operand()
        token = self.peek()
        if token and token.kind == "name" and token.text.lower() in _COMPARE:
            op = self.take().text.lower()
            right = self.parse_operand()
            return lambda item, env: _compare(op, left(item, env), right(item, env))
        return left

    def parse_operand(self) -> Expr:
        token = self.take()
        if token.text == "(":
            inner = self.parse_or()
            self.expect(")")
            return inner
        if token.kind == "str":
            literal: Any = token.text[1:-1].replace("''", "'")
            return lambda item, env: literal
        if token.kind == "dt":
            moment = parse_iso(token.text)
            if moment is None:
                raise _invalid(f"bad date literal '{token.text}'.")
            return lambda item, env: moment
        if token.kind == "num":
            number = float(token.text) if "." in token.text else int(token.text)
            return lambda item, env: number
        if token.kind != "name":
            raise _invalid(f"unexpected '{token.text}'.")
        lowered = token.text.lower()
        if lowered in ("true", "false", "null"):
            constant = {"true": True, "false": False, "null": None}[lowered]
            return lambda item, env: constant
        nxt = self.peek()
        if nxt and nxt.text == "(":
            return self.parse_function(lowered)
        return self.parse_path(token.text)

    def parse_function(self, name: str) -> Expr:
        if name not in _FUNCTIONS:
            raise _invalid(f"an unknown function with name '{name}' was found.")
        self.expect("(")
        first = self.parse_operand()
        self.expect(",")
        second = self.parse_operand()
        self.expect(")")

        def call(item: Mapping[str, Any], env: Env) -> bool:
            a, b = first(item, env), second(item, env)
            if not isinstance(a, str) or not isinstance(b, str):
                return False
            a, b = a.lower(), b.lower()
            if name == "startswith":
                return a.startswith(b)
            if name == "endswith":
                return a.endswith(b)
            return b in a

        return call

    def parse_path(self, head: str) -> Expr:
        if head not in self.vars and head not in self.known:
            raise GraphError(
                400, "BadRequest", f"Could not find a property named '{head}' on the type."
            )
        segments = [head]
        while self.at("/"):
            self.take()
            seg = self.take()
            if seg.kind != "name":
                raise _invalid(f"bad path segment '{seg.text}'.")
            if seg.text.lower() in ("any", "all"):
                return self.parse_lambda(segments, seg.text.lower())
            segments.append(seg.text)
        return lambda item, env: _walk(item, env, segments)

    def parse_lambda(self, segments: list[str], quantifier: str) -> Expr:
        self.expect("(")
        var = self.take()
        if var.kind != "name":
            raise _invalid("expected a lambda variable.")
        self.expect(":")
        self.vars.add(var.text)
        body = self.parse_or()
        self.vars.discard(var.text)
        self.expect(")")
        name = var.text

        def run(item: Mapping[str, Any], env: Env) -> bool:
            collection = _walk(item, env, segments)
            if not isinstance(collection, list):
                return False
            results = (bool(body(item, {**env, name: member})) for member in collection)
            return any(results) if quantifier == "any" else all(results)

        return run


def _walk(item: Mapping[str, Any], env: Env, segments: list[str]) -> Any:
    head, *rest = segments
    value: Any = env[head] if head in env else item.get(head)
    for seg in rest:
        if not isinstance(value, dict):
            return None
        value = value.get(seg)
    return value


def compile_filter(text: str, known: Collection[str]) -> Expr:
    """Compile a ``$filter`` expression; unknown properties or bad syntax raise a 400."""
    if not text.strip():
        raise _invalid("the expression is empty.")
    return _Parser(text, known).parse()


@dataclass
class Query:
    """The parsed OData options of one request."""

    filter: Expr | None = None
    select: list[str] | None = None
    expand: dict[str, Expr | None] = field(default_factory=dict)
    top: int | None = None
    skip: int = 0
    orderby: list[tuple[str, bool]] = field(default_factory=list)
    count: bool = False
    immutable_ids: bool = False


def _int_option(name: str, text: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\d{1,9}", text.strip()):
        raise GraphError(400, "BadRequest", f"Invalid value '{text}' for query option '{name}'.")
    value = int(text)
    if not low <= value <= high:
        raise GraphError(
            400,
            "BadRequest",
            f"The value '{value}' for query option '{name}' must be between {low} and {high}.",
        )
    return value


def parse_query(
    params: Mapping[str, str],
    known: Collection[str],
    *,
    expandable: Collection[str] = (),
    max_top: int = 1000,
    extra: Collection[str] = (),
    paths: Collection[str] = (),
) -> Query:
    """Validate and parse the query string of a request against a type's properties.

    ``extra`` names non-``$`` parameters the route accepts (e.g. ``startDateTime``);
    ``paths`` the paths into complex properties ``$orderby`` accepts (``start/dateTime``).
    """
    query = Query()
    for key in params:
        if key.startswith("$"):
            if key not in KNOWN_OPTIONS:
                raise GraphError(
                    400, "BadRequest", f"Unrecognized query argument specified: '{key}'."
                )
        elif key not in extra:
            raise GraphError(400, "BadRequest", f"Unrecognized query argument specified: '{key}'.")
    if "$search" in params:
        raise GraphError(400, "BadRequest", "The query option '$search' is not supported here.")
    if "$filter" in params:
        query.filter = compile_filter(params["$filter"], known)
    if "$select" in params:
        names = [n.strip() for n in params["$select"].split(",")]
        for name in names:
            if name not in known:
                raise GraphError(
                    400, "BadRequest", f"Could not find a property named '{name}' on the type."
                )
        query.select = names
    if "$expand" in params:
        query.expand = parse_expand(params["$expand"], expandable)
    if "$top" in params:
        query.top = _int_option("$top", params["$top"], 1, max_top)
    if "$skip" in params:
        query.skip = _int_option("$skip", params["$skip"], 0, 10**9)
    if "$count" in params:
        if params["$count"] not in ("true", "false"):
            raise GraphError(400, "BadRequest", "$count must be true or false.")
        query.count = params["$count"] == "true"
    if "$orderby" in params:
        for part in params["$orderby"].split(","):
            words = part.split()
            if not words or len(words) > 2 or (words[0] not in known and words[0] not in paths):
                raise GraphError(400, "BadRequest", f"Invalid $orderby clause '{part.strip()}'.")
            if len(words) == 2 and words[1].lower() not in ("asc", "desc"):
                raise GraphError(400, "BadRequest", f"Invalid $orderby direction '{words[1]}'.")
            query.orderby.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return query


def _sort_value(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool | int | float):
        return 0, float(value)
    if isinstance(value, str):
        moment = parse_iso(value) if len(value) >= 10 and value[:4].isdigit() else None
        if moment is not None:
            return 1, moment
        return 2, (value.casefold(), value)
    return 3, str(value)


def order(items: list[T], orderby: list[tuple[str, bool]], view: Callable[[T], Any]) -> list[T]:
    """``items`` sorted by ``$orderby`` clauses (``path``, descending?) over ``view(item)``.

    As OData orders: null before any value ascending, after every value descending.
    """
    for path, desc in reversed(orderby):
        segments = path.split("/")

        def key(item: T, segments: list[str] = segments) -> tuple[int, tuple[int, Any]]:
            value = _walk(view(item), {}, segments)
            return (0, (0, 0)) if value is None else (1, _sort_value(value))

        items = sorted(items, key=key, reverse=desc)
    return items


_EXPAND = re.compile(r"^\s*([A-Za-z]+)\s*(?:\((.*)\))?\s*$")


def parse_expand(text: str, expandable: Collection[str]) -> dict[str, Expr | None]:
    """``singleValueExtendedProperties($filter=id eq '…')``, ``extensions(…)``, plain names."""
    result: dict[str, Expr | None] = {}
    for part in _split_top_level(text):
        match = _EXPAND.match(part)
        if not match or match.group(1) not in expandable:
            raise GraphError(
                400,
                "BadRequest",
                f"Parsing OData Select and Expand failed: cannot expand '{part}'.",
            )
        inner = match.group(2)
        expr: Expr | None = None
        if inner is not None:
            if not inner.startswith("$filter="):
                raise GraphError(400, "BadRequest", f"Unsupported nested option in '{part}'.")
            expr = compile_filter(inner[len("$filter=") :], {"id", "value", "extensionName"})
        result[match.group(1)] = expr
    return result


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def project(item: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Keep the ``$select``ed properties plus the ones Graph always sends."""
    if select is None:
        return item
    keep = set(select) | {"id", "@odata.etag", "@odata.type"}
    return {k: v for k, v in item.items() if k in keep}
