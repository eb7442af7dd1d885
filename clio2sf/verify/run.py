"""One verification run: expectations from the raw extraction, read-back, comparison, report.

A whole firm is built and compared one group of Clio objects at a time (``compare_groups``): peak
memory follows the largest group, not the firm.

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


def rejects_of(root: Any) -> compare.Rejects:
    lines = [line for _, _, line in iter_rejects(root, "transform")]
    lines += [line for _, _, line in iter_rejects(root, "load")]
    return compare.Rejects.from_lines(lines)


def compare_groups(client: Any, builder: source.Builder, users: source.UserReport, rejects: compare.Rejects, *,
                   whole: bool, horizon_days: int, now: datetime, subset: bool) -> tuple[compare.Result, readback.ReadBack]:
    """Build, read back and compare one group of objects at a time (``builder.groups()``), each
    group's expectations dropped before the next is built, the org's records streamed and compared
    as they are read: memory follows the largest group's expectations, not the firm nor the org.
    Kept across groups: the parents' compact views (``Builder.index_parents``), the Id index of the
    objects lookups point at (``readback.index_targets``: Account, Contact, the matters, ...; not the
    calendar's occurrences), the Clio ids compared so far, the counts and the differences.

    ``whole``: one group, read whole (a delta window's few records, whose link targets are looked up
    from the records read)."""
    rb = readback.ReadBack()
    groups = builder.groups()
    if whole:
        groups = [(tuple(o for g in groups for o in g[0]), tuple(s for g in groups for s in g[1]))]
    else:
        readback.index(client, sorted({s for _, sobjects in groups for s in sobjects}), rb, ids=False)
        groups.sort(key=lambda g: (sum(rb.sizes.get(s, 0) for s in g[1]), g[1]))
    readback.read_users(client, rb)
    comparison = compare.Comparison(rb, users, rejects, horizon_days, now, subset)
    for objects, _ in groups:
        exp = builder.build(objects)
        wanted = compare.wanted_fields(exp)
        if whole:
            readback.read(client, wanted, rb)
            readback.read_link_targets(client, rb, wanted)  # parents outside the records verified
        else:
            readback.select(client, rb, wanted)
            for sobject, fields in sorted(compare.link_fields(exp).items()):
                readback.index_targets(client, rb, sobject, sorted(fields))
        readback.read_links(client, rb, sorted(set(exp.team_sobject.values()) |
                                               ({"EventRelation"} if exp.attendees or exp.series else set())))
        comparison.group(exp)
        del exp, wanted  # before the next group is built
        rb.release_links()
    return comparison.result(), rb


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
    builder = source.Builder(lambda name: iter_raw(raw_root, name), set(objects), spec, users, now, context)
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
