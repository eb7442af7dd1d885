"""Field-level diff of sampled records: Clio value, value sent, value read back from Salesforce.

The verdict per field compares what we sent (the neutral row) with what Salesforce holds,
type-aware. A difference backed by a repair note from the rejects (or a truncation to the
field length) is *explained*; a field whose value differs from Clio because of a repair is
explained too. Reports are files in the staging area; nothing here logs record values.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from dateutil import parser as dtparser

from clio2sf import reports

NUMBER_TYPES = {"double", "currency", "percent", "int", "long", "number"}
DATE_TYPES = {"date"}
DATETIME_TYPES = {"datetime"}
BOOL_TYPES = {"boolean", "checkbox"}
ID_TYPES = {"id", "reference"}
DEFAULT_SCALE = {"currency": 2, "int": 0, "long": 0}
_NULLS = (None, "", "#N/A")

MATCH, MISMATCH, EXPLAINED, MISSING = "match", "mismatch", "explained", "missing"


@dataclass(frozen=True)
class FieldSpec:
    """One compared field: the neutral-row column, where it came from in Clio, its SF type."""

    field: str
    sf_type: str = "string"
    source_path: str | None = None
    scale: int | None = None
    length: int | None = None


@dataclass
class FieldDiff:
    sobject: str
    source_system_id: str
    sf_id: str | None
    field: str
    source_path: str | None
    clio_value: Any
    sent_value: Any
    sf_value: Any
    status: str
    reason: str | None = None
    label: str | None = None  # the record's readable name (matter number, client name) for the report


CSV_HEADERS = [f for f in FieldDiff.__dataclass_fields__]


# ------------------------------------------------------------------ value access


def source_value(data: Mapping[str, Any] | None, path: str | None) -> Any:
    """Value at a dotted path in a Clio record; ``a.0.b`` indexes lists. None when absent."""
    if not path or data is None:
        return None
    node: Any = data
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


_LEAVES = (str, int, float)


def flatten_sf_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a SOQL result (nested relationship dicts, ``attributes``) into dotted columns."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            if key == "attributes":
                continue
            name = f"{prefix}{key}"
            # a value (text, number, None) is never a Mapping: no ABC check for it (a row of millions read)
            if value is not None and not isinstance(value, _LEAVES) and isinstance(value, Mapping):
                walk(f"{name}.", value)
            else:
                out[name] = value

    walk("", record)
    return out


def _sf_get(sf: Mapping[str, Any], column: str) -> Any:
    if column in sf:
        return sf[column]
    if ":" in column:  # polymorphic neutral column "Case:What.Clio_Id__c" reads back as "What.Clio_Id__c"
        return sf.get(column.split(":", 1)[1])
    return None


# ------------------------------------------------------------------ comparison


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() in _NULLS)


def _decimal(v: Any) -> Decimal:
    if isinstance(v, bool):
        raise ValueError("boolean is not a number")
    try:
        return Decimal(str(v).strip())
    except InvalidOperation:
        raise ValueError(f"{v!r} is not a number") from None


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("true", "1", "yes", "y", "t"):
        return True
    if text in ("false", "0", "no", "n", "f"):
        return False
    raise ValueError(f"{v!r} is not a boolean")


def _datetime(v: Any) -> datetime:
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, date):
        dt = datetime(v.year, v.month, v.day)
    else:
        dt = dtparser.isoparse(str(v).strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).replace(microsecond=dt.microsecond // 1000 * 1000)


def _date(v: Any) -> date:
    if isinstance(v, datetime):
        return _datetime(v).date()
    if isinstance(v, date):
        return v
    text = str(v).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return date.fromisoformat(text)
    return _datetime(text).date()


def _text(v: Any) -> str:
    return str(v).replace("\r\n", "\n").replace("\r", "\n").strip()


def values_equal(a: Any, b: Any, sf_type: str = "string", scale: int | None = None) -> bool:
    """Type-aware equality of two field values (null and empty string are the same).

    Numbers compare as decimals rounded to ``scale`` (currency: 2) with half-unit tolerance,
    date-times in UTC to the millisecond, dates by calendar day (a date-time's UTC day),
    booleans by truth value, ids by their 15-character form, multi-picklists as sets, emails
    case-insensitively (as Salesforce stores them: lower-cased).
    Unparseable values are unequal, never an exception.
    """
    t = sf_type.lower()
    if _is_null(a) or _is_null(b):
        return _is_null(a) and _is_null(b)
    try:
        if t in NUMBER_TYPES:
            x, y = _decimal(a), _decimal(b)
            sc = scale if scale is not None else DEFAULT_SCALE.get(t)
            if sc is None:
                return abs(x - y) <= Decimal("1e-9") * max(Decimal(1), abs(x), abs(y))
            return abs(x - y) <= Decimal(1).scaleb(-sc) / 2
        if t in BOOL_TYPES:
            return _bool(a) == _bool(b)
        if t in DATETIME_TYPES:
            return _datetime(a) == _datetime(b)
        if t in DATE_TYPES:
            return _date(a) == _date(b)
    except (ValueError, OverflowError):
        return False
    if t in ID_TYPES and re.fullmatch(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?", str(a)) and \
            re.fullmatch(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?", str(b)):
        return str(a)[:15] == str(b)[:15]
    if t == "multipicklist":
        return {s.strip() for s in str(a).split(";")} == {s.strip() for s in str(b).split(";")}
    if t == "email":  # Salesforce stores email addresses lower-cased
        return _text(a).casefold() == _text(b).casefold()
    return _text(a) == _text(b)


def _truncated(sent: Any, got: Any, length: int | None) -> bool:
    if _is_null(sent) or _is_null(got):
        return False
    s, g = _text(sent), _text(got)
    return len(g) < len(s) and s.startswith(g) and (length is None or len(g) <= length)


# ------------------------------------------------------------------ diff


def repair_index(rejects: Iterable[Mapping[str, Any]]) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """Split reject lines into repairs keyed by (source_system_id, field) and record rejects."""
    repairs: dict[tuple[str, str], str] = {}
    rejected: dict[str, str] = {}
    for line in rejects:
        ssid = line.get("source_system_id")
        if not ssid:
            continue
        if line.get("repair"):
            repairs[(ssid, str(line.get("field") or ""))] = str(line["repair"])
        else:
            rejected.setdefault(ssid, f"{line.get('rule')}: {line.get('message')}")
    return repairs, rejected


def _repair_for(repairs: Mapping[tuple[str, str], str], ssid: str, spec: FieldSpec) -> str | None:
    keys = [spec.field]
    if spec.source_path:
        keys += [spec.source_path, spec.source_path.split(".")[0], spec.source_path.split(".")[-1]]
    for k in keys:
        if (ssid, k) in repairs:
            return repairs[(ssid, k)]
    return None


def diff_record(sobject: str, specs: Iterable[FieldSpec], source_system_id: str,
                clio_data: Mapping[str, Any] | None, sent_row: Mapping[str, Any],
                sf_record: Mapping[str, Any] | None,
                repairs: Mapping[tuple[str, str], str] | None = None,
                rejected: Mapping[str, str] | None = None) -> list[FieldDiff]:
    """Compare one record field by field. ``sf_record`` None means not found in Salesforce."""
    repairs = repairs or {}
    sf = flatten_sf_record(sf_record) if sf_record is not None else None
    sf_id = sf.get("Id") if sf else None
    out = []
    for spec in specs:
        if spec.field not in sent_row:  # only what this row sent (rows of one object differ: all-day events)
            continue
        clio = source_value(clio_data, spec.source_path)
        sent = sent_row.get(spec.field)
        if sf is None:
            reason = (rejected or {}).get(source_system_id)
            status = EXPLAINED if reason else MISSING
            out.append(FieldDiff(sobject, source_system_id, None, spec.field, spec.source_path, clio, sent,
                                 None, status, f"rejected: {reason}" if reason else "record not found in Salesforce"))
            continue
        got = _sf_get(sf, spec.field)
        repair = _repair_for(repairs, source_system_id, spec)
        status, reason = MATCH, None
        if not values_equal(sent, got, spec.sf_type, spec.scale):
            if repair:
                status, reason = EXPLAINED, f"repair: {repair}"
            elif _truncated(sent, got, spec.length):
                status, reason = EXPLAINED, f"truncated by Salesforce to {len(_text(got))} characters"
            elif spec.sf_type == "boolean" and sent is None and values_equal(False, got, "boolean", None):
                status, reason = EXPLAINED, "empty in Clio; a Salesforce checkbox cannot be empty and stores false"
            else:
                status, reason = MISMATCH, f"sent {spec.sf_type} value differs from Salesforce"
        elif repair and not values_equal(clio, got, spec.sf_type, spec.scale):
            status, reason = EXPLAINED, f"repair: {repair}"
        out.append(FieldDiff(sobject, source_system_id, sf_id, spec.field, spec.source_path, clio, sent, got,
                             status, reason))
    return out


def diff_records(sobject: str, specs: list[FieldSpec],
                 records: Iterable[tuple[str, Mapping[str, Any] | None, Mapping[str, Any], Mapping[str, Any] | None]],
                 rejects: Iterable[Mapping[str, Any]] = ()) -> list[FieldDiff]:
    """Diff many records of one sobject: ``records`` yields (source_system_id, clio data,
    sent neutral row, Salesforce record or None)."""
    repairs, rejected = repair_index(rejects)
    out: list[FieldDiff] = []
    for ssid, clio, sent, sf in records:
        out.extend(diff_record(sobject, specs, ssid, clio, sent, sf, repairs, rejected))
    return out


@dataclass
class ObjectSummary:
    sobject: str
    records: int
    fields_compared: int
    matches: int
    mismatches: int
    explained: int
    missing: int


def summarize(diffs: Iterable[FieldDiff]) -> list[ObjectSummary]:
    """Per-sobject counts of compared fields by verdict."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    records: dict[str, set[str]] = defaultdict(set)
    for d in diffs:
        counts[d.sobject][d.status] += 1
        records[d.sobject].add(d.source_system_id)
    return [ObjectSummary(o, len(records[o]), sum(c.values()), c[MATCH], c[MISMATCH], c[EXPLAINED], c[MISSING])
            for o, c in sorted(counts.items())]


# ------------------------------------------------------------------ writers


def write_diff_csv(path: Any, diffs: Iterable[FieldDiff]) -> Any:
    """One line per record × field."""
    return reports.write_csv(path, CSV_HEADERS, ([getattr(d, h) for h in CSV_HEADERS] for d in diffs))


#: The page's views: which verdicts a view lists (the default lists every difference, problems first).
VIEWS: dict[str, tuple[str, ...]] = {
    "differences": (MISMATCH, MISSING, EXPLAINED),
    "unexplained": (MISMATCH, MISSING),
    "all": (MISMATCH, MISSING, EXPLAINED, MATCH),
}
DEFAULT_VIEW = "differences"
ORDER = {MISMATCH: 0, MISSING: 1, EXPLAINED: 2, MATCH: 3}
#: Rows listed on one page; the rest are a page further (the plugin's view) or in ``diff.csv``.
PAGE_ROWS = 300


def select_diffs(diffs: Iterable[FieldDiff], view: str = DEFAULT_VIEW, sobject: str | None = None,
                 field: str | None = None) -> list[FieldDiff]:
    """The rows a view lists, problems first (mismatch, missing, explained, match), then by object/record/field."""
    wanted = VIEWS.get(view, VIEWS[DEFAULT_VIEW])
    rows = [d for d in diffs if d.status in wanted and (not sobject or d.sobject == sobject)
            and (not field or d.field == field)]
    return sorted(rows, key=lambda d: (ORDER.get(d.status, 9), d.sobject, d.source_system_id, d.field))


def _href(base: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "", 1) and
                       not (k == "view" and v == DEFAULT_VIEW)})
    return reports.esc(f"{base}?{query}" if query else base)


def _record(d: FieldDiff) -> str:
    return f"{d.label} ({d.source_system_id})" if d.label else d.source_system_id


def diff_html(diffs: list[FieldDiff], title: str = "Sample field-level diff", *,
              context: dict[str, Any] | None = None, view: str = DEFAULT_VIEW, sobject: str | None = None,
              field: str | None = None, page: int = 1, page_rows: int = PAGE_ROWS,
              view_url: str | None = "../../diff", csv_href: str = "diff.csv") -> str:
    """The diff page: header, per-object and per-field counts, then one page of the selected rows.

    By default only differences are listed (unexplained first, then explained), never the matching
    fields, and at most ``page_rows`` of them: the page stays small on a large firm; every row is in
    ``diff.csv``. ``view_url`` is the plugin's filterable view (links per view, object, field and page);
    None leaves the links out. Everything from data is escaped.
    """
    view = view if view in VIEWS else DEFAULT_VIEW
    summary = summarize(diffs)
    bad = sum(s.mismatches + s.missing for s in summary)
    expl = sum(s.explained for s in summary)
    body = [reports.report_header(context), reports.banner(
        f"{bad} unexplained difference(s), {expl} explained" if bad else
        f"All compared fields match ({expl} explained difference(s))", "bad" if bad else "ok")]

    def link(text: str, active: bool = False, **params: Any) -> str:
        if view_url is None:
            return reports.esc(text)
        cls = ' class="on"' if active else ""
        return f"<a{cls} href=\"{_href(view_url, **params)}\">{reports.esc(text)}</a>"

    body.append("<h2>Summary</h2>")
    head = ["Object", "Records", "Fields compared", "Match", "Mismatch", "Explained", "Missing"]
    rows = []
    for s in sorted(summary, key=lambda s: (-(s.mismatches + s.missing), -s.explained, s.sobject)):
        cells = [link(s.sobject, s.sobject == sobject, view=view, object=s.sobject)] + [
            reports.esc(n) for n in (s.records, s.fields_compared, s.matches, s.mismatches, s.explained, s.missing)]
        cls = "bad" if s.mismatches + s.missing else ("warn" if s.explained else "")
        rows.append(f'<tr class="{cls}"><td>{cells[0]}</td>' + "".join(f'<td class="num">{c}</td>' for c in cells[1:])
                    + "</tr>")
    body.append("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>")
    per_field = Counter((d.sobject, d.field, d.status) for d in diffs if d.status != MATCH)
    if per_field:
        body.append("<h2>Differences by field</h2>")
        keys = sorted({(o, f) for o, f, _ in per_field},
                      key=lambda k: (-(per_field[(*k, MISMATCH)] + per_field[(*k, MISSING)]), k))
        frows = [f'<tr class="{"bad" if per_field[(o, f, MISMATCH)] + per_field[(o, f, MISSING)] else "warn"}">'
                 f"<td>{reports.esc(o)}</td><td>{link(f, f == field, view=view, object=o, field=f)}</td>"
                 f'<td class="num">{per_field[(o, f, MISMATCH)] + per_field[(o, f, MISSING)]}</td>'
                 f'<td class="num">{per_field[(o, f, EXPLAINED)]}</td></tr>' for o, f in keys[:200]]
        body.append("<table><thead><tr><th>Object</th><th>Field</th><th>Unexplained</th><th>Explained</th></tr>"
                    "</thead><tbody>" + "".join(frows) + "</tbody></table>")
        if len(keys) > 200:
            body.append(f"<p class='muted'>first 200 of {len(keys)} fields listed</p>")
    selected = select_diffs(diffs, view, sobject, field)
    pages = max(1, -(-len(selected) // page_rows))
    page = min(max(1, page), pages)
    shown = selected[(page - 1) * page_rows: page * page_rows]
    what = {"differences": "Differences (unexplained first, then explained)", "unexplained": "Unexplained differences",
            "all": "Every compared field (differences first)"}[view]
    scope = "".join(f" · {k} {reports.esc(v)}" for k, v in (("object", sobject), ("field", field)) if v)
    body.append(f"<h2>{what}{scope}</h2>")
    if view_url is not None:
        body.append('<p class="filters noprint">Show: ' + " ".join(
            link(label, v == view, view=v, object=sobject, field=field) for v, label in
            (("differences", "differences"), ("unexplained", "unexplained only"), ("all", "every field"))) +
            (" · " + link("all objects and fields", view=view) if sobject or field else "") + "</p>")
    first = (page - 1) * page_rows + 1 if shown else 0
    body.append(f"<p class='muted'>rows {first}–{first + len(shown) - 1 if shown else 0} of {len(selected)} "
                f"(of {len(diffs)} compared fields); every row: <a href=\"{reports.esc(csv_href)}\">diff.csv</a></p>")
    if shown:
        body.append(reports.table(
            ["Object", "Record", "Field", "Clio path", "Clio value", "Sent", "Salesforce", "Verdict", "Reason",
             "Salesforce Id"],
            [[d.sobject, _record(d), d.field, d.source_path, d.clio_value, d.sent_value, d.sf_value, d.status,
              d.reason, d.sf_id] for d in shown],
            row_classes=[{MISMATCH: "bad", MISSING: "bad", EXPLAINED: "warn"}.get(d.status, "") for d in shown]))
    elif view != "all":
        body.append("<p>No difference in this selection.</p>")
    if pages > 1 and view_url is not None:
        nav = [link("« previous", view=view, object=sobject, field=field, page=page - 1)] if page > 1 else []
        nav.append(reports.esc(f"page {page} of {pages}"))
        if page < pages:
            nav.append(link("next »", view=view, object=sobject, field=field, page=page + 1))
        body.append('<p class="filters noprint">' + " ".join(nav) + "</p>")
    return reports.page(title, "".join(body), subtitle="Clio value, value sent, value read back from Salesforce")


def read_diff_csv(lines: Iterable[str]) -> list[FieldDiff]:
    """The rows of a ``diff.csv`` back (values as text; a file without ``label`` reads as unlabelled)."""
    out = []
    for row in csv.DictReader(lines):
        out.append(FieldDiff(**{h: (row.get(h) or None) if h not in ("sobject", "source_system_id", "field", "status")
                                else (row.get(h) or "") for h in CSV_HEADERS}))
    return out


def write_diff_html(path: Any, diffs: list[FieldDiff], title: str = "Sample field-level diff",
                    context: dict[str, Any] | None = None) -> Any:
    """The static ``diff.html``: the default view's first page (the plugin serves the other views)."""
    return reports.write_text(path, diff_html(diffs, title, context=context))


def diff_as_dicts(diffs: Iterable[FieldDiff]) -> list[dict[str, Any]]:
    return [asdict(d) for d in diffs]
