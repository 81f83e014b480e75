"""The server patches (store/server_patches.py) change speed, not answers.

One patched and one unpatched ``drx server`` hold the same FireWorks-shaped collection;
FireWorks' checkout (findAndModify with its fworker ``$or`` and priority/FIFO sort), its
workflow lock and a few other conjunction filters must return the same documents on both,
and the checkout order must be the one computed here in Python from the documents.
"""

from __future__ import annotations

import datetime
import random
import sys
from pathlib import Path

import pytest

pytest.importorskip("secantus")

sys.path.insert(0, str(Path(__file__).parent))
from drx_drill import clean_env  # noqa: E402
from server_drill import Server, drx, free_port  # noqa: E402


def _docs(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    t0 = datetime.datetime(2026, 1, 1)
    docs = []
    for i in range(n):
        spec = {"drx_id": f"d{i}", "_category": rng.choice(["vasp", "train"])}
        if rng.random() < 0.7:
            spec["_priority"] = rng.choice([0, 1, 5])
        if rng.random() < 0.3:
            spec["_fworker"] = rng.choice([None, "w1", "w2"])
        docs.append({"fw_id": i + 1, "state": rng.choice(["READY", "READY", "WAITING", "COMPLETED"]),
                     "created_on": t0 + datetime.timedelta(seconds=rng.randrange(10 * n)), "spec": spec})
    return docs


def _fworker_query(name: str, category: str | None = None) -> dict:
    q = {"$or": [{"spec._fworker": {"$exists": False}}, {"spec._fworker": None}, {"spec._fworker": name}],
         "state": "READY"}
    if category:
        q["spec._category"] = category
    return q


def _python_order(docs: list[dict], name: str, category: str | None) -> list[int]:
    ok = [d for d in docs if d["state"] == "READY" and d["spec"].get("_fworker") in (None, name)
          and (category is None or d["spec"]["_category"] == category)]
    ok.sort(key=lambda d: (-d["spec"].get("_priority", -1), d["created_on"], d["fw_id"]))
    return [d["fw_id"] for d in ok]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("patches")
    patched = Server(root / "patched", free_port())
    plain = Server(root / "plain", free_port(), env=clean_env(DRX_SERVER_UNPATCHED="1"))
    for s in (patched, plain):
        s.start()
    yield patched, plain
    for s in (patched, plain):
        s.stop()


def _load(server, docs):
    import pymongo

    db = server.db()
    db.drop_collection("fireworks")
    db.drop_collection("workflows")
    fws = db.fireworks
    fws.create_index("fw_id", unique=True)
    fws.create_index("state")
    fws.create_index([("state", -1), ("spec._priority", -1), ("created_on", 1)])
    fws.create_index([("state", -1), ("spec._priority", -1), ("created_on", -1)])
    fws.insert_many([dict(d) for d in docs])
    db.workflows.create_index("nodes")
    db.workflows.insert_many([{"nodes": list(range(k, k + 10)), "name": f"wf{k}"} for k in range(1, len(docs), 10)])
    return db, pymongo


def test_server_log_names_the_patches(servers):
    patched, plain = servers
    assert "conjunction-filters-use-indexes" in (patched.dir / "server.log").read_text()
    assert "server patches applied" not in (plain.dir / "server.log").read_text()


def test_checkout_order_and_results_are_the_unpatched_servers(servers):
    docs = _docs(300)
    for name, category in (("w1", None), ("w2", "vasp")):
        seen = []
        for server in servers:
            db, pymongo = _load(server, docs)
            order = []
            while True:
                fw = db.fireworks.find_one_and_update(
                    _fworker_query(name, category), {"$set": {"state": "RESERVED"}},
                    sort=[("spec._priority", pymongo.DESCENDING), ("created_on", pymongo.ASCENDING)])
                if fw is None:
                    break
                order.append(fw["fw_id"])
            assert db.fireworks.count_documents({"state": "RESERVED"}) == len(order)
            seen.append(order)
            db.client.close()
        expected = _python_order(docs, name, category)
        assert len(expected) > 50
        assert seen[0] == seen[1] == expected


def test_a_walk_against_the_index_order_and_an_empty_prefix_agree(servers):
    """The walk reads index entries lazily from either end of the equality prefix."""
    docs = _docs(400, seed=3)
    keys = []
    for server in servers:
        db, pymongo = _load(server, docs)
        got = []
        for skip, limit in ((0, 1), (0, 7), (5, 40), (0, 1000)):
            # (priority asc, created_on desc) is FireWorks' (state -1, priority -1, created_on 1) index backwards
            found = db.fireworks.find({"state": "READY", "spec._category": "vasp"},
                                      sort=[("spec._priority", 1), ("created_on", -1)], skip=skip, limit=limit)
            got.append([(d["spec"].get("_priority"), d["created_on"]) for d in found])
        got.append(list(db.fireworks.find({"state": "PAUSED"}, sort=[("spec._priority", 1)], limit=3)))
        keys.append(got)
        db.client.close()
    assert keys[0] == keys[1]
    assert len(keys[0][3]) > 50 and keys[0][4] == []


def test_conjunction_filters_and_the_workflow_lock_agree(servers):
    docs = _docs(200, seed=2)
    answers = []
    for server in servers:
        db, pymongo = _load(server, docs)
        got = []
        for fw_id in (3, 50, 120, 199):  # FireWorks' workflow lock
            w = db.workflows.find_one_and_update({"nodes": fw_id, "locked": {"$exists": False}},
                                                 {"$set": {"locked": True}})
            again = db.workflows.find_one_and_update({"nodes": fw_id, "locked": {"$exists": False}},
                                                     {"$set": {"locked": True}})
            got.append((w["name"] if w else None, again))
        one = db.fireworks.find_one({"_id": db.fireworks.find_one({"fw_id": 7})["_id"],
                                     "$and": [{"state": {"$in": ["READY", "WAITING", "COMPLETED"]}}]})
        got.append(one["fw_id"])
        got.append(sorted(d["fw_id"] for d in db.fireworks.find({"state": "WAITING", "$nor": [{"spec._priority": 5}]})))
        got.append([d["fw_id"] for d in db.fireworks.find({"state": "READY", "spec._category": "train"},
                                                          sort=[("spec._priority", -1), ("created_on", -1)],
                                                          limit=5, skip=2)])
        r = db.fireworks.update_many({"$or": [{"fw_id": 1}, {"fw_id": 2}], "state": {"$exists": True}},
                                     {"$set": {"touched": 1}})
        got.append(r.modified_count)
        answers.append(got)
        db.client.close()
    assert answers[0] == answers[1]
    assert answers[0][0][0] == "wf1" and answers[0][0][1] is None
    assert answers[0][4] == 7 and answers[0][-1] == 2 and len(answers[0][-2]) == 5


def test_the_patched_server_serves_the_project(servers):
    patched, _ = servers
    r = drx("--launchpad", patched.launchpad, "info")
    assert r.returncode == 0, r.stderr
