"""What an active-learning round costs with the base's passes kept in the store, against evaluating them every round.

Each round of the loop retrains ``delta`` on the slice's labelled cells (an energies-only pass of
the frozen base over every one of them) and scores every unlabelled candidate (another pass each),
then picks ``--step`` by the strategy. The base never changes, so the store keeps its energy and
crystal feature per cell (``base_evaluations``); later rounds pay only for cells it has not seen.
This runs the same rounds both ways on the README's split of ../shared/data/drx_dft (pool = its
295 training cells, start ``--start`` stratified by n-TM), through the project's objects: the
delta potential, the selection firework's chunked scoring and the strategy, and for the kept
passes the store's collection on an embedded store. It checks that both ways pick the same cells.

    .venv/bin/python benchmarks/selection_rounds.py [--rounds 3] [--start 50] [--step 25]
        [--base sevenn-l3i5] [--strategy cluster-uncertainty] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drx_dft_split import readme_split  # noqa: E402


def rounds(pool, args, cache) -> list[dict]:
    from drx_workflows.mliap.delta.potential import DeltaPotential
    from drx_workflows.pipeline.ranking import predict_in_chunks
    from drx_workflows.selection.strategies import initial_selection, select

    labelled = initial_selection([c.n_tm for c in pool], [set(c.species) for c in pool], args.start, 0)
    out = []
    for k in range(args.rounds):
        pot = DeltaPotential(base=args.base, seed=k)
        pot.base_cache = cache
        t0 = time.perf_counter()
        pot.fit([pool[i] for i in labelled])
        t1 = time.perf_counter()
        rest = sorted(set(range(len(pool))) - set(labelled))
        preds = [p for _, p in predict_in_chunks(pot, [pool[i] for i in rest])]
        t2 = time.perf_counter()
        # the selection firework's features: the base's crystal feature and the composition
        elements = sorted({s for c in pool for s in c.species})
        x = np.zeros((len(pool), len(preds[0].descriptor) + len(elements)))
        spread = np.zeros(len(pool))
        for i, p in zip(rest, preds):
            x[i] = np.r_[p.descriptor, [pool[i].species.count(e) / pool[i].n_atoms for e in elements]]
            spread[i] = p.uncertainty
        picks = select(args.strategy, args.step, labelled, rest, x, spread, seed=k)
        out.append({"round": k + 1, "labelled": len(labelled), "candidates": len(rest), "fit_s": t1 - t0,
                    "score_s": t2 - t1, "base_passes": pot.base_passes, "picks": [pool[i].id for i in picks],
                    "energies": [p.energy for p in preds]})
        print(f"  round {k + 1}: {len(labelled)} labelled, {len(rest)} candidates: fit {t1 - t0:6.1f} s, "
              f"score {t2 - t1:6.1f} s, base passes {pot.base_passes}", flush=True)
        labelled = labelled + picks
    return out


def main(argv=None) -> int:
    from drx_workflows.store.base_evaluations import StoredBaseEvaluations
    from drx_workflows.store.client import open_store
    from drx_workflows.store.config import StoreConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--start", type=int, default=50)
    ap.add_argument("--step", type=int, default=25)
    ap.add_argument("--base", default="sevenn-l3i5")
    ap.add_argument("--strategy", default="cluster-uncertainty")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    pool, _test, _excluded = readme_split()
    print(f"pool {len(pool)} cells, base {args.base}, {args.rounds} rounds of {args.step} from {args.start}")
    result = {"args": vars(args), "pool": len(pool)}
    print("every round evaluates the base (the loop before the store kept its passes):")
    t0 = time.perf_counter()
    plain = rounds(pool, args, None)
    result["plain_s"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="drx-bench-") as tmp:
        store = open_store(StoreConfig.embedded(Path(tmp) / "store.json"))
        try:
            print("passes kept in the store (embedded):")
            t0 = time.perf_counter()
            kept = rounds(pool, args, StoredBaseEvaluations(store))
            result["kept_s"] = time.perf_counter() - t0
        finally:
            store.close()
    same = all(a["picks"] == b["picks"] for a, b in zip(plain, kept))
    worst = max(max(abs(x - y) for x, y in zip(a["energies"], b["energies"])) for a, b in zip(plain, kept))
    result["rounds"] = [{"round": a["round"], "labelled": a["labelled"], "candidates": a["candidates"],
                         "plain_s": a["fit_s"] + a["score_s"], "kept_s": b["fit_s"] + b["score_s"],
                         "plain_base_passes": a["base_passes"], "kept_base_passes": b["base_passes"]}
                        for a, b in zip(plain, kept)]
    result["same_picks"] = same
    result["largest_energy_difference_ev"] = worst
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    later_plain = sum(r["plain_s"] for r in result["rounds"][1:])
    later_kept = sum(r["kept_s"] for r in result["rounds"][1:])
    result["later_rounds_ratio"] = later_plain / later_kept if later_kept else None
    print("\nround  labelled  candidates   plain s   kept s   base passes (plain / kept)")
    for r in result["rounds"]:
        print(f"{r['round']:5d}  {r['labelled']:8d}  {r['candidates']:10d}  {r['plain_s']:8.1f}  {r['kept_s']:7.1f}"
              f"   {r['plain_base_passes']} / {r['kept_base_passes']}")
    print(f"all rounds: {result['plain_s']:.0f} s plain, {result['kept_s']:.0f} s kept "
          f"({result['plain_s'] / result['kept_s']:.1f}x); rounds after the first {result['later_rounds_ratio']:.1f}x faster; "
          f"same picks: {same}; largest energy difference {worst:.2e} eV; peak RSS {result['peak_rss_gb']:.1f} GB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
