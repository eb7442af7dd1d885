"""Verify a load against the org: the sample field-level diff and the full reconciliation.

The DAG passes a Salesforce client (``ClioSalesforceHook``: ``query_all_iter``, ``describe``) and
pathlib-like paths; only small JSON-able dicts are returned, the reports are files. Nothing here
logs record values (client data is privileged).
"""

from __future__ import annotations

from array import array
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from clio2sf import books, diff, labels, ledger_index, reconcile, reports, staging
from clio2sf.load import AUDIT_FIELDS, SOQL_IN_CHUNK, chunked, soql_in
from clio2sf.mapping.spec import NATURAL_KEY_OBJECTS as SPEC_NATURAL_KEY_OBJECTS
from clio2sf.mapping.spec import MappingSpec

EXT = "Clio_Id__c"
NATURAL_KEY_OBJECTS = SPEC_NATURAL_KEY_OBJECTS | {"AccountContactRelation", "CaseTeamMember"}
#: Natural keys that cannot be compared in SOQL (body fields): checked through ledger ids only.
UNQUERYABLE_KEYS = frozenset({"ContentNote"})


# ------------------------------------------------------------------ staged files


def _children(path: Any) -> list[Any]:
    try:
        return sorted(path.iterdir(), key=lambda p: p.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def base_id(source_system_id: str) -> str:
    """``document-55@v2#matter-7`` → ``document-55``: the Clio record a row came from."""
    return source_system_id.split("#", 1)[0].split("@", 1)[0]


def is_primary(source_system_id: str) -> bool:
    """A record's own row (an occurrence or version counts), not a link row (``#``)."""
    return "#" not in source_system_id


def raw_files(raw_root: Any, obj: str) -> list[Any]:
    """The batch files of ``<raw_root>/<obj>/``: in manifest order when there is one."""
    odir = raw_root / obj
    manifest = staging.read_json(odir / staging.MANIFEST)
    if manifest is not None:
        return [odir / b["file"] for b in manifest.get("batches", [])]
    return [p for p in _children(odir) if p.name.endswith(".jsonl.gz")]


def raw_objects(raw_root: Any) -> list[str]:
    return [p.name for p in _children(raw_root) if p.is_dir()]


def iter_raw(raw_root: Any, obj: str) -> Iterator[dict[str, Any]]:
    """Every staged envelope of one Clio object under ``raw_root``."""
    for f in raw_files(raw_root, obj):
        yield from staging.read_jsonl_gz(f)


def transformed_files(root: Any) -> Iterator[tuple[str, str, Any]]:
    """(sobject, clio object, path) of every ``transformed/<sobject>/<clio object>-<batch>.jsonl.gz``."""
    for sdir in _children(root / "transformed"):
        for f in _children(sdir):
            if f.name.endswith(".jsonl.gz") and "-" in f.name:
                yield sdir.name, f.name.split("-", 1)[0], f


def iter_rejects(root: Any, phase: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(folder name, file, line) of ``rejects/<phase>/<folder>/*.jsonl``."""
    for odir in _children(root / "rejects" / phase):
        for f in _children(odir):
            if f.name.endswith(".jsonl"):
                for line in staging.read_jsonl(f):
                    yield odir.name, f, line


def query_in(client: Any, sobject: str, fields: Sequence[str], key: str, values: Iterable[Any],
             extra_where: str = "") -> Iterator[dict[str, Any]]:
    """Stream ``SELECT fields FROM sobject WHERE key IN (...)`` in chunks of 200, flattened."""
    select = ", ".join(dict.fromkeys(fields))
    for part in chunked(sorted({str(v) for v in values}), SOQL_IN_CHUNK):
        soql = f"SELECT {select} FROM {sobject} WHERE {soql_in(key, part)}{extra_where}"
        for rec in client.query_all_iter(soql):
            yield diff.flatten_sf_record(rec)


def existing_ids(client: Any, sobject: str, ids: Iterable[str]) -> set[str]:
    """Ids (15-character form) still present in the org."""
    return {str(r["Id"])[:15] for r in query_in(client, sobject, ["Id"], "Id", ids)}


# ------------------------------------------------------------------ field specs


def _field_meta(client: Any, sobject: str) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in client.describe(sobject)["fields"]}


def _first_path(value: Any) -> str | None:
    if isinstance(value, list):
        return value[0] if value else None
    return value if isinstance(value, str) else None


def spec_sources(spec: MappingSpec, sobject: str, clio_object: str) -> dict[str, str | None]:
    """Target column → Clio source path for ``sobject`` rows made from ``clio_object``.

    Several spec keys can feed one sobject (``Task``, ``Task@time_entries``...): only those whose
    ``source`` is ``clio_object`` count. Link columns get the link's ``from`` path.
    """
    out: dict[str, str | None] = {}
    for key, ospec in spec.objects.items():
        if key.split("@", 1)[0] != sobject:
            continue
        src = ospec.get("source")
        sources = src if isinstance(src, list) else [src]
        if clio_object not in sources:
            continue
        for target, fspec in (ospec.get("fields") or {}).items():
            out.setdefault(target, _first_path(fspec.get("from")))
        for link in (ospec.get("links") or {}).values():
            for column in (link.get("columns") or {}).values():
                out.setdefault(column, _first_path(link.get("from")))
    return out


def _soql_column(column: str) -> str | None:
    """The SOQL path that reads a neutral column back; None for polymorphic columns."""
    return None if ":" in column else column


def build_field_specs(sent_columns: Iterable[str], sources: Mapping[str, str | None],
                      meta: Mapping[str, Mapping[str, Any]], notes: list[str], where: str) -> list[diff.FieldSpec]:
    """FieldSpecs for the columns actually sent; unknown fields become notes, not queries."""
    specs = []
    for column in sorted(set(sent_columns)):
        if column.startswith("_") or column in ("Id", EXT):
            continue
        if "." in column:
            rel = column.split(".", 1)[0].split(":")[-1]
            id_field = rel[:-3] + "__c" if rel.endswith("__r") else rel + "Id"
            if id_field not in meta:
                notes.append(f"{where}: {column} not compared: {id_field} is not in the describe")
                continue
            specs.append(diff.FieldSpec(column, "string", sources.get(column)))
            continue
        fmeta = meta.get(column)
        if fmeta is None:
            notes.append(f"{where}: {column} not compared: not in the Salesforce describe")
            continue
        if column in AUDIT_FIELDS and not fmeta.get("createable"):
            notes.append(f"{where}: {column} not compared: the org does not let the integration user set audit "
                         "fields, so the loader does not send it (Set Audit Fields upon Record Creation)")
            continue
        specs.append(diff.FieldSpec(column, str(fmeta.get("type") or "string"), sources.get(column),
                                    fmeta.get("scale") if fmeta.get("type") in ("double", "percent") else None,
                                    fmeta.get("length") or None))
    return specs


def _resolve_polymorphic(client: Any, records: Mapping[str, dict[str, Any]], columns: Iterable[str]) -> None:
    """Fill ``Type:Rel.Clio_Id__c`` values by reading ``RelId`` and then the parent's Clio_Id__c."""
    for column in columns:
        typ, rest = column.split(":", 1)
        rel, target = rest.split(".", 1)
        id_field = rel + "Id"
        parent_ids = {r.get(id_field) for r in records.values() if r.get(id_field)}
        found = {str(p["Id"])[:15]: p.get(target) for p in query_in(client, typ, ["Id", target], "Id", parent_ids)}
        for r in records.values():
            pid = r.get(id_field)
            r[column] = found.get(str(pid)[:15]) if pid else None


# ------------------------------------------------------------------ sample diff


def sample_diff(client: Any, mroot: Any, spec: MappingSpec, *, sample_dir: str = "sample",
                out_dir: Any = None, run_id: str | None = None) -> dict[str, Any]:
    """Read the sample's loaded records back and diff them field by field against what was sent.

    Writes ``diff.csv``, ``diff.html`` and ``diff_summary.json`` under ``out_dir`` (default
    ``<mroot>/<sample_dir>``); the page's header names the firm, the migration and ``run_id``.
    """
    root = mroot / sample_dir
    out = out_dir if out_dir is not None else root
    notes: list[str] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for sobject, clio_object, path in transformed_files(root):
        groups[(sobject, clio_object)].extend(staging.read_jsonl_gz(path))
    raw_root = root / "raw"
    raw: dict[str, dict[str, Any]] = {}
    for obj in {c for _, c in groups}:
        for env in iter_raw(raw_root, obj):
            if env.get("source_system_id"):
                raw[env["source_system_id"]] = env.get("data")
    rejects = [line for _, _, line in iter_rejects(root, "transform")]
    rejects += [line for _, _, line in iter_rejects(root, "load")]
    diffs: list[diff.FieldDiff] = []
    for (sobject, clio_object), envs in sorted(groups.items()):
        where = f"{sobject} from {clio_object}"
        if sobject in NATURAL_KEY_OBJECTS or any(not e.get("external_id_field") for e in envs):
            notes.append(f"{where}: {len(envs)} natural-key row(s) not diffed (no Clio_Id__c to read back)")
            continue
        meta = _field_meta(client, sobject)
        if EXT not in meta:
            notes.append(f"{where}: not diffed: {EXT} is not in the Salesforce describe")
            continue
        sent_cols = {c for e in envs for c in e["row"]}
        specs = build_field_specs(sent_cols, spec_sources(spec, sobject, clio_object), meta, notes, where)
        poly = [s.field for s in specs if ":" in s.field]
        select = ["Id", EXT, *(s.field for s in specs if _soql_column(s.field))]
        select += [p.split(":", 1)[1].split(".", 1)[0] + "Id" for p in poly]
        found: dict[str, dict[str, Any]] = {}
        for rec in query_in(client, sobject, select, EXT, (e["row"][EXT] for e in envs)):
            found[str(rec.get(EXT)).casefold()] = rec
        _resolve_polymorphic(client, found, poly)
        records = [(e["source_system_id"], raw.get(base_id(e["source_system_id"])), e["row"],
                    found.get(str(e["row"][EXT]).casefold())) for e in envs]
        diffs.extend(diff.diff_records(sobject, specs, records, rejects))
    source_to_target = _source_to_target(client, mroot, root, spec, out, notes)
    diffs.extend(source_to_target.pop("diffs", []))
    names = {ssid: name for ssid, data in raw.items() if (name := labels.record_name(data))}
    for d in diffs:
        d.label = names.get(base_id(d.source_system_id))
    context = reports.report_context(mroot, spec.data.get("firm"), run_id)
    summary = diff.summarize(diffs)
    totals = {
        "objects": len(summary),
        "records": sum(s.records for s in summary),
        "fields_compared": sum(s.fields_compared for s in summary),
        "matches": sum(s.matches for s in summary),
        "mismatches": sum(s.mismatches for s in summary),
        "explained": sum(s.explained for s in summary),
        "missing": sum(s.missing for s in summary),
    }
    diff.write_diff_csv(out / "diff.csv", diffs)
    report = diff.write_diff_html(out / "diff.html", diffs, context=context)
    reports.write_json(out / "diff_summary.json", {**totals, "context": context, "by_object": [vars(s) for s in summary],
                                                   "notes": notes, "source_to_target": source_to_target})
    return {**totals, "notes": len(notes), "report": str(report), "source_to_target": source_to_target}


def _source_to_target(client: Any, mroot: Any, root: Any, spec: MappingSpec, out: Any,
                      notes: list[str]) -> dict[str, Any]:
    """The source-to-target verifier on the sample (``verification.*`` next to the diff); its
    differences join the diff as rows whose reason starts with ``source-to-target``."""
    from clio2sf.verify.run import verify_migration

    users_dir = mroot / "users"
    if staging.read_json(users_dir / "user_map.json") is None:
        notes.append("source-to-target verification skipped: no users/user_map.json (run mig_03_resolve_users)")
        return {}
    result = verify_migration(client, root, spec, out_dir=out, users_dir=users_dir, subset=True)
    rows = [diff.FieldDiff(f["sobject"], f["source"], None, f["field"], f["clio_path"], f["expected"], None,
                           f["actual"], diff.MISMATCH if f["status"] == "mismatch" else diff.EXPLAINED,
                           f"source-to-target ({f['check']}): {f['reason']}")
            for f in result.pop("findings")]
    return {**result, "diffs": rows}


# ------------------------------------------------------------------ reconciliation

#: figure → (sobject, amount field, Clio kind of the rows that count, group-by column or None).
AMOUNT_TARGETS: dict[str, list[tuple[str, str, str]]] = {
    "bills.total": [("Clio_Billing__c", "Clio_Total__c", "bill")],
    "time.hours": [("Time_Entry__c", "Clio_Hours__c", "activity"), ("Task", "Clio_Hours__c", "activity")],
    "time.amount": [("Time_Entry__c", "Clio_Total__c", "activity"), ("Task", "Clio_Total__c", "activity")],
    "expenses.amount": [("Expense__c", "Clio_Amount__c", "activity")],
    "allocations.amount": [("Clio_Payment__c", "Clio_Amount__c", "allocation")],
    "credit_memos.amount": [("Clio_Credit_Memo__c", "Clio_Amount__c", "credit_memo")],
    "interest.amount": [("Clio_Interest_Charge__c", "Clio_Amount__c", "interest_charge")],
    "outstanding.amount": [("Clio_Client_Balance__c", "Clio_Total_Outstanding__c", "outstanding_client_balance")],
    "damages.amount": [("Clio_Damage__c", "Clio_Amount__c", "damage")],
}
TRUST = ("Ledger__c", "Clio_Amount__c", "Clio_Bank_Account_Id__c")
MATTER_COLUMNS = ("Case__r.Clio_Id__c", "Opportunity__r.Clio_Id__c")


def _kind(ssid: str) -> str:
    return ssid.split("-", 1)[0]


class _Staged:
    """What the staging area says about one migration, read one Clio object at a time (never every row's id
    at once): the Clio objects with primary rows and their sobjects, the columns sent per sobject, natural
    keys, rejects; which objects are reconciled per record (their rows' ids follow the staged Clio records)
    and their Clio kind; the activities that became Tasks. :meth:`primary_ids` reads an object's ids again.
    ``folder``: an object's ids of more than ``reconcile.RUN`` are kept there (:class:`reconcile.IdSet`)."""

    def __init__(self, mroot: Any, folder: reports.SpillFolder | None = None) -> None:
        raw_root = mroot / "raw"
        self.sobjects: dict[str, set[str]] = defaultdict(set)  # clio object → sobjects of its primary rows
        self.columns: dict[str, set[str]] = defaultdict(set)  # sobject → columns sent
        self.natural_keys: dict[str, tuple[str, ...]] = {}
        #: clio object → (position in staging order, sobject, file) of its transformed files
        self.files: dict[str, list[tuple[int, str, Any]]] = defaultdict(list)
        self.kinds: dict[str, str] = {}  # reconciled clio object → Clio kind
        self.derived: list[str] = []  # clio objects whose rows' ids do not follow the Clio records
        #: activities whose primary row is a Task (the last sobject, in staging order, that has it).
        self.task_activities = reconcile.IdSet()
        keys: dict[str, tuple[int, tuple[str, ...]]] = {}  # sobject → (file position, natural key): the last
        for pos, (sobject, clio_object, path) in enumerate(transformed_files(mroot)):
            self.files[clio_object].append((pos, sobject, path))
        for obj in sorted(self.files):
            bases = reconcile.IdSet(folder=folder)  # this object's primary rows' Clio records (8 bytes each)
            # an object's files are in sobject order: its Tasks before the sobjects after "Task" that take
            # an activity back (the set is the Tasks added, less those taken back, object by object)
            tasks, gone = reconcile.IdSet(), reconcile.IdSet()
            for pos, sobject, path in self.files[obj]:
                for env in staging.read_jsonl_gz(path):
                    ssid = env["source_system_id"]
                    self.columns[sobject].update(env["row"])
                    if env.get("natural_key") and pos >= keys.get(sobject, (-1, ()))[0]:
                        keys[sobject] = (pos, tuple(env["natural_key"]))
                    if is_primary(ssid):
                        self.sobjects[obj].add(sobject)
                        bases.add(base_id(ssid))
                        if sobject == "Task":
                            if _kind(ssid) == "activity":
                                tasks.add(ssid)
                        elif sobject > "Task" and (ssid in tasks or ssid in self.task_activities):
                            gone.add(ssid)
            if len(tasks) or len(gone):
                self.task_activities = (self.task_activities | tasks) - gone
            del tasks, gone
            if not len(bases):
                continue
            first = next((ssid for e in iter_raw(raw_root, obj) if (ssid := e.get("source_system_id")) in bases), None)
            if first is None:
                self.derived.append(obj)
            else:
                self.kinds[obj] = _kind(first)
        self.natural_keys = {s: k for s, (_, k) in keys.items()}
        self.reconciled = sorted(self.kinds)
        self.rejects: list[dict[str, Any]] = []
        for folder, _, line in iter_rejects(mroot, "transform"):
            self.rejects.append({**line, "object": line.get("object") or folder})
        for _, f, line in iter_rejects(mroot, "load"):
            ssid = line.get("source_system_id") or ""
            if is_primary(ssid) and line.get("repair") is None:
                self.rejects.append({**line, "object": f.name.split("-", 1)[0], "source_system_id": base_id(ssid)})

    def primary_ids(self, obj: str) -> Iterator[str]:
        """The source ids of ``obj``'s primary rows (every sobject), read from its transformed files as they
        stream (repeats included)."""
        return (ssid for _, _, path in self.files.get(obj, ()) for env in staging.read_jsonl_gz(path)
                if is_primary(ssid := env["source_system_id"]))


def _plain(value: str) -> tuple[str, int] | None:
    """``matter-7`` → ("matter", 7): a Clio_Id__c that is its record's id as a number (no occurrence)."""
    return None if "@" in value else reconcile.IdSet.split(value)


def _found_rows(rows: Callable[[], Iterable[str]], again: Callable[[], Iterable[str]],
                folder: reports.SpillFolder | None = None) -> reconcile.FoundRows:
    """One object's org rows summed up as they stream (:meth:`reconcile.FoundRows.of` without the list):
    the Clio records found, the row count and the Clio_Id__c values on more than one row.

    A row whose Clio_Id__c is its record's id as a number (``matter-7``) keeps that number (8 bytes a row):
    its repeats are the duplicates. The occurrences of a record with a number (``calendar_entry-4@…``) are
    compared within each run of that record's rows (read back together, as loaded); the record's number is
    kept once a run: a record with rows in more than one run is counted again, by a second read of the rows
    (their hashes; a third read names the values whose hash repeats, if any).
    Any other row keeps an 8-byte hash, the rows read again only when two hashes agree (to name them exactly).
    ``folder``: the numbers (of the rows, of the runs, of the records found) are kept there once a kind has
    more than ``reconcile.RUN`` (:class:`reconcile.NumberRuns`), not in memory.
    """
    found = reconcile.IdSet(folder=folder)

    def numbers() -> Any:
        return array("q") if folder is None else reconcile.NumberRuns(folder)

    plain: dict[str, Any] = {}  # kind → the number of each plain row
    runs: dict[str, Any] = {}  # kind → the number of the record of each run of occurrences
    hashes = array("q")
    duplicates: dict[str, int] = {}
    run_base: str | None = None
    run_values: dict[str, int] = {}
    count = 0
    for value in rows():
        count += 1
        split = _plain(value)
        if split is not None:
            nums = plain.get(split[0])
            if nums is None:
                nums = plain[split[0]] = numbers()
            nums.append(split[1])
            continue
        base = reconcile.base_source_id(value)
        if base != run_base:  # a new run (its record added once: the run's other rows add nothing)
            found.add(base)
            split = reconcile.IdSet.split(base)
            if split is None:
                hashes.append(hash(value))
                continue
            run_base, run_values = base, {}
            nums = runs.get(split[0])
            if nums is None:
                nums = runs[split[0]] = numbers()
            nums.append(split[1])
        seen = run_values.get(value, 0) + 1
        run_values[value] = seen
        if seen > 1:
            duplicates[value] = duplicates.get(value, 1) + 1
    del run_values
    while plain:
        kind, nums = plain.popitem()
        if nums.strict if isinstance(nums, reconcile.NumberRuns) else reconcile.increasing(nums):
            found.add_numbers(kind, nums.unique() if isinstance(nums, reconcile.NumberRuns) else nums)
            continue  # read back in id order: every row a record, once (no copy)
        once = numbers()
        for num, n in reconcile.counted(nums):
            once.append(num)
            if n > 1:
                duplicates[f"{kind}-{num}"] = n
        del nums
        found.add_numbers(kind, once.unique() if isinstance(once, reconcile.NumberRuns) else once)
    split_runs: set[str] = set()  # records whose occurrences came in more than one run
    while runs:
        kind, nums = runs.popitem()
        split_runs.update(f"{kind}-{num}" for num in reconcile.repeated(nums))
        del nums
    twice = reconcile.repeated(hashes)
    del hashes
    if twice or split_runs:
        for value in [v for v in duplicates if reconcile.base_source_id(v) in split_runs]:
            del duplicates[value]  # counted whole below

        def recount(v: str) -> bool:
            if _plain(v) is not None:
                return False
            base = reconcile.base_source_id(v)
            return base in split_runs or (reconcile.IdSet.split(base) is None and hash(v) in twice)

        # the rows to count again are first read for their 8-byte hashes (on disk past ``RUN``): only the
        # values whose hash repeats are counted by name, on a third read when there are any (a real org's
        # Id order interleaves a series' occurrences with other loads' rows: every row of those series)
        again_hashes = numbers()
        for v in again():
            if recount(v):
                again_hashes.append(hash(v))
        repeats = reconcile.repeated(again_hashes)
        del again_hashes
        if repeats:
            duplicates.update(reconcile.count_duplicates(v for v in again() if recount(v) and hash(v) in repeats))
    return reconcile.FoundRows(found, count, dict(sorted(duplicates.items())))


def _source_ids(raw_root: Any, obj: str, folder: reports.SpillFolder | None = None) -> reconcile.IdSet:
    """The Clio records of ``obj`` staged (:func:`reconcile.source_totals`'s ids, without its figures);
    ``folder``: kept there, not in memory, when there are more than ``reconcile.RUN``."""
    ids = reconcile.IdSet(folder=folder)
    for env in iter_raw(raw_root, obj):
        ssid = env.get("source_system_id")
        if not ssid:
            raise ValueError(f"{obj}: envelope without source_system_id (clio_id {env.get('clio_id')!r})")
        ids.add(ssid)
    return ids


def _dec(value: Any, where: str) -> Decimal:
    try:
        return Decimal(0) if value is None else Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{where}: {value!r} is not a number") from None


def _column_ok(column: str, meta: Mapping[str, Any]) -> bool:
    """A plain field in the describe, or a relationship column whose lookup field is."""
    if "." not in column:
        return column in meta
    rel = column.split(".", 1)[0].split(":")[-1]
    return (rel[:-3] + "__c" if rel.endswith("__r") else rel + "Id") in meta


def _stream_sobject(client: Any, sobject: str, fields: Sequence[str], meta: Mapping[str, Any],
                    extra_where: str = "") -> Iterator[dict]:
    cols = [f for f in dict.fromkeys(fields) if _column_ok(f, meta)]
    soql = f"SELECT {', '.join(cols)} FROM {sobject} WHERE {EXT} != null{extra_where}"
    for rec in client.query_all_iter(soql):
        yield diff.flatten_sf_record(rec)


def _natural_key_rows(client: Any, sobject: str, key: tuple[str, ...], ledger_ids: Mapping[str, str],
                      queryable: bool) -> list[str]:
    """One ssid per Salesforce row of a natural-key object we wrote (duplicates repeat the ssid), in memory:
    what :func:`_natural_key_rows_on_disk` says, for a small ``ledger_ids`` (a test's)."""
    by_id = {str(sf_id)[:15]: ssid for ssid, sf_id in ledger_ids.items()}
    if not queryable:
        present = existing_ids(client, sobject, ledger_ids.values())
        return [ssid for short, ssid in by_id.items() if short in present]
    rows_by_key: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for rec in client.query_all_iter(f"SELECT Id, {', '.join(key)} FROM {sobject}"):
        rows_by_key[_key_of(rec, key)].append(str(rec["Id"])[:15])
    out = []
    for ids in rows_by_key.values():
        ours = [by_id[i] for i in ids if i in by_id]
        if ours:
            out.extend([ours[0]] * len(ids))
    return out


def _key_of(rec: Mapping[str, Any], key: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(rec.get(k))[:15] if k.endswith("Id") else str(rec.get(k)) for k in key)


#: SQLite's page cache for :func:`_natural_key_rows_on_disk` (KB): what it holds, whatever the rows
NK_CACHE_KB = 1024


def _natural_key_rows_on_disk(client: Any, mroot: Any, sobject: str, key: tuple[str, ...], primary: Iterable[str],
                              queryable: bool, folder: reports.SpillFolder) -> Iterator[str]:
    """:func:`_natural_key_rows` of the ledger's latest writes of ``primary`` (:func:`_ledger_ids`), with
    the asked ids, the ledger's writes and the org's rows kept in a SQLite file in ``folder``, not in
    memory (a firm's relationships or notes: ~1.5 KB a row held by the ledger look-up and the org's rows
    grouped by key, ~145 MB at the xl benchmark's 88,000 CaseContactRole rows). The ledger's writes are
    read from its files line by line (``ledger_index.ok_rows``), not through the Parquet index: no
    pyarrow in the process (~125 MB). The same ssids, in the same order: the natural-key groups in the
    order the org returns their first row (unqueryable: our rows in the ledger's time order, asked 200
    Ids a query)."""
    import json
    import os
    import sqlite3
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".sqlite", dir=folder.path)
    os.close(fd)
    db = sqlite3.connect(path)
    try:
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{NK_CACHE_KB}", "temp_store = FILE"):
            db.execute(f"PRAGMA {pragma}")
        db.execute("CREATE TABLE wanted (sid TEXT PRIMARY KEY) WITHOUT ROWID")
        db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((str(s),) for s in primary))
        # every successful write of an asked id, in scan order (seq): the latest per id is the last in
        # (at, run_id, phase, batch, seq) order, as ledger_index.latest
        db.execute("CREATE TABLE writes (seq INTEGER PRIMARY KEY, sid TEXT, sf TEXT, at TEXT, run TEXT, phase TEXT,"
                   " batch TEXT)")
        cols = ("source_system_id", "sf_id", "at", "run_id", "phase", "batch")
        db.executemany("INSERT INTO writes (sid, sf, at, run, phase, batch) SELECT ?, ?, ?, ?, ?, ? "
                       "WHERE EXISTS (SELECT 1 FROM wanted WHERE sid = ?1)", ledger_index.ok_rows(mroot, sobject, cols))
        db.execute("CREATE INDEX writes_sid ON writes (sid, at, run, phase, batch)")
        # Salesforce id (15) → our ssid: the latest writes that are not a rollback's, in time order (an id
        # written for two ssids keeps its first place and the later ssid, as a dict would)
        db.execute("CREATE TABLE ours (short TEXT PRIMARY KEY, ord INTEGER, ssid TEXT, sf TEXT)")
        latest = db.execute(
            "SELECT sid, sf FROM writes w WHERE w.seq = (SELECT x.seq FROM writes x WHERE x.sid = w.sid "
            "ORDER BY x.at DESC, x.run DESC, x.phase DESC, x.batch DESC, x.seq DESC LIMIT 1) AND w.phase IS NOT 'rollback' "
            "ORDER BY w.at, w.run, w.phase, w.batch, w.seq")
        db.executemany("INSERT INTO ours VALUES (substr(?2, 1, 15), ?3, ?1, ?2) ON CONFLICT (short) DO UPDATE "
                       "SET ssid = excluded.ssid, sf = excluded.sf",
                       ((sid, str(sf), n) for n, (sid, sf) in enumerate(latest)))
        db.execute("DROP TABLE writes")
        db.execute("DROP TABLE wanted")
        if not queryable:
            chunk: list[tuple[str, str, str]] = []
            for row in db.execute("SELECT short, ssid, sf FROM ours ORDER BY ord"):
                chunk.append(row)
                if len(chunk) == SOQL_IN_CHUNK:
                    present = existing_ids(client, sobject, [sf for _, _, sf in chunk])
                    yield from (ssid for short, ssid, _ in chunk if short in present)
                    chunk = []
            if chunk:
                present = existing_ids(client, sobject, [sf for _, _, sf in chunk])
                yield from (ssid for short, ssid, _ in chunk if short in present)
            return
        db.execute("CREATE TABLE org (n INTEGER PRIMARY KEY, k TEXT, short TEXT)")
        db.executemany("INSERT INTO org (k, short) VALUES (?, ?)", (
            (json.dumps(_key_of(rec, key)), str(rec["Id"])[:15])
            for rec in client.query_all_iter(f"SELECT Id, {', '.join(key)} FROM {sobject}")))
        db.execute("CREATE INDEX org_k ON org (k)")
        groups = db.execute(
            "SELECT COUNT(*), MIN(g.n) AS first, (SELECT o.ssid FROM org r JOIN ours o ON o.short = r.short "
            "WHERE r.k = g.k ORDER BY r.n LIMIT 1) AS mine FROM org g GROUP BY g.k HAVING mine IS NOT NULL "
            "ORDER BY first")
        for count, _, ssid in groups:
            for _ in range(count):
                yield ssid
    finally:
        db.close()
        reconcile._unlink(path)


def _ledger_ids(mroot: Any, sobject: str, source_ids: Iterable[str]) -> dict[str, str]:
    """Source id → Salesforce id of our latest write of each asked ``sobject`` row, unless that write was a
    rollback's (the row is no longer ours), through the ledger index: never the whole ledger in memory."""
    last = ledger_index.latest(ledger_index.by_source_ids(mroot, sobject, source_ids))
    cols = [last[c].to_pylist() for c in ("at", "run_id", "phase", "batch", "source_system_id", "sf_id")]
    rows = sorted(zip(*cols, strict=True), key=lambda r: r[:4])  # in time order, as the whole-ledger view
    return {str(r[4]): str(r[5]) for r in rows if r[2] != "rollback"}


def reconcile_migration(client: Any, mroot: Any, spec: MappingSpec, *, run_label: str) -> dict[str, Any]:
    """Clio records → Salesforce rows (loaded or rejected, nothing missing), duplicates and money.

    Writes ``reports/<run_label>/reconciliation.{json,csv,html}`` and ``books.csv``; the page's header
    names the firm, the migration and the run, its money carries the bills' currency and its rows the
    names the firm knows (matter numbers, client names) read from the staged Clio records.
    """
    # an object's ids (staged, found in the org) go to files here past ``reconcile.RUN`` of a kind: what is
    # held while it is compared is bounded by that, not by the object (removed with the reconciliation)
    spill = reports.SpillFolder()
    staged = _Staged(mroot, spill)
    notes = [f"{obj}: rows are derived (ids do not follow the Clio records): not reconciled per record"
             for obj in staged.derived]
    raw_root = mroot / "raw"
    rejected: dict[str, set[str]] = defaultdict(set)
    for line in staged.rejects:
        if line.get("repair") is None:
            rejected[line["object"]].add(line["source_system_id"])
    kinds, reconciled = staged.kinds, staged.reconciled

    sums: dict[str, Decimal] = defaultdict(Decimal)
    measured: set[str] = set()
    metas: dict[str, dict[str, Any]] = {}

    def meta(sobject: str) -> dict[str, Any]:
        if sobject not in metas:
            metas[sobject] = _field_meta(client, sobject)
        return metas[sobject]

    # a larger firm's per-matter trust figures are compared in parts, as its books (:func:`_matter_amounts`)
    matter_parts = _book_parts(raw_root)
    trust_accounts: set[str] | None = None
    if "bank_accounts" in raw_objects(raw_root):
        trust_accounts = {str((e.get("data") or {}).get("id")) for e in iter_raw(raw_root, "bank_accounts")
                          if (e.get("data") or {}).get("type") == "Trust"}
    custom_sobjects = sorted({s for o in reconciled for s in staged.sobjects[o] if s not in NATURAL_KEY_OBJECTS})
    for targets in AMOUNT_TARGETS.values():
        for sobject, _, _ in targets:
            if sobject in staged.columns and sobject not in custom_sobjects:
                custom_sobjects.append(sobject)
    readable: dict[str, tuple[list[str], list[str]]] = {}  # sobject → (amount fields, trust columns) read
    for sobject in custom_sobjects:
        m = meta(sobject)
        if EXT not in m:
            notes.append(f"{sobject}: {EXT} is not in the describe: rows cannot be matched")
            continue
        amount_fields = [f for targets in AMOUNT_TARGETS.values() for s, f, _ in targets
                         if s == sobject and f in m and f in staged.columns[sobject]]
        trust_cols: list[str] = []
        if sobject == TRUST[0]:
            trust_cols = [c for c in (TRUST[1], TRUST[2]) if c in m and c in staged.columns[sobject]]
            trust_cols += [c for c in MATTER_COLUMNS if c in staged.columns[sobject]]
        readable[sobject] = (amount_fields, trust_cols)
    summed: set[str] = set()  # sobjects whose amounts are in ``sums``

    def org_ids(sobject: str, kind: str | None) -> Iterator[str]:
        """The Clio_Id__c of ``sobject``'s rows of ``kind`` (one per row). Its first read reads every row
        and sums the amounts; a later one (another object's rows) asks only for ``kind``'s ids."""
        amount_fields, trust_cols = readable[sobject]
        if sobject in summed:
            # '_' in a kind matches any character: a superset, the kind is checked here
            like = f" AND {EXT} LIKE '{kind}-%'" if kind and kind.replace("_", "").isalnum() else ""
            yield from (v for rec in _stream_sobject(client, sobject, [EXT], meta(sobject), like)
                        if _kind(v := str(rec.get(EXT))) == kind)
            return
        summed.add(sobject)
        # Clio kind → (figure, amount field) of this sobject's rows of that kind, in AMOUNT_TARGETS order
        # (looked up once a row, not searched: every row of the firm is read here)
        figures: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for figure, targets in AMOUNT_TARGETS.items():
            for s, f, k in targets:
                if s == sobject and f in amount_fields:
                    figures[k].append((figure, f))
        for rec in _stream_sobject(client, sobject, [EXT, *amount_fields, *trust_cols], meta(sobject)):
            value = str(rec.get(EXT))
            row_kind = _kind(value)
            if row_kind == kind:
                yield value
            for figure, f in figures.get(row_kind, ()):
                amount = rec.get(f)
                try:
                    sums[figure] += Decimal(0) if amount is None else Decimal(str(amount))
                except ArithmeticError:
                    raise ValueError(f"{rec.get('Id')}: {f}: {amount!r} is not a number") from None
                measured.add(figure)
            if trust_cols and row_kind == "bank_transaction":
                _trust_figures(rec, sums, measured, trust_accounts, per_matter=matter_parts == 1)

    # one Clio object at a time: its records, its rows in the org, compared; only the figures are kept
    objects: list[reconcile.ObjectReconciliation] = []
    nk_notes: list[str] = []
    for obj in reconciled:
        nk_sobjects = [s for s in staged.sobjects[obj] if s in NATURAL_KEY_OBJECTS]

        def org_rows(obj: str = obj, nk_sobjects: list[str] = nk_sobjects, first: bool = True) -> Iterator[str]:
            """``obj``'s rows in the org, one Clio_Id__c each: its sobjects' rows of its kind, then its
            natural-key rows (``first``: the notes are written on the first read only)."""
            for sobject in sorted(staged.sobjects[obj]):
                if sobject in readable:
                    yield from org_ids(sobject, kinds[obj])
            for sobject in nk_sobjects:
                key = staged.natural_keys.get(sobject, ())
                queryable = sobject not in UNQUERYABLE_KEYS and bool(key)
                if not queryable and first:
                    nk_notes.append(f"{sobject}: natural key not queryable: rows checked by the ledger's ids only")
                yield from _natural_key_rows_on_disk(client, mroot, sobject, key, staged.primary_ids(obj), queryable,
                                                     spill)

        found = _found_rows(org_rows, lambda: org_rows(first=False), spill)
        one = reconcile.reconcile(reconcile.SourceTotals(ids={obj: _source_ids(raw_root, obj, spill)}),
                                  reconcile.TargetTotals(found={obj: found}), staged.rejects)
        objects.extend(one.objects)
        del found, one
    for sobject in readable:
        if sobject not in summed:  # amounts only (no reconciled object's rows): read for the sums, ids unused
            deque(org_ids(sobject, None), maxlen=0)
    notes.extend(nk_notes)

    def include(obj: str, env: Mapping[str, Any]) -> bool:
        return env.get("source_system_id") not in rejected.get(obj, ())

    def envelopes(obj: str) -> Iterable[dict[str, Any]]:
        return iter_raw(raw_root, obj)

    money_objects = [o for o in ("bank_accounts", "bills", "activities", "bank_transactions",
                                 *reconcile.MONEY_FIGURES)
                     if o in raw_objects(raw_root) and (o in reconciled or o == "bank_accounts")]
    # one object at a time (each figure comes from one object: the same sums as all at once)
    money_amounts: dict[str, Decimal] = {}
    bank = [o for o in money_objects if o == "bank_accounts"]
    for obj in money_objects:
        if obj != "bank_accounts":
            keep = None if matter_parts == 1 else (lambda k: not k.startswith(MATTER_FIGURE))
            for k, v in reconcile.source_totals(envelopes, [*bank, obj], include=include, figures=keep,
                                                    folder=spill).amounts.items():
                money_amounts[k] = money_amounts.get(k, Decimal(0)) + v
    if any(rejected.values()):
        notes.append("amounts: rejected records are excluded from the Clio side")
    task_activities = staged.task_activities
    if task_activities and "Clio_Total__c" not in staged.columns.get("Task", ()):
        tasks = reconcile.source_totals(envelopes, ["activities"], folder=spill,
                                        include=lambda o, e: include(o, e) and e.get("source_system_id") in task_activities)
        money_amounts["time.amount"] = money_amounts.get("time.amount", Decimal(0)) - tasks.amounts.get(
            "time.amount", Decimal(0))
        notes.append(f"time.amount: {len(task_activities)} non-billable time entr(y/ies) became Tasks without an "
                     "amount field: excluded from the Clio side")
    source_amounts, unmeasured, amounts = _compared_amounts(money_amounts, sums, measured)
    # a larger firm's staged book records are read once and sent to their parts (the per-matter figures, the books)
    parted = _BookParts(raw_root, matter_parts, spill) if matter_parts > 1 else None
    if matter_parts > 1:
        amounts, more = _matter_amounts(client, raw_root, readable, meta, measured, trust_accounts, envelopes,
                                        include if "bank_transactions" in money_objects else None, amounts,
                                        matter_parts, parted)
        unmeasured = sorted([*unmeasured, *more])
    if unmeasured:
        notes.append(f"amounts not written by the spec, not compared: {', '.join(unmeasured[:20])}")
    rec = reconcile.Reconciliation(objects, amounts)
    book = _books(client, raw_root, staged, trust_accounts, meta, parted=parted)
    del parted
    rdir = mroot / "reports" / run_label
    names = _labels(raw_root, _wanted_labels(rec, book), on_disk=matter_parts > 1)
    currency = _currency(raw_root)
    context = reports.report_context(mroot, spec.data.get("firm"), run_label)
    # written row by row (a firm's books and trust figures are a row per live bill and per matter)
    reports.write_json(rdir / "reconciliation.json", rec.to_json(lazy=True) | {
        "books": book.to_json(lazy=True), "context": context, "currency": currency, "names": names.streamed() if isinstance(names, Names) else names})
    reconcile.write_reconciliation_csv(rdir / "reconciliation.csv", rec)
    reports.write_csv(rdir / "books.csv", books.BOOKS_CSV_HEADERS, books.iter_books_rows(book, names))
    report = reconcile.write_reconciliation_html(
        rdir / "reconciliation.html", rec, extra_html=books.books_html(book, labels=names, currency=currency),
        context=context, currency=currency, labels=names)
    reports.write_json(rdir / "reconciliation_notes.json", {"notes": notes})
    return {
        "lost": rec.lost,
        "duplicated": rec.duplicated,
        "exact": rec.exact,
        "objects": {o.object: {"expected": o.expected, "loaded": o.loaded, "rejected": o.rejected,
                               "missing": o.missing, "duplicates": o.duplicates, "unexpected": o.unexpected}
                    for o in rec.objects},
        "amounts_ok": all(a.ok for a in rec.amounts),
        "books_ok": book.exact,
        "books": book.headline(),
        "notes": notes,
        "report": str(report),
    }


#: Clio object of a source id's kind (``matter-7`` is a record of ``matters``).
_KIND_OBJECTS = {"matter": "matters", "contact": "contacts", "bank_account": "bank_accounts", "bill": "bills"}


def _wanted_labels(rec: reconcile.Reconciliation, book: books.BooksReconciliation) -> Iterator[tuple[str, str]]:
    """(Clio object, source id) of each id the reconciliation page names (missing, duplicated, trust,
    clients), repeats included."""
    for o in rec.objects:
        for ssid in [*o.missing_ids, *o.duplicate_ids]:
            yield o.object, base_id(ssid)
    for a in rec.amounts:
        parts = a.figure.split(".")
        if len(parts) == 3 and parts[0] == "trust":
            kind = "bank_account" if parts[1] == "account" else parts[1]
            yield _KIND_OBJECTS.get(kind, kind), f"{kind}-{parts[2]}"
    for t in book.trust:
        yield "matters", t.matter
    for c in book.clients:
        yield "contacts", c.contact


class Names(Mapping[str, str]):
    """Readable names of source ids (``matter-7`` → ``00007-Lopez``), kept in a SQLite file in a temporary
    folder, not in memory (a firm's page names every matter with trust: tens of thousands at 1M records);
    ``get`` looks one up, iteration is in id order, :meth:`streamed` is the JSON object written as read."""

    def __init__(self) -> None:
        import sqlite3
        import weakref
        from pathlib import Path

        self._folder = reports.SpillFolder()
        self._db = sqlite3.connect(Path(self._folder.path) / "names.sqlite")
        weakref.finalize(self, self._db.close)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        # pages cached: 256 KB, not SQLite's default 2 MB (1M records' names: ~2 MB less held, the same time)
        self._db.execute("PRAGMA cache_size = -256")
        self._db.execute("CREATE TABLE wanted (obj TEXT, sid TEXT, PRIMARY KEY (obj, sid)) WITHOUT ROWID")
        self._db.execute("CREATE TABLE names (sid TEXT PRIMARY KEY, name TEXT) WITHOUT ROWID")
        self._objects: list[str] = []  # wanted objects in the order first asked
        self._count = 0
        self._last: tuple[str, str | None] | None = None

    def want(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Ask for the names of these (Clio object, source id)."""
        seen = set(self._objects)

        def rows() -> Iterator[tuple[str, str]]:
            for obj, sid in pairs:
                if obj not in seen:
                    seen.add(obj)
                    self._objects.append(obj)
                yield obj, sid

        self._db.executemany("INSERT OR IGNORE INTO wanted VALUES (?, ?)", rows())

    def fill(self, raw_root: Any) -> Names:
        """The names of the ids asked, streamed from the staged Clio records (an id asked under several
        objects: the name of the last one read)."""
        present = set(raw_objects(raw_root))
        wanted = "SELECT 1 FROM wanted WHERE obj = ? AND sid = ?"
        for obj in self._objects:
            if obj not in present:
                continue
            for env in iter_raw(raw_root, obj):
                ssid = env.get("source_system_id")
                if (isinstance(ssid, str) and self._db.execute(wanted, (obj, ssid)).fetchone()
                        and (name := labels.record_name(env.get("data")))):
                    self._db.execute("INSERT OR REPLACE INTO names VALUES (?, ?)", (ssid, name))
        self._count = self._db.execute("SELECT COUNT(*) FROM names").fetchone()[0]
        self._last = None
        return self

    def get(self, key: object, default: Any = None) -> Any:
        if not isinstance(key, str):
            return default
        if self._last is None or self._last[0] != key:  # a trust row asks for its matter three times
            row = self._db.execute("SELECT name FROM names WHERE sid = ?", (key,)).fetchone()
            self._last = (key, row[0] if row else None)
        return default if self._last[1] is None else self._last[1]

    def __getitem__(self, key: str) -> str:
        name = self.get(key)
        if name is None:
            raise KeyError(key)
        return name

    def __iter__(self) -> Iterator[str]:
        return (sid for sid, _ in self.items())

    def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        """(id, name) in id order (code point order: SQLite compares UTF-8 bytes)."""
        return iter(self._db.execute("SELECT sid, name FROM names ORDER BY sid"))

    def __len__(self) -> int:
        return self._count

    def streamed(self) -> reports.StreamedDict:
        return reports.StreamedDict(self.items)


def _labels(raw_root: Any, wanted: Iterable[tuple[str, str]], on_disk: bool = False) -> dict[str, str] | Names:
    """Readable names of the wanted source ids, streamed from the staged Clio records (only those kept);
    ``on_disk`` (a firm whose books are compared in parts): kept in a :class:`Names` file."""
    if on_disk:
        names = Names()
        names.want(wanted)
        return names.fill(raw_root)
    ids: dict[str, set[str]] = defaultdict(set)
    for obj, sid in wanted:
        ids[obj].add(sid)
    present = set(raw_objects(raw_root))
    out: dict[str, str] = {}
    for obj, asked in ids.items():
        if obj not in present:
            continue
        for env in iter_raw(raw_root, obj):
            ssid = env.get("source_system_id")
            if ssid in asked and (name := labels.record_name(env.get("data"))):
                out[ssid] = name
    return out


def _currency(raw_root: Any) -> str | None:
    """The firm's currency code, from the first staged bill that has one (None: amounts shown bare)."""
    if "bills" not in raw_objects(raw_root):
        return None
    for env in iter_raw(raw_root, "bills"):
        cur = (env.get("data") or {}).get("currency")
        code = cur.get("code") if isinstance(cur, Mapping) else cur
        if code:
            return str(code)
    return None


#: Staged records of the books' largest object (bills, bank transactions, matters...) compared at once: a
#: larger firm's books are compared in parts (:func:`books.compare_books_in_parts`, by the last digits of
#: the bill, matter or client number, ``source.Part``), what is held at a time bounded by it, not the firm.
BOOK_PART_RECORDS = 10_000
#: The staged objects the books read (a larger firm's sent to their parts in one read, :class:`_BookParts`).
BOOK_OBJECTS = ("bills", "allocations", "bank_transactions", "matters", "outstanding_client_balances")


def _staged_records(raw_root: Any, obj: str) -> int:
    """How many records of ``obj`` are staged (its manifest's count; without one, counted)."""
    manifest = staging.read_json(raw_root / obj / staging.MANIFEST)
    if manifest is not None:
        return sum(int(b.get("records") or 0) for b in manifest.get("batches", []))
    return sum(1 for _ in iter_raw(raw_root, obj))


def _book_parts(raw_root: Any, part_records: int | None = None) -> int:
    """In how many parts the books and per-matter trust figures are compared: one for each
    ``part_records`` (:data:`BOOK_PART_RECORDS`) staged records of the books' largest object."""
    cap = BOOK_PART_RECORDS if part_records is None else part_records
    objects = raw_objects(raw_root)
    largest = max((_staged_records(raw_root, o) for o in BOOK_OBJECTS if o in objects), default=0)
    return -(-largest // cap) if largest > cap else 1


def _client_balance_key(d: Mapping[str, Any]) -> str:
    return f"contact-{(d.get('contact') or {}).get('id', d.get('id'))}"


#: Clio object of the books → (the source id its record's part follows, that of its client's part; None: not read
#: by client), as :func:`books.clio_books` tells a record's part.
_BOOK_PART_KEYS: dict[str, tuple[Callable[[Mapping[str, Any]], str], Callable[[Mapping[str, Any]], str] | None]] = {
    "bills": (lambda d: f"bill-{d.get('id')}", lambda d: f"contact-{(d.get('client') or {}).get('id')}"),
    "allocations": (lambda d: f"bill-{(d.get('bill') or {}).get('id')}", None),
    "bank_transactions": (lambda d: f"matter-{(d.get('matter') or {}).get('id')}", None),
    "matters": (lambda d: f"matter-{d.get('id')}", None),
    "outstanding_client_balances": (_client_balance_key, _client_balance_key),
}


class _BookParts:
    """The staged records of the books' objects (:data:`BOOK_OBJECTS`) read once and sent to their parts of
    ``count`` (``source.Part``: by the record's own bill or matter, or its client's): pickled :attr:`BATCH`
    records at a time, in staging order, in a file per object, part and key in ``folder``. A part's books
    and per-matter trust figures read their part's records only; before, each part read every staged
    record of those objects again (a 1M firm's 10 parts: the bank transactions 20 times). :attr:`twice`: objects with a record staged more than
    once (or without a source id), whose versions may fall in different parts: the money totals read those
    whole (``reconcile.source_totals`` keeps a record's last version), the books need not (each record is
    taken or skipped on its own)."""

    #: records of a part written (and read) in one pickle: what waits is at most this many a part and key
    BATCH = 64

    def __init__(self, raw_root: Any, count: int, folder: reports.SpillFolder) -> None:
        import pickle
        from pathlib import Path

        from clio2sf.verify.source import Part

        self.raw_root, self.count, self.folder = raw_root, count, folder  # the folder lives as long as this
        self.dir = Path(folder.path)
        self.objects = [o for o in BOOK_OBJECTS if o in raw_objects(raw_root)]
        self.twice: set[str] = set()
        dump, protocol, batch, part_of = pickle.dump, pickle.HIGHEST_PROTOCOL, self.BATCH, Part(0, count).of
        for obj in self.objects:
            routes = [(k, key) for k, key in enumerate(_BOOK_PART_KEYS[obj]) if key is not None]
            files = {(k, i): self._path(obj, k, i).open("wb") for k, _ in routes for i in range(count)}
            waiting: dict[tuple[int, int], list[Any]] = {at: [] for at in files}
            ids, records = reconcile.IdSet(folder=folder), 0
            try:
                for env in iter_raw(raw_root, obj):
                    d = env.get("data") or {}
                    for k, key in routes:
                        at = (k, part_of(key(d)))
                        (held := waiting[at]).append(env)
                        if len(held) >= batch:
                            dump(held, files[at], protocol)
                            held.clear()
                    ssid = env.get("source_system_id")
                    if not ssid:
                        self.twice.add(obj)
                    elif obj == "bank_transactions":  # the only one the money totals read in parts
                        ids.add(ssid)
                        records += 1
                for at, held in waiting.items():
                    if held:
                        dump(held, files[at], protocol)
            finally:
                for f in files.values():
                    f.close()
            if len(ids) < records:
                self.twice.add(obj)
            del ids

    def _path(self, obj: str, by_client: int, index: int) -> Any:
        return self.dir / f"book-{obj}-{by_client}-{index}.pickle"

    def records(self, obj: str, index: int, by_client: bool = False) -> Iterator[dict[str, Any]]:
        """The staged envelopes of ``obj`` in part ``index`` (by its client's with ``by_client``), in staging
        order; every staged record for an object not sent to parts that way."""
        import pickle

        if obj not in self.objects or _BOOK_PART_KEYS[obj][by_client] is None:
            yield from iter_raw(self.raw_root, obj)
            return
        with self._path(obj, int(by_client), index).open("rb") as f:
            while True:  # a pickle a batch (each its own memo: one Unpickler would mix their memos)
                try:
                    held = pickle.load(f)
                except EOFError:
                    return
                yield from held


#: The columns holding the source id a book row's part follows (its own, its bill's, its matter's,
#: its client's), by sobject: (by its own part, by its client's).
_CLIENT = ("Contact__r.Clio_Id__c", "Account__r.Clio_Id__c")
PART_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Clio_Billing__c": ((EXT,), _CLIENT), "Clio_Payment__c": (("Clio_Billing__r.Clio_Id__c",),) * 2,
    "Ledger__c": (MATTER_COLUMNS,) * 2, "Clio_Client_Balance__c": (_CLIENT,) * 2}


def _ending_filter(part: Any, keys: Sequence[str], meta: Mapping[str, Any]) -> str:
    """A SOQL condition (`` AND (...)``) that holds for every row whose ``keys`` name a source id of
    ``part`` (``source.Part.endings``) and for some others: the books still
    check each row's part. Empty (read all): part 0 (ids not ending in digits too), or no key column."""
    endings = part.endings()
    cols = [k for k in keys if _column_ok(k, meta)]
    if not endings or not cols:
        return ""
    likes = [f"{c} LIKE '%{e}{rest}'" for c in cols for e in endings for rest in ("", "@%", "#%")]
    return f" AND ({' OR '.join(likes)})"


def _books(client: Any, raw_root: Any, staged: _Staged, trust_accounts: set[str] | None,
           meta: Any, part_records: int | None = None, parted: _BookParts | None = None) -> books.BooksReconciliation:
    """Bills, trust per matter and client balances from Clio's raw records and from the org; in parts
    when an object of the books has more than ``part_records`` (:data:`BOOK_PART_RECORDS`) staged records
    (each part reads its own staged records, ``parted`` or sent to parts here in one read, and the org's
    book rows again, keeping its own)."""
    from clio2sf.verify.source import Part

    objects = raw_objects(raw_root)
    present = {s for s in ("Clio_Billing__c", "Clio_Payment__c", "Ledger__c", "Clio_Client_Balance__c")
               if s in staged.columns and EXT in meta(s)}

    def stream(sobject: str, columns: list[str]) -> Iterator[dict[str, Any]]:
        return _stream_sobject(client, sobject, columns, meta(sobject))

    rejected = {line.get("source_system_id") for line in staged.rejects if line.get("repair") is None}
    count = _book_parts(raw_root, part_records)
    if count == 1:
        return books.compare_books(books.clio_books(lambda name: iter_raw(raw_root, name), objects),
                                   books.salesforce_books(stream, trust_accounts, present), rejected)

    if parted is None or parted.count != count:
        parted = _BookParts(raw_root, count, reports.SpillFolder())
    at = parted

    def clio_side(part: Any, by_client: bool) -> books.Books:
        wanted = ["bills", "outstanding_client_balances"] if by_client else objects
        return books.clio_books(lambda name: at.records(name, part.index, by_client),
                                [o for o in objects if o in wanted], part, by_client)

    def sf_side(part: Any, by_client: bool) -> books.Books:
        wanted = {"Clio_Billing__c", "Clio_Client_Balance__c"} if by_client else present

        def stream_part(sobject: str, columns: list[str]) -> Iterator[dict[str, Any]]:
            keys = PART_KEYS[sobject][by_client]
            return _stream_sobject(client, sobject, columns, meta(sobject), _ending_filter(part, keys, meta(sobject)))

        return books.salesforce_books(stream_part, trust_accounts, present & wanted, part, by_client)

    clients = "outstanding_client_balances" in objects or "Clio_Client_Balance__c" in present
    return books.compare_books_in_parts(clio_side, sf_side, [Part(i, count) for i in range(count)], rejected,
                                        clients)


#: The per-matter trust figures (``trust.matter.7``).
MATTER_FIGURE = "trust.matter."


def _compared_amounts(money_amounts: Mapping[str, Decimal], sums: Mapping[str, Decimal],
                      measured: set[str]) -> tuple[dict[str, Decimal], list[str], list[reconcile.AmountReconciliation]]:
    """(the Clio figures compared, those not (sorted), the rows) of the Clio side's ``money_amounts`` and
    the org's ``sums``: a figure is compared when the org's rows measured it (a trust figure: when any
    trust figure was); a trust figure the org has no rows for is 0 there."""
    source_amounts = {k: v for k, v in money_amounts.items()
                      if k in measured or k.startswith("trust.") and "trust" in measured}
    unmeasured = sorted(set(money_amounts) - set(source_amounts))
    target_amounts = dict(sums)
    for k in source_amounts:
        if k.startswith("trust.") and k not in target_amounts:
            target_amounts[k] = Decimal(0)
    amounts = reconcile.reconcile(reconcile.SourceTotals(amounts=source_amounts),
                                  reconcile.TargetTotals(amounts=target_amounts)).amounts
    return source_amounts, unmeasured, amounts


def _matter_amounts(client: Any, raw_root: Any, readable: Mapping[str, tuple[list[str], list[str]]],
                    meta: Any, measured: set[str], trust_accounts: set[str] | None, envelopes: Any,
                    include: Callable[[str, Mapping[str, Any]], bool] | None,
                    amounts: list[reconcile.AmountReconciliation], count: int,
                    parted: _BookParts | None = None) -> tuple[reports.Spilled, list[str]]:
    """The per-matter trust figures compared in ``count`` parts (by the last digits of the matter number,
    ``source.Part``: the part's staged bank transactions, from ``parted`` unless a record is staged twice
    (then all, read again), and the org's Ledger__c rows read for each, the figures of other parts
    skipped), each part's rows spilled to disk: the amounts (``amounts``, the other
    figures, and these) read back merged in figure order, as if compared whole; with the first 20 (sorted)
    per-matter figures not compared (no trust figure measured in the org). ``include``: the staged records
    that count (None: the bank transactions are not among the money objects, no Clio side)."""
    from clio2sf.verify.source import Part

    out = reports.Spilled(reports.SpillFolder(), "amounts")
    out.section(lambda a: a.figure)
    out.add(amounts)
    unmeasured: list[str] = []
    bank = ["bank_accounts"] if "bank_accounts" in raw_objects(raw_root) else []
    sobject = TRUST[0]
    amount_fields, trust_cols = readable.get(sobject, ([], []))
    for i in range(count):
        part = Part(i, count)

        def mine(key: str, part: Part = part) -> bool:
            return key.startswith(MATTER_FIGURE) and f"matter-{key[len(MATTER_FIGURE):]}" in part

        def mine_only(obj: str, index: int = i) -> Iterable[dict[str, Any]]:
            return parted.records(obj, index) if obj == "bank_transactions" else envelopes(obj)

        read = envelopes if parted is None or "bank_transactions" in parted.twice else mine_only
        clio = {} if include is None else reconcile.source_totals(read, [*bank, "bank_transactions"],
                                                                  include=include, figures=mine, folder=out.folder).amounts
        sums: dict[str, Decimal] = defaultdict(Decimal)
        if trust_cols:
            for rec in _stream_sobject(client, sobject, [EXT, *amount_fields, *trust_cols], meta(sobject),
                                       _ending_filter(part, MATTER_COLUMNS, meta(sobject))):
                if _kind(str(rec.get(EXT))) == "bank_transaction":
                    _trust_figures(rec, sums, set(), trust_accounts, matters=mine)
        _, more, rows = _compared_amounts(clio, sums, measured)
        unmeasured = sorted([*unmeasured, *more])[:20]
        out.add(rows)
        del clio, sums, rows
    return out, unmeasured


def _trust_figures(rec: Mapping[str, Any], sums: dict[str, Decimal], measured: set[str],
                   trust_accounts: set[str] | None, per_matter: bool = True,
                   matters: Callable[[str], bool] | None = None) -> None:
    """Ledger rows of trust accounts, summed per account and per matter (like the Clio side); not per
    matter unless ``per_matter``; ``matters``: only the per-matter figures it keeps, not per account."""
    account = rec.get(TRUST[2])
    if trust_accounts is not None and str(account) not in trust_accounts:
        return
    amount = _dec(rec.get(TRUST[1]), f"{rec.get('Id')}: {TRUST[1]}")
    if account is not None and matters is None:
        sums[f"trust.account.{account}"] += amount
        measured.add("trust")
    if not per_matter:
        return
    for col in MATTER_COLUMNS:
        matter = rec.get(col)
        if matter:
            figure = f"{MATTER_FIGURE}{str(matter).split('-', 1)[-1]}"
            if matters is None or matters(figure):
                sums[figure] += amount

