"""How many records a Clio collection holds, with a handful of requests instead of paging it all.

Clio's spec declares no total on list responses (the ``*_List`` schemas have only ``data``; the
paging docs show only ``meta.paging.{next,previous}``).  So discover counts with what *is*
documented:

1. the first cursor page (``limit=200``, ``fields=id``): an object with one page is counted
   exactly by that one request;
2. the highest id (``order=id(desc)``, ``limit=1``, where the endpoint takes ``order``): with the
   first page's ids it says where the last page should be, and one page read with Clio's offset
   paging (docs.developers.clio.com/api-docs/paging: ``offset=N``, at most 10,000 records, 422 past
   it) confirms it: three requests when the ids are dense enough;
3. otherwise the page at offset 9,800 says whether the object ends below 10,000 records (then a
   binary search over 200-record pages finds the exact end: ten requests at most) or goes
   beyond: then the count is an *estimate* from the id density of the first 10,000 records and the
   highest id, or the lower bound 10,000 where the endpoint cannot order by id.

A response that does carry an integer ``meta.records`` (some clients report one; it is not in the
spec) is taken as Clio's own total and ends the count at once.

The result says how it was obtained (``basis``: ``total``, ``exact``, ``estimate``, ``at_least``)
so the mapping document can show an estimate as one; the extraction counts every record exactly.
Pure: talks to Clio only through ``fetch(path_or_url, params) -> (body, headers)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from clio2sf.catalog import ClioObject

Fetch = Callable[[str, Mapping[str, Any] | None], tuple[dict[str, Any], Mapping[str, str]]]

PAGE = 200
#: Clio's offset paging reads at most this many records (docs: "10,000 total records").
OFFSET_CAP = 10_000


def _data(body: Any) -> list[dict[str, Any]]:
    data = (body or {}).get("data") if isinstance(body, Mapping) else None
    return [r for r in data if isinstance(r, Mapping)] if isinstance(data, list) else []


def _has_next(body: Any) -> bool:
    return bool((((body or {}).get("meta") or {}).get("paging") or {}).get("next"))


def _total(body: Any) -> int | None:
    value = ((body or {}).get("meta") or {}).get("records") if isinstance(body, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _id(record: Mapping[str, Any]) -> int | None:
    try:
        return int(record.get("id"))
    except (TypeError, ValueError):
        return None


def count_records(obj: ClioObject, fetch: Fetch, *, first_page: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Count one catalog object; return ``{"records", "basis", "requests"}``.

    :param first_page: the body of the object's first cursor page (``limit=200``) when the caller
        already has it; otherwise it is fetched (``fields=id``).
    """
    requests = 0
    base = {k: v for k, v in obj.list_params.items() if k != "order"}

    def get(params: Mapping[str, Any]) -> dict[str, Any]:
        nonlocal requests
        requests += 1
        body, _ = fetch(obj.endpoint, params)
        return body if isinstance(body, dict) else {}

    def result(records: int, basis: str) -> dict[str, Any]:
        return {"records": records, "basis": basis, "requests": requests}

    body = dict(first_page) if first_page is not None else get({**obj.list_params, "fields": "id", "limit": PAGE})
    if (total := _total(body)) is not None:
        return result(total, "total")
    first = _data(body)
    if not _has_next(body):
        return result(len(first), "exact")

    def page_at(offset: int, limit: int = PAGE, **extra: Any) -> dict[str, Any]:
        return get({**base, **extra, "fields": "id", "limit": limit, "offset": offset})

    low, kth = (_id(first[0]), _id(first[-1])) if first else (None, None)
    high: int | None = None
    if obj.ordered:  # endpoints without ``order`` cannot be asked for their highest id
        try:
            top = _data(page_at(0, limit=1, order="id(desc)"))
        except Exception as exc:  # HTTP 400: this endpoint's order enum lacks id(desc)
            if getattr(exc, "status", None) != 400:
                raise
        else:
            high = _id(top[0]) if top else None
    cap_page = OFFSET_CAP // PAGE - 1  # the last page offset paging can read (offset 9,800)
    lo, hi = 1, None  # page lo-1 is known full with more after it; page hi is known empty
    if None not in (low, kth, high) and kth > low and high >= kth:  # type: ignore[operator]
        # Where the ids say the last page is: when they are dense enough, one probe confirms it.
        guess = 1 + round((high - low) * (len(first) - 1) / (kth - low))  # type: ignore[operator]
        if guess <= OFFSET_CAP:
            page_no = min(max((guess - 1) // PAGE, 1), cap_page)
            page = page_at(page_no * PAGE)
            rows = _data(page)
            if rows and not _has_next(page):
                return result(page_no * PAGE + len(rows), "exact")
            if rows:
                lo = page_no + 1
            else:
                hi = page_no
    if hi is None:
        tail = page_at(cap_page * PAGE)
        tail_rows = _data(tail)
        if tail_rows and not _has_next(tail):
            return result(cap_page * PAGE + len(tail_rows), "exact")
        if tail_rows:
            # More than 10,000 records: extrapolate from the id density of the first 10,000.
            at_cap = _id(tail_rows[-1])
            if None in (low, at_cap, high) or at_cap <= low or high < at_cap:  # type: ignore[operator]
                return result(OFFSET_CAP, "at_least")
            estimate = OFFSET_CAP + round((high - at_cap) * (OFFSET_CAP - 1) / (at_cap - low))  # type: ignore[operator]
            return result(max(estimate, OFFSET_CAP + 1), "estimate")
        hi = cap_page
    while lo < hi:  # binary search of the last non-empty page
        mid = (lo + hi) // 2
        page = page_at(mid * PAGE)
        rows = _data(page)
        if not rows:
            hi = mid
        elif not _has_next(page):
            return result(mid * PAGE + len(rows), "exact")
        else:
            lo = mid + 1
    return result(lo * PAGE, "exact")  # every page before lo was full and page lo is empty
