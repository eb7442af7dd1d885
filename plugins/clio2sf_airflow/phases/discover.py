"""Discover phase: Clio schema and volumes, Salesforce describes, the mapping spec document.

Under the migration's one-writer lease (``clio2sf.lease``), taken by ``preflight`` (and re-held by each
writing task, so a task cleared after another run took the lease over is refused) and released by
``apply_schema`` (also when it is skipped), before ``approve_mapping`` waits: two discover runs of one
migration never rewrite ``discover/`` or apply the schema plan at once, nor beside its other phases."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from clio2sf import catalog, staging
from clio2sf.access import missing_access
from clio2sf.counting import PAGE as COUNT_PAGE
from clio2sf.counting import count_records
from clio2sf.discovery import capacity_check, estimates, write_discovery_outputs
from clio2sf.discovery.estimates import DISCOVERY_ENDPOINTS
from clio2sf.discovery.reference import AFTER_EXTRACTION, FROM_EXTRACTED, record_references, reference_exports
from clio2sf.extract import read_records
from clio2sf.mapping.proposer import SourceField, propose, sample_values, spec_targets
from clio2sf.mapping.rates import rate_hierarchy_document
from clio2sf.mapping.schema_plan import build_schema_plan
from clio2sf.mapping.validation import validate_spec_against_describes
from clio2sf.reports import write_json
from clio2sf_airflow import migration
from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook
from clio2sf_airflow.phases.common import firm_spec, hold_lease, mroot, params, release_lease

log = logging.getLogger(__name__)

#: What discover reads in full (``DISCOVERY_ENDPOINTS`` without the settings): the configuration
#: the mapping document, the schema plan and the reference files need. A migrated one is counted by
#: this read. Not the objects the extraction reads in full (matters, activity rates): discover only counts
#: them, and the reference files' parts built from their records (billing methods, evergreen retainers,
#: matter and client rates) are written when the extraction is complete (``extract.summarize_extraction``),
#: from the staged copy, instead of paging them twice.
CONFIG_OBJECTS = tuple(name for name in DISCOVERY_ENDPOINTS if name not in catalog.CLIO_SETTINGS_ENDPOINTS)
DISCOVER = "discover"
#: What discover samples for the proposer: one page of records' custom field values per parent type.
SAMPLE_FIELDS = "id,custom_field_values{id,field_name,field_type,value,picklist_option}"
SAMPLE_PAGE = 100


def preflight() -> dict[str, Any]:
    """Check the firm config and both connections before anything else runs."""
    p = params()
    spec = firm_spec(p["firm"])
    hold_lease(DISCOVER)  # one writer per migration: not beside another discover, an extraction or a load
    problems = []
    for hook in (migration.clio_hook(p), migration.salesforce_hook(p)):
        name = getattr(hook, "clio_conn_id", None) or hook.conn_id
        try:
            ok, message = hook.test_connection()
        except Exception as exc:  # a missing connection raises before test_connection can answer
            ok, message = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            problems.append(f"connection {name}: {message}")
    if problems:
        raise AirflowFailException("; ".join(problems) + ". Fix the connection(s) in Admin → Connections.")
    missing = _missing_targets(spec, migration.salesforce_hook(params()))
    if missing:
        raise AirflowFailException(
            f"firm config {p['firm']!r} writes to what the org lacks: " + "; ".join(missing[:10])
            + ". Create it in Salesforce, add it to schema.fields so apply_schema creates it, or remove it "
            "from the firm config."
        )
    return {"firm": p["firm"], "mapping_hash": spec.content_hash}


def _missing_targets(spec, hook: ClioSalesforceHook) -> list[str]:
    """Spec targets that neither the org nor the schema plan has (``<where>: <what>``)."""
    known = {o["name"] for o in hook.describe_global()["sobjects"]}
    describes = {name: hook.describe(name) for name in spec.load_order if name in known}
    return [f"{x.where}: {x.message}" for x in validate_spec_against_describes(spec, describes)
            if x.rule in ("missing_field", "missing_object")]


def read_clio_schema() -> dict[str, Any]:
    """Read Clio's configuration objects and count every migrated object; stage both.

    Counting costs one request for an object of one page, a few for one of up to 10,000 records and
    three beyond (:func:`clio2sf.counting.count_records`; ``discover/clio_count_basis.json`` says per
    object whether its count is exact or an estimate); none for a configuration object read in full,
    and the sampled page of contacts and of matters is their count's first page. No object the
    extraction reads in full is read here (see ``CONFIG_OBJECTS``).
    """
    hold_lease(DISCOVER)
    p = params()
    root = mroot(p)
    hook = migration.clio_hook(params())
    config: dict[str, Any] = {}
    for name in CONFIG_OBJECTS:
        obj = catalog.get(name)
        config[name] = [r for page in hook.paginate(obj.endpoint, obj.fields, obj.list_params) for r in page["data"]]
    billing, _ = hook.get_page("settings/billing", None)
    config["settings/billing"] = billing.get("data", billing)
    # A page of contacts and of matters: sampled custom field values for the proposer's value profile
    # (staged with the config, never logged). Read at the counting's page size, it is also their count's
    # first page (its first SAMPLE_PAGE records are the sample: the same ones as a page of SAMPLE_PAGE).
    samples: dict[str, dict[str, list]] = {}
    first_pages: dict[str, dict[str, Any]] = {}
    for parent, endpoint in (("Contact", "contacts"), ("Matter", "matters")):
        page, _ = hook.get_page(endpoint, {**catalog.get(endpoint).list_params, "fields": SAMPLE_FIELDS,
                                           "limit": COUNT_PAGE})
        first_pages[endpoint] = page if isinstance(page, dict) else {}
        samples[parent] = sample_values((first_pages[endpoint].get("data") or [])[:SAMPLE_PAGE])
    counts: dict[str, int] = {}
    basis: dict[str, dict[str, Any]] = {}
    if p.get("count_records", True):
        for obj in catalog.CLIO_OBJECTS:
            if not obj.migrated:
                continue
            if obj.name in config:  # read in full above: its count needs no request
                counts[obj.name], basis[obj.name] = len(config[obj.name]), {"basis": "exact", "requests": 0}
                continue
            before = hook.requests_made
            found = count_records(obj, hook.get_page, first_page=first_pages.get(obj.name))
            counts[obj.name] = found["records"]
            requests = hook.requests_made - before + (obj.name in first_pages)  # the sampled page is its first
            basis[obj.name] = {"basis": found["basis"], "requests": requests}
    config["custom_field_samples"] = samples
    staging.write_json(root / DISCOVER / "clio_config.json", config)
    staging.write_json(root / DISCOVER / "clio_counts.json", counts)
    staging.write_json(root / DISCOVER / "clio_count_basis.json", basis)
    log.info("Clio schema read: %d custom fields, %d practice areas, %d users; %d requests",
             len(config["custom_fields"]), len(config["practice_areas"]), len(config["users"]), hook.requests_made)
    return {"objects_counted": len(counts), "records": sum(counts.values()), "requests": hook.requests_made}


def rate_document(config: dict[str, Any], matters: Any = (), activity_rates: Any = None) -> dict[str, Any]:
    """The rate hierarchy reference: at discover without the client and matter rates (``activity_rates``
    None: discover does not read the objects the extraction reads in full), after extraction with them."""
    rates = rate_hierarchy_document(config["users"], [], matters, config["activity_descriptions"], activity_rates or ())
    if activity_rates is None:
        rates["pending"] = f"client and matter rates: {AFTER_EXTRACTION} activity rates and matters"
    return rates


def complete_reference_files(root: Any) -> dict[str, int] | None:
    """Write the reference files' parts built from extracted records (matters per billing method, evergreen
    retainers, matter and client rates) from the staged matters and activity rates, once both are staged
    complete; no Clio request. None (nothing written) before discover or while either is incomplete.

    The matters are streamed, never held: counted in one read, then read again as each file that lists
    some of them (evergreen retainers, matter rates) is written item by item (``reports.Streamed``),
    so memory does not grow with the firm's matters."""
    config = staging.read_json(root / DISCOVER / "clio_config.json")
    if config is None:
        return None
    for name in ("matters", "activity_rates"):
        manifest = staging.read_manifest(root, name)
        if not (manifest or {}).get("complete"):
            return None
    extracted = record_references(lambda: read_records(root, "matters"))
    rates = rate_document(config, extracted["matters"], read_records(root, "activity_rates"))
    refs = reference_exports({**config, **extracted}, rate_document=rates)
    for name in FROM_EXTRACTED:
        write_json(root / DISCOVER / "reference" / name, refs[name])
    return {name: len(refs[name].get("items") or []) for name in FROM_EXTRACTED}


def read_salesforce() -> dict[str, Any]:
    """Stage describeGlobal, the describe of every target object that exists, and ``/limits``."""
    hold_lease(DISCOVER)
    p = params()
    root = mroot(p)
    spec = firm_spec(p["firm"])
    hook = migration.salesforce_hook(params())
    known = {o["name"] for o in hook.describe_global()["sobjects"]}
    wanted = sorted({*spec.load_order, "User", "RecordType"})
    for name in wanted:
        if name in known:
            staging.write_json(root / DISCOVER / "salesforce_describe" / f"{name}.json", hook.describe(name))
    staging.write_json(root / DISCOVER / "salesforce_limits.json", hook.limits())
    missing = sorted(set(wanted) - known)
    log.info("Salesforce describes staged for %d objects; not in the org yet: %s", len(wanted) - len(missing), missing)
    return {"described": len(wanted) - len(missing), "missing_objects": missing}


def load_describes(root) -> dict[str, dict]:
    folder = root / DISCOVER / "salesforce_describe"
    if not folder.exists():
        return {}
    return {path.stem: staging.read_json(path) for path in folder.iterdir() if path.name.endswith(".json")}


def build_mapping_document() -> dict[str, Any]:
    """Propose, plan and estimate; write the mapping spec document and the reference exports."""
    hold_lease(DISCOVER)
    p = params()
    root = mroot(p)
    spec = firm_spec(p["firm"])
    config = staging.read_json(root / DISCOVER / "clio_config.json")
    counts = staging.read_json(root / DISCOVER / "clio_counts.json", default={}) or {}
    describes = load_describes(root)
    limits = staging.read_json(root / DISCOVER / "salesforce_limits.json", default={}) or {}

    proposals: dict[str, list] = {}
    samples = config.get("custom_field_samples") or {}
    for parent, target in (("Contact", "Contact"), ("Matter", spec.options.get("matter_object", "Case"))):
        sources = [
            SourceField(
                name=cf["name"], field_type=cf["field_type"], parent=parent,
                options=tuple(o["option"] for o in cf.get("picklist_options") or [] if not o.get("deleted_at")),
                samples=tuple((samples.get(parent) or {}).get(cf["name"]) or ()),
            )
            for cf in config["custom_fields"]
            if cf.get("parent_type") == parent and not cf.get("deleted")
        ]
        if sources and target in describes:
            # As an admin would: the target's standard and custom fields are candidates, except what the
            # spec already writes; two Clio fields never get the same target.
            proposals[target] = propose(sources, describes[target], taken=spec_targets(spec, target))
    plan = build_schema_plan(
        spec, describes, clio_custom_fields=config["custom_fields"], practice_areas=config["practice_areas"]
    )
    est = estimates(counts, matter_object=spec.options.get("matter_object", "Case"),
                    offpeak_limit=spec.options.get("offpeak_limit"), region=spec.options.get("clio_region"))
    findings = capacity_check(est, limits) if limits else []
    rates = rate_document(config)
    clio_schema = {
        "counts": counts,
        "custom_fields": config["custom_fields"],
        "practice_areas": config["practice_areas"],
        "matter_stages": config["matter_stages"],
        "users": config["users"],
        "firm_name": spec.data.get("firm"),
    }
    problems = validate_spec_against_describes(spec, describes)
    result = write_discovery_outputs(
        root, spec=spec, clio_schema=clio_schema, describes=describes, proposals=proposals,
        schema_plan=plan, estimate=est, clio_config=config, rate_document=rates, findings=findings,
        spec_problems=problems,
    )
    staging.write_json(root / DISCOVER / "spec_problems.json", [getattr(x, "__dict__", str(x)) for x in problems])
    log.info("mapping document written (hash %s); %d config problems against the current org",
             spec.content_hash[:12], len(problems))
    return {"mapping_hash": spec.content_hash, "files": result.get("files", {}), "spec_problems": len(problems)}


def apply_schema() -> dict[str, Any]:
    """Create the planned custom objects, fields and record types through Tooling, then create and assign
    the ``Clio_Migration`` permission set that lets the integration user read and write them (opt-in)."""
    p = params()
    hold_lease(DISCOVER)
    if not p.get("apply_schema"):
        release_lease()  # discover's writes are done; approve_mapping may wait for days
        raise AirflowSkipException("apply_schema is off: the Salesforce admin creates the fields from the schema plan")
    from clio2sf.pipeline import apply_schema_plan

    root = mroot(p)
    spec = firm_spec(p["firm"])
    config = staging.read_json(root / DISCOVER / "clio_config.json")
    hook = migration.salesforce_hook(params())
    plan = build_schema_plan(
        spec, {n: hook.describe(n) for n in load_describes(root)},
        clio_custom_fields=config["custom_fields"], practice_areas=config["practice_areas"],
    )
    summary = apply_schema_plan(hook, plan)
    log.info("schema plan applied: %s", {k: len(v) for k, v in summary.items()})
    missing = missing_access(hook, plan.access)
    if missing:
        raise AirflowFailException(f"schema applied, but the integration user still lacks {len(missing)} permission(s): "
                                   + "; ".join(missing[:20]))
    # Re-stage describes so later phases validate against the new schema.
    for name in load_describes(root):
        staging.write_json(root / DISCOVER / "salesforce_describe" / f"{name}.json", hook.describe(name, refresh=True))
    release_lease()  # discover's writes are done; approve_mapping may wait for days
    return summary


def approval_body() -> str:
    """Markdown shown to the approver in Required Actions."""
    return (
        "Review the mapping specification for firm **{{ params.firm }}**, migration "
        "**{{ params.migration_id }}**: [the mapping specification]"
        "(/clio2sf/{{ params.firm }}/{{ params.migration_id }}/files/discover/mapping_spec.html) "
        "(`discover/mapping_spec.html` in the staging area; all reports: "
        "[/clio2sf/{{ params.firm }}/{{ params.migration_id }}/](/clio2sf/{{ params.firm }}/{{ params.migration_id }}/)) "
        "(mapping hash `{{ ti.xcom_pull(task_ids='build_mapping_document')['mapping_hash'] }}`). "
        "Approving records your name against this exact hash; any later change to the mapping "
        "needs a new approval before records move. Rejecting (type a reason) fails this run, records your "
        "name and reason, and revokes any earlier approval of this hash."
    )
