"""Parse-to-store time per task document: atomate's VaspDrone on finished relaxation folders
(double relaxations written by the surrogate engine, e.g. those of `drx demo`) plus the insert
and save into a fresh embedded store.

Run: .venv/bin/python benchmarks/taskdoc_parse_to_store.py drx_demo/launches
"""

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from drx_workflows.store.client import open_store
from drx_workflows.store.config import StoreConfig
from drx_workflows.store.dbfile import write_db_file
from drx_workflows.store.taskdocs import insert_task_doc
from drx_workflows.vasp.taskdoc import build_task_doc


def main(launches: Path) -> None:
    dirs = sorted(d for d in launches.glob("launcher_*") if list(d.glob("vasprun.xml*")))
    if not dirs:
        sys.exit(f"no finished launcher_* folders in {launches}")
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(StoreConfig.embedded(Path(tmp) / "store.json"))
        db_file = str(write_db_file(Path(tmp) / "db.json", store.config))
        parse, insert = [], []
        for d in dirs:
            t0 = time.perf_counter()
            doc = build_task_doc(str(d), {"drx_id": d.name})
            t1 = time.perf_counter()
            insert_task_doc(db_file, doc)
            t2 = time.perf_counter()
            parse.append(t1 - t0)
            insert.append(t2 - t1)
        store.close()
    print(f"{len(dirs)} task documents from {launches}")
    print(f"parse (VaspDrone):        median {statistics.median(parse):.3f} s, max {max(parse):.3f} s")
    print(f"insert + save (embedded): median {statistics.median(insert):.3f} s, max {max(insert):.3f} s")
    print(f"parse-to-store:           median {statistics.median([a + b for a, b in zip(parse, insert)]):.3f} s per task document")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "drx_demo/launches"))
