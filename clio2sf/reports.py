"""Tiny shared helpers for report files: escaped HTML pages and tables, CSV and JSON writers.

Every writer takes a pathlib-like path (``pathlib.Path``, ``upath.UPath``, Airflow's
``ObjectStoragePath``) and writes the file in one go (object stores cannot append).
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from clio2sf import staging

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef1f6}tr:nth-child(even) td{background:#fafbfd}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#11632b;font-weight:600}.bad{color:#a30d0d;font-weight:600}.warn{color:#8a5a00;font-weight:600}
.banner{padding:.7em 1em;border-radius:4px;margin:1em 0;font-size:1.1em}
.banner.ok{background:#e3f5e8}.banner.bad{background:#fbe4e4}.banner.warn{background:#fff3d6}
.muted{color:#666;font-size:.85em}
table.hdr td,table.hdr th{border:none;padding:.1em .8em .1em 0;background:none}
.filters a{margin-right:.8em}.filters a.on{font-weight:700;text-decoration:none;color:#1b1b1b}
@media print{.filters,.noprint{display:none}}
"""


def esc(value: Any) -> str:
    """HTML-escape any value (None becomes an empty string)."""
    if value is None:
        return ""
    return html.escape(to_text(value), quote=True)


def to_text(value: Any) -> str:
    """A stable text form for reports: JSON for containers, ISO for dates."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=json_default, sort_keys=True)
    return str(value)


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for Decimal, dates, sets."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (),
          row_classes: Iterable[str] | None = None) -> str:
    """An escaped HTML table; ``numeric`` lists column indexes aligned right."""
    num = set(numeric)
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    classes = iter(row_classes) if row_classes is not None else None
    for row in rows:
        cls = next(classes, "") if classes is not None else ""
        out.append(f'<tr class="{esc(cls)}">' if cls else "<tr>")
        for i, cell in enumerate(row):
            out.append(f'<td class="num">{esc(cell)}</td>' if i in num else f"<td>{esc(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def money(value: Any, currency: str | None = None) -> str:
    """``1234.5`` → ``1,234.50`` (``1,234.50 USD`` with a currency); blanks as ``–``, non-numbers as they are."""
    if value is None or value == "":
        return "–"
    try:
        text = f"{Decimal(str(value)).quantize(Decimal('0.01')):,.2f}"
    except (InvalidOperation, ValueError, ArithmeticError):
        return to_text(value)
    return f"{text} {currency}" if currency else text


def run_date(run_id: str | None) -> str | None:
    """The date of an Airflow run id (``manual__2026-12-03T04:27:22.61+00:00`` → ``2026-12-03 04:27 UTC``)."""
    text = (run_id or "").split("__", 1)[-1]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def report_context(mroot: Any, firm_name: str | None, run_id: str | None,
                   generated_at: datetime | None = None) -> dict[str, str]:
    """The header facts of a migration report: firm (name and key), migration id, run id and dates.

    ``mroot`` is the migration root ``<staging>/<firm>/<migration_id>`` (path-like).
    """
    firm = str(mroot.parent.name)
    out = {"firm": f"{firm_name} ({firm})" if firm_name and firm_name != firm else firm,
           "migration": str(mroot.name), "run": run_id or "–"}
    started = run_date(run_id)
    if started:
        out["run_date"] = started
    out["generated"] = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return out


_CONTEXT_LABELS = {"firm": "Firm", "migration": "Migration", "run": "Run id", "run_date": "Run date",
                   "generated": "Report written"}


def report_header(context: dict[str, Any] | None) -> str:
    """A small escaped facts table (firm, migration, run, dates) for the top of a report page."""
    if not context:
        return ""
    rows = "".join(f"<tr><th>{esc(label)}</th><td>{esc(context[k])}</td></tr>"
                   for k, label in _CONTEXT_LABELS.items() if context.get(k))  # this order, whatever the dict's
    return f'<table class="hdr">{rows}</table>'


def banner(text: str, kind: str = "ok") -> str:
    """A coloured headline (kind: ok, bad, warn)."""
    return f'<div class="banner {esc(kind)}">{esc(text)}</div>'


def page(title: str, body_html: str, subtitle: str | None = None) -> str:
    """A self-contained HTML page (inline CSS, no external assets). ``body_html`` must be escaped."""
    sub = f'<p class="muted">{esc(subtitle)}</p>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{esc(title)}</h1>{sub}{body_html}</body></html>\n"
    )


def _ensure_parent(path: Any) -> None:
    staging.ensure_dir(path.parent)


def write_text(path: Any, text: str) -> Any:
    """Write ``text`` (UTF-8) to ``path`` in one go, owner-only on local disks; return the path."""
    staging.write_bytes_atomic(path, text.encode("utf-8"))
    return path


class Streamed:
    """A JSON list :func:`write_json` writes item by item, never held whole: ``items`` is called when
    the file is written (again for each file that holds it), e.g. a generator over staged records."""

    __slots__ = ("items",)

    def __init__(self, items: Callable[[], Iterable[Any]]) -> None:
        self.items = items

    def map(self, fn: Callable[[Any], Any]) -> Streamed:
        """The same list, each item passed through ``fn`` when written."""
        return Streamed(lambda: map(fn, self.items()))


_FIELDS: dict[type, tuple[str, ...]] = {}


def row_dict(row: Any) -> dict[str, Any]:
    """A dataclass row's fields as a dict, in field order, its values as they are: the JSON of
    ``dataclasses.asdict`` for a row of plain values and dicts of them (asdict deep-copies each value, the
    most of a report's time written row by row: a row per live bill and per matter)."""
    import dataclasses

    names = _FIELDS.get(type(row))
    if names is None:
        names = _FIELDS[type(row)] = tuple(f.name for f in dataclasses.fields(row))
    return {n: getattr(row, n) for n in names}


class SpillFolder:
    """A temporary folder for :class:`Spilled` tables, removed when no table (nor this) refers to it."""

    def __init__(self) -> None:
        import shutil
        import tempfile
        import weakref

        self.path = tempfile.mkdtemp(prefix="clio2sf-spill-")
        weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)


class Spilled:
    """A table's rows kept on disk, not in memory: written a sorted run at a time (:meth:`add`, one per
    part of the books), read back (each time it is iterated) as the runs merged in ``key`` order, one
    section after another (:meth:`section`: the bills of Clio, then those only in Salesforce). Its
    length and exceptions are counted as written."""

    def __init__(self, folder: SpillFolder, name: str) -> None:
        self.folder, self.name = folder, name
        self.sections: list[tuple[Callable[[Any], Any], list[Any]]] = []
        self.rows = self.bad = 0

    def section(self, key: Callable[[Any], Any]) -> None:
        self.sections.append((key, []))

    def add(self, rows: Iterable[Any]) -> None:
        """One run of the current section, in its ``key`` order."""
        import pickle
        from pathlib import Path

        path = Path(self.folder.path) / f"{self.name}-{len(self.sections)}-{len(self.sections[-1][1])}.pickle"
        with path.open("wb") as f:
            for r in rows:  # a pickle a row (one Pickler's memo would keep every row)
                pickle.dump(r, f, protocol=pickle.HIGHEST_PROTOCOL)
                self.rows += 1
                self.bad += not r.ok
        self.sections[-1][1].append(path)

    @staticmethod
    def _read(path: Any) -> Iterator[Any]:
        import pickle

        with path.open("rb") as f:
            while True:
                try:
                    yield pickle.load(f)
                except EOFError:
                    return

    def __iter__(self) -> Iterator[Any]:
        import heapq

        for key, paths in self.sections:
            yield from heapq.merge(*(self._read(p) for p in paths), key=key)

    def __len__(self) -> int:
        return self.rows


class StreamedDict(Streamed):
    """A JSON object :func:`write_json` writes entry by entry: ``items`` gives its (key, value) pairs in
    key order (as ``sort_keys`` writes them)."""

    __slots__ = ()


def write_json(path: Any, obj: Any) -> Any:
    """Write ``obj`` as indented JSON. A :class:`Streamed` list (or :class:`StreamedDict` object) in it is
    written item by item (the file is streamed, byte for byte what the whole list in its place would
    give): memory follows one item, not the list."""
    streamed: list[Streamed] = []

    def default(value: Any) -> Any:
        if isinstance(value, Streamed):
            streamed.append(value)
            return f"{_MARK}{len(streamed) - 1}{_MARK}"
        return json_default(value)

    text = json.dumps(obj, indent=2, sort_keys=True, default=default) + "\n"
    if not streamed:
        return write_text(path, text)
    staging.write_blob(path, _streamed_chunks(text, streamed))
    return path


#: Marks a :class:`Streamed` list's place in the JSON text (``\u0000`` as ``json.dumps`` escapes it).
_MARK = "\x00"
_MARKED = re.compile(r'"\\u0000(\d+)\\u0000"')


def _streamed_chunks(text: str, streamed: list[Streamed]) -> Iterable[bytes]:
    """``text`` with each marked place replaced by its list, indented as ``json.dumps(indent=2)`` would."""
    at = 0
    for hit in _MARKED.finditer(text):
        yield text[at:hit.start()].encode("utf-8")
        line = text.rfind("\n", 0, hit.start()) + 1
        indent = " " * (len(text[line:]) - len(text[line:].lstrip(" ")))
        inner = indent + "  "
        first = True
        values = streamed[int(hit.group(1))]
        pairs = isinstance(values, StreamedDict)
        opening, closing = "{}" if pairs else "[]"
        for item in values.items():
            key = json.dumps(item[0]) + ": " if pairs else ""
            body = json.dumps(item[1] if pairs else item, indent=2, sort_keys=True,
                              default=json_default).replace("\n", "\n" + inner)
            yield ((f"{opening}\n" if first else ",\n") + inner + key + body).encode("utf-8")
            first = False
        yield (opening + closing).encode("utf-8") if first else ("\n" + indent + closing).encode("utf-8")
        at = hit.end()
    yield text[at:].encode("utf-8")


#: Leading characters a spreadsheet reads as a formula (OWASP "CSV Injection"), with their full-width forms.
_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> str:
    """One CSV report cell, neutralised against formula injection (OWASP CSV Injection).

    A text starting with ``=``, ``+``, ``-``, ``@``, tab, CR or LF (or a full-width ``＝＋－＠``) gets a
    leading ``'`` so spreadsheets show it as text; plain numbers (``-12.5``) stay as they are.  Every
    CSV report writer of the bundle goes through this (the Bulk API upload CSV does not: it is data).
    """
    text = to_text(value)
    if text.startswith(_FORMULA_LEADS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def md_text(value: Any) -> str:
    """Markdown-safe one-line text from data: no live links, images, HTML or table breaks.

    ``[``/``]`` and backslashes are backslash-escaped (so ``[x](javascript:...)`` and
    ``![](https://remote/img)`` stay plain text), ``<``/``>`` become entities (no HTML, no
    ``<autolinks>``), ``|`` is escaped (no table breaks), newlines become spaces.
    """
    text = "" if value is None else to_text(value)
    text = re.sub(r"([\\\[\]|])", r"\\\1", text).replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.split())


def _csv_chunks(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([csv_cell(h) for h in headers])
    for row in rows:
        writer.writerow([csv_cell(c) for c in row])
        if buf.tell() >= 1 << 16:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def csv_text(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV text (RFC 4180: CRLF line ends) with a header line; cells rendered by :func:`csv_cell`.

    CRLF matters: Python's writer quotes a cell holding a character of the line terminator, so with
    ``\\n`` alone a bare ``\\r`` in client data would go out unquoted and split the row.
    """
    return "".join(_csv_chunks(headers, rows))


def write_csv(path: Any, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Any:
    """Write a CSV file with a header line (:func:`csv_text`), streamed: ``rows`` may be a generator."""
    staging.write_blob(path, (c.encode("utf-8") for c in _csv_chunks(headers, rows)))
    return path


def write_html(path: Any, title: str, body_html: str, subtitle: str | None = None) -> Any:
    """Write a full page made by :func:`page`."""
    return write_text(path, page(title, body_html, subtitle))
