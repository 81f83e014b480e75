"""Active-learning selection over the study's scale of candidates: ~10,000 enumerated structures, two rounds.

Enumerates ``--per-ntm`` LiTMO2 orderings per n-TM (1..9; 1,100 each = 9,900, the study's
scale), stores them in an embedded store, trains ``delta`` on the sane cells of
../shared/data/drx_dft (they cover every TM) and runs what a selection firework runs: score every
candidate with the potential (``pipeline.training.active.score``: energies, spreads, features),
pick ``--n`` by the strategy. Round 1 meets an empty ``base_evaluations`` collection; round 2 is
the next generation's potential (retrained heads, another seed) on the same candidates, whose base
passes the store now holds. Prints each round's wall time, the base passes, the time spent in the
store's cache and the peak memory.

    .venv/bin/python benchmarks/selection_scale.py [--per-ntm 1100] [--base chgnet] [--n 25]
        [--strategy cluster-uncertainty] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drx_dft_split import DATA  # noqa: E402


def main(argv=None) -> int:
    from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
    from drx_workflows.mliap.data import read_xsf_dir, split_sane
    from drx_workflows.mliap.delta.potential import DeltaPotential
    from drx_workflows.pipeline.training.active import score
    from drx_workflows.selection.strategies import select
    from drx_workflows.store.base_evaluations import StoredBaseEvaluations
    from drx_workflows.store.client import open_store
    from drx_workflows.store.config import StoreConfig
    from drx_workflows.store.structures import save_records

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-ntm", type=int, default=1100)
    ap.add_argument("--base", default="chgnet")
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--strategy", default="cluster-uncertainty")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    class TimedCache(StoredBaseEvaluations):
        seconds = 0.0  # spent reading and writing the kept passes

        def _timed(self, method, arg):
            t = time.perf_counter()
            try:
                return method(arg)
            finally:
                TimedCache.seconds += time.perf_counter() - t

        def get_many(self, keys):
            return self._timed(super().get_many, keys)

        def put_many(self, records):
            return self._timed(super().put_many, records)

    out = {"args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="drx-bench-") as tmp:
        t0 = time.perf_counter()
        records = enumerate_drx(EnumerationSettings(per_ntm=args.per_ntm, toc_per_ntm=0, seed=0)).records
        store = open_store(StoreConfig.embedded(Path(tmp) / "store.json"))
        try:
            save_records(store, records)
            docs = list(store.structures.find({}, {"_id": 0}))
            out["candidates"] = len(docs)
            out["enumerate_and_store_s"] = time.perf_counter() - t0
            print(f"{len(docs)} candidates enumerated and stored in {out['enumerate_and_store_s']:.0f} s", flush=True)
            train, _ = split_sane(read_xsf_dir(DATA))
            cache = TimedCache(store)
            out["rounds"] = []
            for k in (1, 2):
                pot = DeltaPotential(base=args.base, seed=k)
                pot.base_cache = cache
                t = time.perf_counter()
                pot.fit(train)
                fit_s = time.perf_counter() - t
                before, cache_before = pot.base_passes, TimedCache.seconds
                t = time.perf_counter()
                configs, x, spread, skipped = score(pot, docs)
                picks = select(args.strategy, args.n, [], list(range(len(configs))), x, spread, seed=k)
                select_s = time.perf_counter() - t
                row = {"round": k, "fit_s": fit_s, "select_s": select_s, "base_passes": pot.base_passes - before,
                       "cache_s": TimedCache.seconds - cache_before, "scored": len(configs), "skipped": len(skipped),
                       "picked": len(picks)}
                out["rounds"].append(row)
                print(f"round {k}: training on {len(train)} cells {fit_s:.0f} s; selection over {len(configs)} "
                      f"candidates {select_s:.0f} s ({row['base_passes']} base passes, {row['cache_s']:.1f} s in the "
                      f"store's cache), picked {len(picks)}", flush=True)
            store.save()
            out["store_mb"] = os.path.getsize(store.config.path) / 1e6
        finally:
            store.close()
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    r1, r2 = out["rounds"]
    out["ratio"] = r1["select_s"] / r2["select_s"]
    print(f"selection round 2 {out['ratio']:.0f}x faster than round 1; store file {out['store_mb']:.0f} MB; "
          f"peak RSS {out['peak_rss_gb']:.1f} GB")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
