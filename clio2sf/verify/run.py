"""One verification run: expectations from the raw extraction, read-back, comparison, report.

A whole firm is built and compared one group of Clio objects at a time (``compare_groups``), a group
larger than ``PART_RECORDS`` in parts (``compare_parts``): peak memory follows the cap, not the firm.

``verify_migration(client, root, spec, out_dir=...)``: ``root`` is a migration root (or the
sample's root) holding ``raw/``, ``users/`` and ``rejects/``. Returns the summary dict (figures,
unexplained mismatches per object and field, ``failure``: the message a verify task fails with,
or None). Pure logic: the client is the Salesforce hook (``query_all_iter``, ``describe``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from clio2sf import staging
from clio2sf.mapping.spec import MappingSpec
from clio2sf.verify import accounting, compare, readback, report, source
from clio2sf.verify.reconciliation import iter_raw, iter_rejects, raw_objects


def user_report(users_dir: Any) -> source.UserReport:
    doc = staging.read_json(users_dir / "user_map.json")
    if doc is None:
        raise RuntimeError("no users/user_map.json: run mig_03_resolve_users first")
    csv_path = users_dir / "user_report.csv"
    text = csv_path.read_text() if csv_path.exists() else None
    return source.UserReport.from_files(doc, text)


def raw_count(raw_root: Any, obj: str) -> int | None:
    """The records of one Clio object staged under ``raw_root``, as its manifest says (None: no manifest)."""
    manifest = staging.read_json(raw_root / obj / staging.MANIFEST)
    count = manifest.get("records") if isinstance(manifest, Mapping) else None
    return count if isinstance(count, int) else None


def rejects_of(root: Any) -> compare.Rejects:
    lines = [line for _, _, line in iter_rejects(root, "transform")]
    lines += [line for _, _, line in iter_rejects(root, "load")]
    return compare.Rejects.from_lines(lines)


#: A group with more records than this (expected from Clio's raw data, or held by the org: a
#: calendar's occurrences) is built and compared in parts of about this many (``source.Part``).
PART_RECORDS = 25_000


#: What the pass building a group's parts holds before it writes the pieces to their parts' files
#: (records and occurrence starts; at most :data:`PART_RECORDS`, what comparing a part holds).
PIECE_RECORDS = 5_000


def parts_of(builder: source.Builder, objects: tuple[str, ...], sobjects: tuple[str, ...], rb: readback.ReadBack,
             cap: int) -> int:
    """How many parts a group is compared in: its raw records or the org's records of its sobjects,
    whichever is more, over ``cap``, so that the largest part (``source.Part.share``) holds at most
    about ``cap``."""
    size, cap = max(builder.count(objects), sum(rb.sizes.get(s, 0) for s in sobjects)), max(1, cap)
    count = max(1, -(-size // cap))
    while count > 1 and size * source.Part(0, count).share() > cap:  # e.g. 8 parts of 10 endings: 2 get two
        count += 1
    return count


class SubsetKeys:
    """The Clio ids of one group's expectations as ``ids_in`` asks: a record of the org is in when its
    Clio id, case-folded and without ``#...`` and ``@...`` (a record, its versions and occurrences fall
    together), is that of an expected record or series: every record whose team members or event
    relations the comparison reads (matched exactly or by case), and no other than the subset's."""

    def __init__(self, exp: source.Expectations):
        self.bases = {self.base(k) for _, k in exp.records} | {self.base(k) for k in exp.series}

    @staticmethod
    def base(key: object) -> str:
        return str(key).split("#", 1)[0].split("@", 1)[0].casefold()

    def __contains__(self, key: object) -> bool:
        return self.base(key) in self.bases


def compare_groups(client: Any, builder: source.Builder, users: source.UserReport, rejects: compare.Rejects, *,
                   whole: bool, horizon_days: int, now: datetime, subset: bool,
                   cap: int | None = None) -> tuple[compare.Result, readback.ReadBack]:
    """Build, read back and compare one group of objects at a time (``builder.groups()``), each
    group's expectations dropped before the next is built, the org's records streamed and compared
    as they are read: memory follows the largest group's expectations, not the firm nor the org.
    Kept across groups: the parents' compact views (``Builder.index_parents``), the Id index of the
    objects lookups point at (``readback.index_targets``: Account, Contact, the matters, ...; not the
    calendar's occurrences), the Clio ids compared so far, the counts and the differences.

    A group larger than ``cap`` (default :data:`PART_RECORDS`; :func:`parts_of`) is compared in parts
    (:func:`compare_parts`): what it holds at a time is bounded by the cap, not by the firm.

    ``subset`` (the sample): the org may hold the rest of the firm (sampled again after a full load),
    whose records are read and skipped, never held: a group's parts follow its own records (not the
    org's), the team members and event relations kept are those of its own matters and entries
    (:class:`SubsetKeys`, :func:`readback.ids_in`), not the org's whole tables, and the Id index of the
    objects lookups point at holds the records its lookups and attendees are expected to point at
    (:func:`readback.scope`, :func:`compare.link_parents`), any other Id met read by Id. What still
    follows the org: a hash of each Clio id while counting.

    ``whole``: one group, read whole (a delta window's few records, whose link targets are looked up
    from the records read)."""
    rb = readback.ReadBack()
    groups = builder.groups()
    if whole:
        groups = [(tuple(o for g in groups for o in g[0]), tuple(s for g in groups for s in g[1]))]
    else:
        readback.index(client, sorted({s for _, sobjects in groups for s in sobjects}), rb, ids=False)
        if subset:
            readback.scope(client, rb)
        groups.sort(key=lambda g: (sum(rb.sizes.get(s, 0) for s in g[1]), g[1]))
    readback.read_users(client, rb)
    comparison = compare.Comparison(rb, users, rejects, horizon_days, now, subset)
    for objects, sobjects in groups:
        # a subset (the sample) holds none of the org's records outside it: its parts follow its own records
        count = 1 if whole else parts_of(builder, objects, () if subset else sobjects, rb,
                                         PART_RECORDS if cap is None else cap)
        if count > 1:
            compare_parts(client, builder, rb, comparison, objects, count)
            continue
        exp = builder.build(objects)
        wanted = compare.wanted_fields(exp)
        keys = compare.link_parents(exp) if rb.scoped else None  # the subset's parents, not the org's
        if whole:
            readback.read(client, wanted, rb)
            readback.read_link_targets(client, rb, wanted)  # parents outside the records verified
        else:
            readback.select(client, rb, wanted)
            for sobject, fields in sorted(compare.link_fields(exp).items()):
                readback.index_targets(client, rb, sobject, sorted(fields), keys)
        links = sorted(compare.Scope.of(exp).links)
        parents = None
        if subset and not whole:  # only the links of the subset's records, not the org's whole tables
            keep = SubsetKeys(exp)
            parents = set().union(*(readback.ids_in(client, rb, readback.LINK_PARENT[s], keep) for s in links))
        readback.read_links(client, rb, links, parents, keys)
        comparison.group(exp)
        del exp, wanted, keys  # before the next group is built
        rb.release_links()
    return comparison.result(), rb


def compare_parts(client: Any, builder: source.Builder, rb: readback.ReadBack, comparison: compare.Comparison,
                  objects: tuple[str, ...], count: int) -> None:
    """One group in ``count`` parts (``source.Part``: by the last digits of the Clio number), as if
    whole. One pass over the group's raw records builds every part (``Builder.build_parts``: each raw
    batch read once, each record's expectations built once), keeps what the whole group asks of the org
    (the fields to read, the lookups, its :class:`compare.Scope`, its notes in raw order) and writes the
    expectations to their part's temporary file (``readback.Spool``: disk, not memory), a piece of at
    most :data:`PIECE_RECORDS` (and the cap) at a time; then each part's expectations are read back
    from its file, its team members and event relations read (those of its matters and entries only)
    and its records compared with the org's of that part. (Before lane 35a each part was built twice,
    once for what the group asks and once to compare, and each build read the group's raw records
    whole: 2 × ``count`` passes over them.)

    The org is read once for the whole group: each sobject (and each team member / event relation
    table, with the Clio id of the record a row belongs to) is read whole when the first part asks for
    it and each row written to its part's temporary file, which that part reads: asking the org again
    for every part (a ``LIKE`` on the Clio id's endings, the relation tables whole) made the reads grow
    with the square of the group. The findings, counts and notes are those of the group built whole."""
    wanted: dict[str, set[str]] = {}
    links: dict[str, set[str]] = {}
    scope = compare.Scope()
    notes: list[tuple[int, str]] = []
    keys: set[str] | None = set() if rb.scoped else None  # a subset's parents (readback.scope)

    def pieces() -> Any:
        for index, exp in builder.build_parts(objects, count, min(PIECE_RECORDS, PART_RECORDS)):
            if keys is not None:
                keys.update(compare.link_parents(exp))
            for into, got in ((wanted, compare.wanted_fields(exp)), (links, compare.link_fields(exp))):
                for sobject, fields in got.items():
                    into.setdefault(sobject, set()).update(fields)
            scope.update(compare.Scope.of(exp))
            notes.extend(zip(exp.note_at, exp.notes, strict=True))
            exp.notes.clear()  # noted below, in the order of the group's raw records
            exp.note_at.clear()
            yield index, exp

    built = readback.Spool(count, buffer=1)  # each piece written as it comes: the pass holds one at a time
    try:
        built.fill(pieces())
        readback.select(client, rb, wanted)
        for sobject, fields in sorted(links.items()):
            readback.index_targets(client, rb, sobject, sorted(fields), keys)
        comparison.note([n for _, n in sorted(notes, key=lambda t: t[0])])
        for i in range(count):
            part = source.Part(i, count)
            exp = source.Expectations()
            for piece in built.read(i):
                exp.extend(piece)
            readback.read_links(client, rb, sorted(scope.links), keys=keys, part=part)
            comparison.group(exp, part, scope)
            del exp
            rb.release_links()
    finally:
        built.close()
        rb.release_spools()


def verify_migration(client: Any, root: Any, spec: MappingSpec, *, out_dir: Any, users_dir: Any = None,
                     now: datetime | None = None, stem: str = "verification",
                     discovered_custom_fields: list[Mapping[str, Any]] | None = None,
                     subset: bool = False, raw_dir: str = "raw", context_root: Any = None) -> dict[str, Any]:
    """Verify what the org holds for the Clio records staged under ``root/raw``; write the report.

    ``discovered_custom_fields``: the custom fields discover listed; a custom field with data that
    is not among them is unaccounted (None: not checked). ``subset``: ``root/raw`` is a slice of the
    firm (the sample): Salesforce records outside it are not reported. ``raw_dir``: the folder under
    ``root`` holding the records to verify (a delta window's accepted changes: ``raw_ok``);
    ``context_root``: the migration root whose ``raw/`` holds the whole extraction (parents of the
    records verified). The summary's ``findings`` are
    the differences (dicts), for callers that merge them into another report.
    """
    now = now or datetime.now(UTC)
    raw_root = root / raw_dir
    objects = raw_objects(raw_root)
    users = user_report(users_dir if users_dir is not None else root / "users")
    context = None
    if context_root is not None:
        full = context_root / "raw"
        context = lambda name: iter_raw(full, name) if name in raw_objects(full) else iter(())  # noqa: E731
    builder = source.Builder(lambda name: iter_raw(raw_root, name), set(objects), spec, users, now, context,
                             sizes=lambda name: raw_count(raw_root, name))
    result, rb = compare_groups(client, builder, users, rejects_of(root), whole=context_root is not None,
                                horizon_days=spec.options.get("recurrence_horizon_days", 730), now=now, subset=subset)
    acct = accounting.account(lambda name: iter_raw(raw_root, name), objects, spec, discovered_custom_fields)
    figures = report.write(out_dir, result, accounting.summary(acct), accounting.html(acct), stem=stem,
                           extra={"scope": "subset" if subset else "all", "raw": raw_dir})
    message = report.failure_message(result)
    left = accounting.failures(acct)
    return {
        **{k: figures[k] for k in ("records_compared", "fields_compared", "matches", "mismatches", "explained")},
        "unexplained_by_field": figures["unexplained_by_field"],
        "values_left_behind": sum(f["left_behind"] for f in acct.values()),
        "values_migrated": sum(f["migrated"] for f in acct.values()),
        "unaccounted_fields": left,
        "failure": message,
        "queries": rb.queries,
        "report": str(out_dir / f"{stem}.html"),
        "notes": len(result.notes),
        "findings": report.findings_as_dicts(result.findings),
    }
