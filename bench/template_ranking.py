"""How well each template ranking picks the top-1 template, on a protocol's selection split.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/template_ranking.py --protocol perov_5 --limit 400 \
        --out docs/reports/wyckoff-template-ranking/perov_5.json

For each selection-split structure (the first ``--limit``) the best-ranked retrieved template is
substituted and rescaled (no model refinement) and compared with the structure
(``StructureMatcher(0.5, 0.3, 10)``). Rankings compared:

* ``mendeleev``: the template family's order;
* ``learned``: the shipped ranker (two element mappings per template, known-polymorph flag);
* ``learned-one-mapping``: one element mapping per template, as retrieval has it;
* ``learned-no-known-polymorphs``: trained and used without the known-polymorph flag.

Each learned variant is trained afresh on the protocol's training split (seed 0), as
``crystalgen train`` does. The rates are also split by whether training holds a structure of the
target's composition (a known polymorph). Prints JSON. The selection split, never the test split,
is what settings are chosen on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from crystalgen.data import load_protocol
from crystalgen.generators.target import Target
from crystalgen.generators.template import TemplateGenerator
from crystalgen.generators.template_ranker import MAPPINGS_PER_TEMPLATE, rerank, structure_types, train_ranker
from crystalgen.generators.wyckoff import encode_training_set

#: variant -> (element mappings per template, known-polymorph flag); ``None``: the Mendeleev order.
VARIANTS = {"mendeleev": None, "learned": (MAPPINGS_PER_TEMPLATE, True), "learned-one-mapping": (1, True),
            "learned-no-known-polymorphs": (MAPPINGS_PER_TEMPLATE, False)}


def main() -> None:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="perov_5")
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="Comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--out", default=None, help="Also write the JSON here.")
    args = parser.parse_args()

    data = load_protocol(args.protocol).load(include_test=False)
    targets = data.select[: args.limit]
    retrieval = TemplateGenerator({"name": "ranking-bench"})
    retrieval.build_index(list(data.train), fit_volumes=True)
    start = time.perf_counter()
    types = structure_types(encode_training_set(data.train))
    encode_s = time.perf_counter() - start
    known = np.array([len(retrieval.rows_with_composition(c.atomic_numbers)) > 0 for c in targets])
    matcher = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    report = {"protocol": args.protocol, "split": "selection", "n": len(targets),
              "with_known_polymorph": int(known.sum()), "encode_s": round(encode_s, 1), "variants": {}}
    for variant in args.variants.split(","):
        settings = VARIANTS[variant]
        start = time.perf_counter()
        if settings is not None:
            ranker, counts, summary = train_ranker(retrieval, types, mappings_per_template=settings[0],
                                                   use_known_polymorphs=settings[1])
        train_s = time.perf_counter() - start
        hits = np.zeros(len(targets), dtype=bool)
        for i, crystal in enumerate(targets):
            target = Target.from_crystal(crystal)
            if settings is None:
                rows, mappings = retrieval.rank_templates(target)
            else:
                rows, mappings = retrieval.rank_templates(target, settings[0])
                rows, mappings = rerank(ranker, retrieval, types.__getitem__, target.atomic_numbers(), rows,
                                        mappings, counts, avoid_known_polymorphs=settings[1])
            if len(rows):
                guess = retrieval.substitute(retrieval.train[rows[0]], mappings[0])
                hits[i] = matcher.fit(guess.to_structure(), crystal.to_structure())
        report["variants"][variant] = {
            "top1_match_rate": float(hits.mean()),
            "with_known_polymorph": float(hits[known].mean()) if known.any() else None,
            "without_known_polymorph": float(hits[~known].mean()) if (~known).any() else None,
            "train_s": round(train_s, 1), "score_s": round(time.perf_counter() - start - train_s, 1)}
        print(variant, report["variants"][variant], flush=True)
        if args.out:  # written after every variant: a stopped run keeps what it measured
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
