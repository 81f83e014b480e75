"""Thesis-scale enumeration: ~10,000 LiTMO2 over n = 1..9 plus 500 Li-free per n-TM.

Prints wall time (cold: supercell cache empty; warm: cached) and the per-n-TM table.
Target (issue 2): <= 60 s on 2 cores.  Run: .venv/bin/python benchmarks/enumerate_thesis_scale.py
"""

import os
import sys
import tempfile
import time

from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
from drx_workflows.store.client import open_store
from drx_workflows.store.config import StoreConfig
from drx_workflows.store.structures import save_records


def main() -> None:
    settings = EnumerationSettings(per_ntm=1100, toc_per_ntm=500, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = os.path.join(tmp, "cache")  # cold supercell cache
        t0 = time.perf_counter()
        result = enumerate_drx(settings)
        t_enum = time.perf_counter() - t0
        store = open_store(StoreConfig.embedded(os.path.join(tmp, "store.json")))
        t1 = time.perf_counter()
        n_new = save_records(store, result.records)
        t_store = time.perf_counter() - t1
        t2 = time.perf_counter()
        enumerate_drx(settings)
        t_warm = time.perf_counter() - t2
        size_mb = os.path.getsize(store.config.path) / 1e6
        store.close()
    print(result.summary_table())
    print(f"structures: {len(result.records)} ({n_new} stored, store file {size_mb:.0f} MB)")
    print(f"enumerate (cold supercell cache): {t_enum:.1f} s")
    print(f"enumerate (warm cache):           {t_warm:.1f} s")
    print(f"insert + save embedded store:     {t_store:.1f} s")
    print(f"total cold (enumerate + store):   {t_enum + t_store:.1f} s  [target <= 60 s]")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
