"""The local MongoDB-protocol server (secantusdb) as the store: lifecycle, auth, durability, FireWorks' own tools.

Every server here is a real ``drx server start`` process on a free loopback port in tmp_path;
the fixtures stop it (and fall back to kill -9) whatever the test did.
"""

from __future__ import annotations

import gzip
import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("secantus")

sys.path.insert(0, str(Path(__file__).parent))
from drx_drill import clean_env, prepare_slice  # noqa: E402
from server_drill import BIN, Server, describe_run, drx, free_port, wait_for  # noqa: E402


def test_start_is_idempotent_status_tells_and_data_survives_a_restart(server):
    first_pid = server.pid
    again = server.start()
    assert again.stdout.startswith("already running") and server.pid == first_pid
    lp = server.launchpad.read_text()
    assert f"port: {server.port}" in lp and "journal: true" in lp and "host: 127.0.0.1" in lp
    db_json = json.loads((server.dir / "db.json").read_text())
    assert db_json["port"] == server.port and db_json["mongoclient_kwargs"] == {"journal": True}
    assert drx("server", "status", "--dir", server.dir).returncode == 0
    # the project's own writes go through it
    r = drx("--launchpad", server.launchpad, "enumerate", "--tms", "Mn,Ni", "--n-tm", "2", "--per-ntm", "3",
            "--toc-per-ntm", "0", "--max-cation-sites", "4")
    assert r.returncode == 0, r.stderr
    assert server.db().structures.count_documents({}) == 3
    stopped = server.stop()
    assert stopped.returncode == 0 and "stopped in" in stopped.stdout
    st = drx("server", "status", "--dir", server.dir)
    assert st.returncode == 3 and "not running" in st.stdout
    assert "no server running" in server.stop().stdout
    server.start()
    assert server.db().structures.count_documents({}) == 3


def test_the_server_listens_on_loopback_only_and_a_taken_port_is_one_line(server, tmp_path):
    addresses = subprocess.run(["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True).stdout
    if addresses.strip():  # ss is in iproute2; where it is missing the YAML check below still holds
        assert all("127.0.0.1:" in line for line in addresses.strip().splitlines()), addresses
    other = drx("server", "start", "--dir", tmp_path / "other", "--port", server.port)
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [f"drx: error: port {server.port} on 127.0.0.1 is in use by another "
                                                 "program; choose another with --port"]


def test_acknowledged_writes_survive_kill_9_of_the_server(server):
    from drx_workflows.store.client import Store, journaled
    from drx_workflows.store.config import StoreConfig

    assert journaled({}) == {"journal": True} and journaled({"w": "majority"}) == {"w": "majority"}
    store = Store(StoreConfig.from_launchpad_file(server.launchpad))
    for i in range(300):
        store.structures.insert_one({"drx_id": f"drx-k{i}", "n_tm": 1})
    store.client.close()
    server.kill9()
    server.start()
    assert server.db().structures.count_documents({}) == 300


def test_auth_keeps_the_password_out_of_logs_and_a_wrong_one_is_one_line(tmp_path):
    password = "s3cret-Pw-for-the-test"
    s = Server(tmp_path / "srv", free_port(), auth=True, env=clean_env(DRX_SERVER_PASSWORD=password))
    started = s.start()
    try:
        for f in ("my_launchpad.yaml", "db.json"):
            assert stat.S_IMODE((s.dir / f).stat().st_mode) == 0o600, f
        assert password in s.launchpad.read_text()
        assert password not in started.stdout + started.stderr
        assert password not in (s.dir / "server.log").read_text()
        assert password not in (s.dir / "server.json").read_text()
        info = drx("--launchpad", s.launchpad, "info")
        assert info.returncode == 0 and password not in info.stdout + info.stderr
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text(s.launchpad.read_text().replace(password, "not-the-password"))
        r = drx("--launchpad", wrong, "info", timeout=60)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused the credentials" in lines[0] and "code 18" in lines[0], r.stderr
        assert "not-the-password" not in r.stderr
        no_password = tmp_path / "anon.yaml"
        no_password.write_text(f"host: 127.0.0.1\nport: {s.port}\nname: drx\n")
        assert drx("--launchpad", no_password, "info", timeout=60).returncode != 0
        # restarted without --auth on the command line, the folder still requires it
        s.stop()
        s.auth = False
        s.start()
        assert drx("--launchpad", no_password, "info", timeout=60).returncode != 0
        assert drx("--launchpad", s.launchpad, "info").returncode == 0
    finally:
        s.stop()


def test_a_stopped_server_gives_a_clear_error_and_nothing_half_written(server, tmp_path):
    server.stop()
    t0 = time.time()
    r = drx("--launchpad", server.launchpad, "enumerate", "--tms", "Mn", "--n-tm", "1", "--per-ntm", "1",
            "--toc-per-ntm", "0", "--max-cation-sites", "2", timeout=60)
    assert r.returncode == 2 and time.time() - t0 < 30
    assert r.stderr.strip().splitlines()[-1].startswith("drx: error: cannot reach MongoDB 127.0.0.1:")
    server.start()
    assert server.db().structures.count_documents({}) == 0


def test_a_task_document_waits_for_a_restarting_server_and_gives_up_in_one_line(server):
    """The write at the end of hours of VASP must not fizzle because the server restarts just then."""
    import threading

    from drx_workflows.errors import ServerDownError
    from drx_workflows.store.taskdocs import insert_task_doc

    db_file = str(server.dir / "db.json")
    server.stop()
    restart = threading.Timer(4.0, server.start)
    restart.start()
    try:
        t0 = time.time()
        task_id = insert_task_doc(db_file, {"dir_name": "host:/runs/a", "drx_id": "drx-a", "state": "successful"},
                                  server_wait_s=120)
    finally:
        restart.join()
    assert time.time() - t0 >= 4 and task_id == 1
    assert [t["drx_id"] for t in server.db().tasks.find({})] == ["drx-a"]
    server.stop()
    t0 = time.time()
    with pytest.raises(ServerDownError, match="stayed down for 3 s"):
        insert_task_doc(db_file, {"dir_name": "host:/runs/b", "drx_id": "drx-b", "state": "successful"},
                        server_wait_s=3)
    assert time.time() - t0 < 60
    server.start()
    assert server.db().tasks.count_documents({}) == 1


def test_queue_jobs_storing_their_first_task_docs_at_once_get_distinct_sequential_ids(server):
    """The CI run of a78bc39 fizzled a firework here: secantusdb answered the loser of two racing
    counter upserts with null. Five rounds of eight writers, each on a database without a counter."""
    import threading

    from drx_workflows.store.taskdocs import insert_task_doc

    db_file, db = str(server.dir / "db.json"), server.db()
    for round_ in range(5):
        db["counter"].delete_many({})
        db.tasks.delete_many({})
        ids, errors = [], []

        def store(i):
            try:
                ids.append(insert_task_doc(db_file, {"dir_name": f"host:/r{round_}/{i}", "drx_id": f"drx-{i}"}))
            except Exception as exc:  # noqa: BLE001 - the assertion below shows it
                errors.append(repr(exc))

        writers = [threading.Thread(target=store, args=(i,)) for i in range(8)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        assert errors == [] and sorted(ids) == list(range(1, 9))
        assert sorted(t["task_id"] for t in db.tasks.find({})) == list(range(1, 9))


@pytest.mark.slow
def test_three_plain_rlaunch_with_a_server_kill_9_give_one_task_per_structure(server, tmp_path):
    """The production path: FireWorks' own rlaunch, three at once, the server killed mid-run and restarted."""
    info = prepare_slice(tmp_path / "drill", n=5, launchpad=str(server.launchpad))
    env = clean_env()
    procs = []
    for i in range(3):
        d = tmp_path / f"launcher{i}"
        d.mkdir()
        procs.append(subprocess.Popen([str(BIN / "rlaunch"), "-l", str(server.launchpad), "-w", info["fworker"],
                                       "rapidfire"], cwd=d, env=env, stdout=open(d / "rlaunch.log", "w"),
                                      stderr=subprocess.STDOUT))
    try:
        db = server.db()
        wait_for(lambda: db.tasks.count_documents({}) >= 1, 600, "a first task document", procs,
                  [tmp_path / f"launcher{i}" / "rlaunch.log" for i in range(3)], lambda: describe_run(server))
        db.client.close()
        server.kill9()
        time.sleep(2)
        server.start()
        for p in procs:
            p.wait(timeout=1500)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    # a launcher that lost its firework to the outage leaves it RUNNING: lost-run detection puts it back;
    # one whose FireWorks ping met the closed connection fizzles it once the server is back (`drx status`
    # groups it as OSError: "connection closed", under pymongo's AutoReconnect): `drx rerun --fizzled
    # --error …` puts exactly those back. Nothing else may have fizzled (checked below).
    r = drx("--launchpad", server.launchpad, "recover", "--expiration-secs", "0")
    assert r.returncode == 0, r.stderr
    reruns = [drx("--launchpad", server.launchpad, "rerun", "--fizzled", "--error", name)
              for name in ("OSError", "AutoReconnect")]
    assert all(rr.returncode == 0 for rr in reruns), [rr.stderr for rr in reruns]
    if "no lost runs" not in r.stdout or any(not rr.stdout.startswith("rerun 0 ") for rr in reruns):
        rl = subprocess.run([str(BIN / "rlaunch"), "-l", str(server.launchpad), "-w", info["fworker"], "rapidfire"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
        assert rl.returncode == 0, rl.stderr[-2000:]
    db = server.db()
    states = {fw["fw_id"]: fw["state"] for fw in db.fireworks.find({}, {"fw_id": 1, "state": 1})}
    assert set(states.values()) == {"COMPLETED"}, describe_run(server)
    per_structure = {}
    for t in db.tasks.find({}, {"drx_id": 1}):
        per_structure[t["drx_id"]] = per_structure.get(t["drx_id"], 0) + 1
    assert per_structure == {i: 1 for i in info["drx_ids"]}
    status = drx("--launchpad", server.launchpad, "status")
    assert status.returncode == 0 and "COMPLETED" in status.stdout


@pytest.mark.slow
def test_an_offline_relaxation_is_recovered_into_the_store(server, tmp_path):
    """A compute node without database access: qlaunch -r's reservation, rlaunch --offline with the server down,
    then drx recover --offline stores its task document (once)."""
    info = prepare_slice(tmp_path / "drill", n=1, launchpad=str(server.launchpad), inline=True)
    launch_dir = tmp_path / "offline_launch"
    launch_dir.mkdir()
    reserve = (
        "import sys\n"
        "from fireworks import FWorker, LaunchPad\n"
        "from fireworks.queue.queue_launcher import setup_offline_job\n"
        "lp = LaunchPad.from_file(sys.argv[1])\n"
        "fw, launch_id = lp.reserve_fw(FWorker.from_file(sys.argv[2]), sys.argv[3])\n"
        "setup_offline_job(lp, fw, launch_id)\n"
        "print(fw.fw_id, launch_id)\n"
    )
    r = subprocess.run([sys.executable, "-c", reserve, str(server.launchpad), info["fworker"], str(launch_dir)],
                       capture_output=True, text=True, cwd=launch_dir, env=clean_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    fw_id = int(r.stdout.split()[0])
    server.stop()  # the node cannot reach the database
    rl = subprocess.run([str(BIN / "rlaunch"), "-w", info["fworker"], "singleshot", "--offline"],
                        cwd=launch_dir, capture_output=True, text=True, env=clean_env(), timeout=900)
    assert rl.returncode == 0, rl.stderr[-3000:]
    offline = next(launch_dir.glob("FW_offline.json*"))  # custodian gzips the folder after VASP
    assert (launch_dir / "task.json").exists() and b"fwaction" in (
        gzip.decompress(offline.read_bytes()) if offline.suffix == ".gz" else offline.read_bytes())
    server.start()
    rec = drx("--launchpad", server.launchpad, "recover", "--offline")
    assert rec.returncode == 0, rec.stderr
    assert "1 offline run(s) recovered" in rec.stdout and "1 task document(s) stored" in rec.stdout, rec.stdout
    db = server.db()
    assert db.fireworks.find_one({"fw_id": fw_id})["state"] == "COMPLETED"
    tasks = list(db.tasks.find({}, {"drx_id": 1, "state": 1}))
    assert [t["drx_id"] for t in tasks] == info["drx_ids"] and tasks[0]["state"] == "successful"
    again = drx("--launchpad", server.launchpad, "recover", "--offline")
    assert again.returncode == 0 and db.tasks.count_documents({}) == 1


def test_drx_with_nothing_configured_starts_the_local_server_on_demand(tmp_path):
    """The default store: ./drx_server, started by the first command that opens the store (on a free port
    when 27017 is taken), found running by the next; an existing ./drx_store file store keeps being used."""
    import socket

    from drx_workflows.store.server import running_pid, stop

    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT of an earlier server
    try:
        holder.bind(("127.0.0.1", 27017))
        holder.listen()
    except OSError:
        pass  # someone else holds it: the fallback is exercised all the same
    try:
        first = drx("info", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert "drx: started the local database server: server on 127.0.0.1:" in first.stderr
        port = json.loads((tmp_path / "drx_server" / "server.json").read_text())["port"]
        assert port != 27017 and first.stdout.startswith(f"MongoDB 127.0.0.1:{port}/drx")
        r = drx("enumerate", "--tms", "Mn,Ni", "--n-tm", "2", "--per-ntm", "2", "--toc-per-ntm", "0",
                "--max-cation-sites", "4", cwd=tmp_path)
        assert r.returncode == 0 and "started" not in r.stderr, r.stderr
        assert "structures: 2" in drx("info", cwd=tmp_path).stdout
        assert drx("server", "status", cwd=tmp_path).returncode == 0
        # plain FireWorks tools on the launchpad it wrote
        lp = subprocess.run([str(BIN / "lpad"), "-l", str(tmp_path / "drx_server" / "my_launchpad.yaml"),
                             "get_fws", "-d", "count"], capture_output=True, text=True, timeout=120, env=clean_env())
        assert lp.returncode == 0 and lp.stdout.strip() == "0", lp.stdout + lp.stderr
        assert running_pid(tmp_path / "drx_server") is not None
    finally:
        holder.close()
        stop(tmp_path / "drx_server")
    legacy = tmp_path / "legacy"
    (legacy / "drx_store").mkdir(parents=True)
    assert drx("--store", legacy / "drx_store" / "store.json", "info").returncode == 0
    r = drx("info", cwd=legacy)
    assert r.returncode == 0 and r.stdout.startswith("embedded store ") and not (legacy / "drx_server").exists()


def test_a_stale_mongomock_variable_does_not_divert_fireworks_from_the_server(server):
    """MONGOMOCK_SERVERSTORE_FILE (left by an embedded store, or by hand) makes FireWorks' LaunchPad ignore
    its host and port; a process opened on the server must still put its fireworks on the server."""
    code = ("from fireworks import Firework, ScriptTask\n"
            "from drx_workflows.store.client import open_store\n"
            "from drx_workflows.store.config import StoreConfig\n"
            f"store = open_store(StoreConfig.from_launchpad_file({str(server.launchpad)!r}))\n"
            "store.launchpad().add_wf(Firework(ScriptTask.from_str('true')))\n")
    env = clean_env(MONGOMOCK_SERVERSTORE_FILE=str(server.dir / "stale.json"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "MONGOMOCK_SERVERSTORE_FILE was set" in r.stderr and "ignored" in r.stderr
    assert server.db().fireworks.count_documents({}) == 1
    assert not (server.dir / "stale.json").exists()
