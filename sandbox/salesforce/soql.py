"""A SOQL subset: a small tokenizer, a recursive-descent parser and an evaluator over dict rows.

Supported: field lists with parent relationship paths (``Account.Owner.Email``), ``COUNT()`` and
``COUNT(field)``, WHERE with = != <> < <= > >=, [NOT] IN, LIKE, AND/OR/NOT, parentheses, NULL,
booleans, numbers, strings, date and datetime values and the common date literals, ORDER BY with
ASC/DESC and NULLS FIRST/LAST, LIMIT and OFFSET.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sandbox.salesforce import ids
from sandbox.salesforce.values import format_dt, parse_dt

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:\\.|[^'\\])*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),:])
""", re.VERBOSE)

MAX_OFFSET = 2000
#: Salesforce's default limit on the length of a SOQL statement, whatever carries it (a REST GET's ``q``
#: or a Bulk API 2.0 query job's body); a GET is also bound by its URI (16,384 bytes) long before this.
MAX_SOQL_CHARS = 100_000
#: Quoted-string escapes SOQL accepts (SOQL guide, "Quoted String Escape Sequences"); any other is an error.
_ESCAPES = {"n": "\n", "N": "\n", "r": "\r", "R": "\r", "t": "\t", "T": "\t", "b": "\b", "B": "\b",
            "f": "\f", "F": "\f", '"': '"', "'": "'", "\\": "\\"}
KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
            "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE", "COUNT", "INCLUDES",
            "EXCLUDES", "USING", "SCOPE", "FOR", "ALL", "ROWS"}


class SoqlError(Exception):
    """A query error with a Salesforce errorCode."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Tok:
    kind: str
    text: str
    pos: int


def tokenize(q: str) -> list[Tok]:
    out, pos = [], 0
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if not m:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token at position {pos}: {q[pos:pos + 20]!r}")
        kind = m.lastgroup
        if kind != "ws":
            text = m.group()
            if kind == "ident" and text.upper() in KEYWORDS:
                kind, text = "kw", text.upper()
            out.append(Tok(kind, text, pos))
        pos = m.end()
    out.append(Tok("eof", "", pos))
    return out


@dataclass
class Cond:
    kind: str  # cmp, in, like, and, or, not
    path: str = ""
    op: str = ""
    value: object = None
    parts: list = field(default_factory=list)
    pos: int = 0


@dataclass(frozen=True)
class Like:
    """A LIKE pattern: ``regex`` matches the whole value, case-insensitively."""

    text: str
    regex: str


def unescape(raw: str, q: str, pos: int, *, like: bool = False) -> list[tuple[str, bool]]:
    """The characters of a quoted string (quotes stripped), each with whether it was escaped."""
    out: list[tuple[str, bool]] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c != "\\":
            out.append((c, False))
            i += 1
            continue
        nxt = raw[i + 1:i + 2]
        if nxt in _ESCAPES:
            out.append((_ESCAPES[nxt], True))
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", raw[i + 2:i + 6]):
            out.append((chr(int(raw[i + 2:i + 6], 16)), True))
            i += 6
        elif like and nxt in ("_", "%"):
            out.append((nxt, True))
            i += 2
        else:
            raise SoqlError("MALFORMED_QUERY", f"\n{q}\nERROR at Row:1:Column:{pos + 1}\nInvalid string literal "
                            f"'{raw}'. Illegal character sequence '\\{nxt}' in string literal.")
    return out


@dataclass
class Query:
    fields: list[str]
    sobject: str
    where: Cond | None = None
    order: list[tuple[str, bool, bool | None]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    count: str | None = None  # "" for COUNT(), field path for COUNT(field)
    count_alias: str | None = None


@dataclass(frozen=True)
class DateLiteral:
    name: str
    n: int = 0

    def bounds(self) -> tuple[datetime, datetime]:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        day = timedelta(days=1)
        n = self.n
        spans = {
            "TODAY": (today, today + day), "YESTERDAY": (today - day, today),
            "TOMORROW": (today + day, today + 2 * day),
            "LAST_N_DAYS": (today - n * day, today + day), "NEXT_N_DAYS": (today + day, today + (n + 1) * day),
            "LAST_WEEK": (today - (today.weekday() + 8) * day, today - (today.weekday() + 1) * day),
            "THIS_WEEK": (today - (today.weekday() + 1) * day, today + (6 - today.weekday()) * day),
            "THIS_MONTH": (today.replace(day=1), (today.replace(day=28) + 4 * day).replace(day=1)),
            "THIS_YEAR": (today.replace(month=1, day=1), today.replace(year=today.year + 1, month=1, day=1)),
        }
        if self.name not in spans:
            raise SoqlError("MALFORMED_QUERY", f"unsupported date literal {self.name}")
        return spans[self.name]


class Parser:
    def __init__(self, q: str):
        self.q = q
        self.toks = tokenize(q)
        self.i = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def accept(self, kind: str, text: str | None = None) -> Tok | None:
        t = self.peek()
        if t.kind == kind and (text is None or t.text == text):
            self.i += 1
            return t
        return None

    def expect(self, kind: str, text: str | None = None) -> Tok:
        t = self.accept(kind, text)
        if t is None:
            got = self.peek()
            raise SoqlError("MALFORMED_QUERY",
                            f"\n{self.q}\nERROR at Row:1:Column:{got.pos + 1}\nunexpected token: '{got.text or 'EOF'}'")
        return t

    def parse(self) -> Query:
        self.expect("kw", "SELECT")
        fields: list[str] = []
        count = alias = None
        while True:
            if self.accept("kw", "COUNT"):
                self.expect("punct", "(")
                t = self.accept("ident")
                count = t.text if t else ""
                self.expect("punct", ")")
                a = self.accept("ident")
                alias = a.text if a else None
            elif self.peek().text == "(":
                raise SoqlError("MALFORMED_QUERY", "parent-to-child subqueries are not supported by the sandbox")
            else:
                fields.append(self.expect("ident").text)
            if not self.accept("punct", ","):
                break
        self.expect("kw", "FROM")
        q = Query(fields=fields, sobject=self.expect("ident").text, count=count, count_alias=alias)
        if self.accept("kw", "USING"):
            self.expect("kw", "SCOPE")
            self.expect("ident")
        if self.accept("kw", "WHERE"):
            q.where = self.or_expr()
        if self.accept("kw", "ORDER"):
            self.expect("kw", "BY")
            while True:
                path = self.expect("ident").text
                desc = bool(self.accept("kw", "DESC"))
                if not desc:
                    self.accept("kw", "ASC")
                nulls_first = None
                if self.accept("kw", "NULLS"):
                    nulls_first = bool(self.accept("kw", "FIRST"))
                    if not nulls_first:
                        self.expect("kw", "LAST")
                q.order.append((path, desc, nulls_first))
                if not self.accept("punct", ","):
                    break
        if self.accept("kw", "LIMIT"):
            q.limit = int(self.expect("number").text)
        if self.accept("kw", "OFFSET"):
            tok = self.expect("number")
            q.offset = int(tok.text)
            if q.offset > MAX_OFFSET:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}")
        if self.accept("kw", "FOR"):
            self.take()
        if self.accept("kw", "ALL"):
            self.expect("kw", "ROWS")
        self.expect("eof")
        return q

    def or_expr(self) -> Cond:
        parts = [self.and_expr()]
        while self.accept("kw", "OR"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Cond("or", parts=parts)

    def and_expr(self) -> Cond:
        parts = [self.not_expr()]
        while self.accept("kw", "AND"):
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else Cond("and", parts=parts)

    def not_expr(self) -> Cond:
        if self.accept("kw", "NOT"):
            return Cond("not", parts=[self.not_expr()])
        if self.accept("punct", "("):
            c = self.or_expr()
            self.expect("punct", ")")
            return c
        tok = self.expect("ident")
        path, pos = tok.text, tok.pos
        if self.accept("kw", "NOT"):
            self.expect("kw", "IN")
            return Cond("not", parts=[Cond("in", path=path, value=self.value_list(), pos=pos)])
        if self.accept("kw", "IN"):
            return Cond("in", path=path, value=self.value_list(), pos=pos)
        if self.accept("kw", "LIKE"):
            return Cond("like", path=path, value=self.value(like=True), pos=pos)
        if self.peek().text in ("INCLUDES", "EXCLUDES"):
            op = self.take().text
            return Cond(op.lower(), path=path, value=self.value_list(), pos=pos)
        op = self.expect("op").text
        return Cond("cmp", path=path, op="!=" if op == "<>" else op, value=self.value(), pos=pos)

    def value_list(self) -> list:
        self.expect("punct", "(")
        vals = [self.value()]
        while self.accept("punct", ","):
            vals.append(self.value())
        self.expect("punct", ")")
        return vals

    def value(self, *, like: bool = False) -> object:
        t = self.take()
        if t.kind == "string":
            chars = unescape(t.text[1:-1], self.q, t.pos, like=like)
            text = "".join(c for c, _ in chars)
            if not like:
                return text
            rx = "".join(".*" if c == "%" and not esc else "." if c == "_" and not esc else re.escape(c)
                         for c, esc in chars)
            return Like(text, rx)
        if t.kind == "number":
            return float(t.text) if "." in t.text else int(t.text)
        if t.kind == "datetime":
            return ("dt", format_dt(parse_dt(t.text)))
        if t.kind == "date":
            return ("d", t.text)
        if t.kind == "kw" and t.text in ("NULL", "TRUE", "FALSE"):
            return {"NULL": None, "TRUE": True, "FALSE": False}[t.text]
        if t.kind == "ident":
            n = 0
            if self.accept("punct", ":"):
                n = int(self.expect("number").text)
            return DateLiteral(t.text.upper(), n)
        raise SoqlError("MALFORMED_QUERY", f"\n{self.q}\nERROR at Row:1:Column:{t.pos + 1}\nunexpected token: '{t.text}'")


def parse(q: str) -> Query:
    if len(q) > MAX_SOQL_CHARS:
        raise SoqlError("MALFORMED_QUERY", f"SOQL statements can not be longer than {MAX_SOQL_CHARS} characters.")
    return Parser(q).parse()


# -- evaluation --------------------------------------------------------------------------------

def _norm(v: object) -> object:
    return v.lower() if isinstance(v, str) else v


def _like(pattern: object) -> re.Pattern:
    if isinstance(pattern, Like):
        return re.compile(f"^{pattern.regex}$", re.IGNORECASE | re.DOTALL)
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(pattern))
    return re.compile(f"^{rx}$", re.IGNORECASE | re.DOTALL)


def compare(actual: object, op: str, value: object, ftype: str) -> bool:
    if isinstance(value, DateLiteral):
        lo, hi = value.bounds()
        if actual is None:
            return op == "!="
        if ftype == "date":
            a = datetime.fromisoformat(str(actual)).replace(tzinfo=UTC)
        else:
            a = parse_dt(str(actual))
        inside = lo <= a < hi
        return {"=": inside, "!=": not inside, "<": a < lo, "<=": a < hi, ">": a >= hi, ">=": a >= lo}[op]
    if isinstance(value, tuple):
        kind, v = value
        if ftype == "date" and kind == "dt":
            v = v[:10]
        elif ftype == "datetime" and kind == "d":
            v = f"{v}T00:00:00.000+0000"
        value = v
    if value is None or actual is None:
        eq = value is None and actual is None
        return eq if op == "=" else (not eq if op == "!=" else False)
    if ftype in ("id", "reference") and isinstance(value, str) and ids.well_formed(value):
        # 15- and 18-character forms of an id are the same record.
        a, b = str(actual), ids.normalize(value)
        return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    a, b = _norm(actual), _norm(value)
    if isinstance(a, bool) or isinstance(b, bool):
        a, b = bool(a), bool(b)
    elif isinstance(b, int | float) and not isinstance(a, int | float):
        try:
            a = float(a)
        except (TypeError, ValueError):
            return False
    elif isinstance(a, int | float) and isinstance(b, str):
        return False
    try:
        return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    except TypeError:
        return False


#: Field types whose equality is case-insensitive text (``compare`` lower-cases both sides).
_TEXT_TYPES = frozenset({"string", "email", "phone", "url", "picklist", "textarea", "combobox", "encryptedstring"})
_TEXT_SETS: dict[int, tuple[Cond, frozenset[str] | None]] = {}


def _text_set(cond: Cond) -> frozenset[str] | None:
    """The lower-cased values of an IN list of plain text literals (None when any is not one)."""
    hit = _TEXT_SETS.get(id(cond))
    if hit is None or hit[0] is not cond:
        vals = cond.value
        ok = all(isinstance(v, str) for v in vals)
        hit = (cond, frozenset(v.lower() for v in vals) if ok else None)
        if len(_TEXT_SETS) > 64:
            _TEXT_SETS.clear()
        _TEXT_SETS[id(cond)] = hit
    return hit[1]


def evaluate(cond: Cond, get) -> bool:
    """Evaluate ``cond`` with ``get(path) -> (value, ftype)``."""
    k = cond.kind
    if k == "and":
        return all(evaluate(p, get) for p in cond.parts)
    if k == "or":
        return any(evaluate(p, get) for p in cond.parts)
    if k == "not":
        return not evaluate(cond.parts[0], get)
    actual, ftype = get(cond.path)
    if k == "cmp":
        return compare(actual, cond.op, cond.value, ftype)
    if k == "in":
        if isinstance(actual, str) and ftype in _TEXT_TYPES:
            fast = _text_set(cond)
            if fast is not None:  # the same answer as comparing with each value, in one set look-up
                return actual.lower() in fast
        return any(compare(actual, "=", v, ftype) for v in cond.value)
    if k == "like":
        return actual is not None and bool(_like(cond.value).match(str(actual)))
    if k in ("includes", "excludes"):
        have = {x.lower() for x in (actual or "").split(";") if x}
        hit = any(all(p.lower() in have for p in str(v).split(";")) for v in cond.value)
        return hit if k == "includes" else not hit
    raise SoqlError("MALFORMED_QUERY", f"unsupported condition {k}")
