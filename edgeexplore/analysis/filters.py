"""A small filter language over stored trials, compiled to SQLAlchemy expressions.

``trials list --where 'latency_ms < 10 and accuracy > 0.6 and stage3.block == "lgl"'`` is parsed
here by our own tokenizer and recursive-descent parser; the result is a SQLAlchemy expression
built from a whitelist of known fields (``Field``) and bound parameters. The user's text is never
spliced into SQL, so anything that is not one expression of the grammar below is refused before a
query runs (``accuracy > 0; DROP TABLE trials`` stops at the ``;``)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" expr ")" | comparison | FIELD            (a bare field means "is true")
    comparison := operand OP operand                            OP: == = != <> < <= > >=
                | FIELD ["not"] "in" "[" literal ("," literal)* "]"
    operand    := FIELD | literal
    literal    := NUMBER | "-" NUMBER | STRING | true | false | null

Keywords are case-insensitive; strings take single or double quotes with backslash escapes;
``x == null`` / ``x != null`` test for a missing value. A comparison needs at least one field, and
the literal must suit the field's kind (a number for a numeric field, a string for a text field).
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import and_, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from ..errors import EdgeExploreError

Kind = Literal["number", "integer", "text", "bool"]

#: refuse absurd inputs before they cost anything (and before Python's recursion limit)
MAX_LENGTH = 4000
MAX_DEPTH = 64


class FilterError(EdgeExploreError, ValueError):
    """A ``--where`` or ``--sort`` expression that cannot be used as written."""


@dataclass(frozen=True)
class Field:
    """One name the filter language knows: its kind and the SQL expression it stands for."""

    name: str
    kind: Kind
    expr: Any = field(compare=False, repr=False)  # a SQLAlchemy column expression
    help: str = ""


# -- tokens -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str  # NUMBER STRING NAME OP PUNCT KEYWORD END
    value: Any
    pos: int  # 0-based offset into the text, for error messages
    text: str = ""


KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "none"}
_OPERATORS = ("==", "!=", "<>", "<=", ">=", "<", ">", "=")
# Any Unicode word, so that a misspelt non-ASCII name ("précision") is named as an unknown
# field with the valid ones listed, not reported as an unexpected character.
_NAME_RE = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*")
_NUMBER_RE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens; any character outside the grammar is an error here."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"the filter is {len(text)} characters long; the limit is {MAX_LENGTH}")
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"'":
            value, end = _read_string(text, i)
            tokens.append(Token("STRING", value, i, text[i:end]))
            i = end
            continue
        m = _NUMBER_RE.match(text, i)
        if m and (c.isdigit() or c == "."):
            end = m.end()
            if end < n and (text[end].isalpha() or text[end] == "_"):
                raise FilterError(
                    f"{text[i:end + 1]!r} at position {i + 1} is neither a number nor a field name"
                )
            raw = m.group()
            value: Any = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
            tokens.append(Token("NUMBER", value, i, raw))
            i = end
            continue
        m = _NAME_RE.match(text, i)
        if m:
            word = m.group()
            if word.lower() in KEYWORDS:
                tokens.append(Token("KEYWORD", word.lower(), i, word))
            else:
                tokens.append(Token("NAME", word, i, word))
            i = m.end()
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op:
            tokens.append(Token("OP", "!=" if op == "<>" else "==" if op == "=" else op, i, op))
            i += len(op)
            continue
        if c in "()[],-":
            tokens.append(Token("PUNCT", c, i, c))
            i += 1
            continue
        raise FilterError(
            f"unexpected {c!r} at position {i + 1}: a filter is one expression of comparisons "
            "joined by and/or/not (it is never run as SQL)"
        )
    tokens.append(Token("END", None, n, ""))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
            continue
        if c == quote:
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise FilterError(f"the string starting at position {start + 1} has no closing {quote}")


# -- syntax tree --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Name:
    name: str
    pos: int


@dataclass(frozen=True)
class Value:
    value: Any  # int, float, str, bool or None
    pos: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: Name | Value
    right: Name | Value


@dataclass(frozen=True)
class InList:
    name: Name
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class Truthy:
    name: Name


Node = Compare | InList | BoolOp | Not | Truthy


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    # helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _advance(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def _is(self, kind: str, value: Any = None) -> bool:
        t = self.tok
        return t.kind == kind and (value is None or t.value == value)

    def _fail(self, expected: str) -> FilterError:
        t = self.tok
        if t.kind == "END":
            return FilterError(f"expected {expected} but the filter ends there")
        return FilterError(f"expected {expected} but found {t.text!r} at position {t.pos + 1}")

    # grammar
    def parse(self) -> Node:
        if self.tok.kind == "END":
            raise FilterError("the filter is empty")
        node = self._or()
        if self.tok.kind != "END":
            t = self.tok
            raise FilterError(
                f"unexpected {t.text!r} at position {t.pos + 1} after a complete expression "
                "(join conditions with and/or)"
            )
        return node

    def _or(self) -> Node:
        items = [self._and()]
        while self._is("KEYWORD", "or"):
            self._advance()
            items.append(self._and())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def _and(self) -> Node:
        items = [self._not()]
        while self._is("KEYWORD", "and"):
            self._advance()
            items.append(self._not())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def _not(self) -> Node:
        if self._is("KEYWORD", "not"):
            self._advance()
            self._enter()
            node = Not(self._not())
            self.depth -= 1
            return node
        return self._primary()

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"the filter nests deeper than {MAX_DEPTH} levels")

    def _primary(self) -> Node:
        if self._is("PUNCT", "("):
            self._advance()
            self._enter()
            node = self._or()
            self.depth -= 1
            if not self._is("PUNCT", ")"):
                raise self._fail("')'")
            self._advance()
            return node
        left = self._operand()
        if isinstance(left, Name):
            negated = False
            if self._is("KEYWORD", "not") and self.tokens[self.i + 1].value == "in":
                self._advance()
                negated = True
            if self._is("KEYWORD", "in"):
                self._advance()
                return InList(left, self._list(), negated)
            if negated:
                raise self._fail("'in'")
        if self._is("OP"):
            op = self._advance().value
            return Compare(op, left, self._operand())
        if isinstance(left, Name):
            return Truthy(left)
        raise self._fail("a comparison operator (==, !=, <, <=, >, >=) or 'in'")

    def _operand(self) -> Name | Value:
        t = self.tok
        if t.kind == "NAME":
            self._advance()
            return Name(t.value, t.pos)
        return self._literal()

    def _literal(self) -> Value:
        t = self.tok
        if t.kind in ("NUMBER", "STRING"):
            self._advance()
            return Value(t.value, t.pos)
        if t.kind == "PUNCT" and t.value == "-":
            self._advance()
            if self.tok.kind != "NUMBER":
                raise self._fail("a number after '-'")
            return Value(-self._advance().value, t.pos)
        if t.kind == "KEYWORD" and t.value in ("true", "false", "null", "none"):
            self._advance()
            return Value({"true": True, "false": False}.get(t.value), t.pos)
        raise self._fail("a field name or a value")

    def _list(self) -> tuple[Value, ...]:
        if not self._is("PUNCT", "["):
            raise self._fail("'[' to start a list of values")
        self._advance()
        values = [self._literal()]
        while self._is("PUNCT", ","):
            self._advance()
            values.append(self._literal())
        if not self._is("PUNCT", "]"):
            raise self._fail("',' or ']'")
        self._advance()
        return tuple(values)


def parse(text: str) -> Node:
    """Parse a filter into its syntax tree (no field checks yet)."""
    if not isinstance(text, str):
        raise FilterError(f"a filter must be a string, not {type(text).__name__}")
    return _Parser(text).parse()


# -- compilation --------------------------------------------------------------------------------

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}
_KIND_WORD = {"number": "a number", "integer": "an integer", "text": "text", "bool": "true/false"}


def describe_fields(fields: Iterable[str]) -> str:
    """The valid names, with stage1..stageN fields folded into one ``stageN.x`` entry."""
    plain: list[str] = []
    staged: dict[str, set[int]] = {}
    for name in fields:
        m = re.fullmatch(r"stage(\d+)\.(.+)", name)
        if m:
            staged.setdefault(m.group(2), set()).add(int(m.group(1)))
        else:
            plain.append(name)
    parts = sorted(plain)
    if staged:
        stages = sorted(set().union(*staged.values()))
        parts += [f"stageN.{rest}" for rest in sorted(staged)]
        parts.append(f"(N = {stages[0]}..{stages[-1]})")
    return ", ".join(parts)


def _lookup(name: Name, fields: Mapping[str, Field]) -> Field:
    f = fields.get(name.name)
    if f is None:
        f = fields.get(name.name.lower())
    if f is None:
        close = difflib.get_close_matches(name.name, list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FilterError(
            f"unknown field {name.name!r}{hint}; valid fields: {describe_fields(fields)}"
        )
    return f


def _check_value(f: Field, v: Value) -> Any:
    x = v.value
    if x is None:
        return None
    ok = {
        "number": isinstance(x, (int, float)) and not isinstance(x, bool),
        "integer": isinstance(x, (int, float)) and not isinstance(x, bool),
        "text": isinstance(x, str),
        "bool": isinstance(x, bool) or x in (0, 1),
    }[f.kind]
    if not ok:
        shown = "a quoted string" if isinstance(x, str) else repr(x)
        raise FilterError(
            f"{f.name} is {_KIND_WORD[f.kind]}, so it cannot be compared with {shown} "
            f"(position {v.pos + 1})"
        )
    return x


def _compare(op: str, left: Name | Value, right: Name | Value, fields: Mapping[str, Field]):
    if isinstance(left, Value) and isinstance(right, Value):
        raise FilterError(
            f"the comparison at position {left.pos + 1} compares two values; one side must be "
            "a field"
        )
    if isinstance(left, Value):  # 0.6 < accuracy  →  accuracy > 0.6
        left, right, op = right, left, _FLIP[op]
    f = _lookup(left, fields)
    if isinstance(right, Name):
        g = _lookup(right, fields)
        numeric = {"number", "integer", "bool"}
        if (f.kind in numeric) != (g.kind in numeric):
            raise FilterError(f"{f.name} ({f.kind}) and {g.name} ({g.kind}) cannot be compared")
        rhs: Any = g.expr
    else:
        rhs = _check_value(f, right)
        if rhs is None:
            if op == "==":
                return f.expr.is_(None)
            if op == "!=":
                return f.expr.is_not(None)
            raise FilterError(f"null can only be tested with == or != (position {right.pos + 1})")
    return _OPS[op](f.expr, rhs)


def compile_node(node: Node, fields: Mapping[str, Field]) -> ColumnElement:
    """Turn a syntax tree into a SQLAlchemy boolean expression over ``fields``."""
    if isinstance(node, BoolOp):
        parts = [compile_node(n, fields) for n in node.items]
        return and_(*parts) if node.op == "and" else or_(*parts)
    if isinstance(node, Not):
        return not_(compile_node(node.item, fields))
    if isinstance(node, Truthy):
        f = _lookup(node.name, fields)
        if f.kind != "bool":
            raise FilterError(
                f"{f.name} is {_KIND_WORD[f.kind]}; compare it with a value "
                f"(e.g. {f.name} > 0) instead of using it alone"
            )
        return f.expr == true()
    if isinstance(node, InList):
        f = _lookup(node.name, fields)
        values = [_check_value(f, v) for v in node.values]
        if any(v is None for v in values):
            raise FilterError(f"null cannot be in a list; test {f.name} == null instead")
        expr = f.expr.in_(values)
        # SQL's NOT IN is unknown for NULL; a user means "has some other value or none".
        return or_(f.expr.is_(None), f.expr.not_in(values)) if node.negated else expr
    if isinstance(node, Compare):
        return _compare(node.op, node.left, node.right, fields)
    raise TypeError(f"not a filter node: {node!r}")


def compile_filter(text: str | None, fields: Mapping[str, Field]) -> ColumnElement:
    """Parse and compile ``text``; an empty or missing filter matches everything."""
    if text is None or not text.strip():
        return true()
    return compile_node(parse(text), fields)


def compile_sort(spec: str | Iterable[str] | None, fields: Mapping[str, Field]) -> list:
    """``"-accuracy,latency_ms"`` → ORDER BY clauses (``-`` for descending, missing values last)."""
    if spec is None:
        return []
    keys = spec.split(",") if isinstance(spec, str) else list(spec)
    clauses = []
    for raw in keys:
        key = raw.strip()
        if not key:
            continue
        desc = key.startswith("-")
        key = key.lstrip("+-").strip()
        f = _lookup(Name(key, 0), fields)
        clause = f.expr.desc() if desc else f.expr.asc()
        clauses.append(clause.nulls_last())
    return clauses


__all__ = [
    "Field",
    "FilterError",
    "compile_filter",
    "compile_node",
    "compile_sort",
    "describe_fields",
    "parse",
    "tokenize",
]
