"""The store: one shared client, a lock that names its holder, atomic saves, clear errors."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import run_drx

from drx_workflows.errors import DrxError, StoreCorruptError, StoreUnreachableError
from drx_workflows.store.client import open_store
from drx_workflows.store.config import StoreConfig


def _py(code, env=None, timeout=120):
    full = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full, timeout=timeout
    )


def test_launchpad_and_collections_share_one_client(fresh_store):
    lp = fresh_store.launchpad()
    assert lp.connection is fresh_store.client
    assert lp.db.name == fresh_store.db.name
    lp.fireworks.insert_one({"fw_id": 1, "probe": True})
    assert fresh_store.db["fireworks"].find_one({"fw_id": 1})["probe"] is True
    assert open_store(fresh_store.config) is fresh_store


def test_writes_survive_the_process_and_are_saved_atomically(tmp_path):
    path = tmp_path / "s" / "store.json"
    code = f"""
        from drx_workflows.store.config import StoreConfig
        from drx_workflows.store.client import open_store
        st = open_store(StoreConfig.embedded({str(path)!r}))
        st.structures.insert_one({{"drx_id": "drx-a", "n_tm": 2}})
        st.launchpad().fireworks.insert_one({{"fw_id": 7}})
    """
    r = _py(code)
    assert r.returncode == 0, r.stderr
    data = json.loads(path.read_text())
    assert data["drx"]["structures"]["documents"][0][1]["drx_id"] == "drx-a"
    r = _py(
        f"""
        from drx_workflows.store.config import StoreConfig
        from drx_workflows.store.client import open_store
        st = open_store(StoreConfig.embedded({str(path)!r}))
        print(st.structures.count_documents({{}}), st.db["fireworks"].count_documents({{}}))
        """
    )
    assert r.stdout.split() == ["1", "1"]
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name]


def test_second_process_is_refused_with_the_holders_name(fresh_store, tmp_path):
    r = run_drx("--store", fresh_store.config.path, "info", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "in use by pid" in lines[0] and str(os.getpid()) in lines[0]


def test_second_process_can_wait_for_the_store(tmp_path):
    path = tmp_path / "store.json"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from drx_workflows.store.client import *; import time; s=open_store(StoreConfig.embedded({str(path)!r})); "
            "s.structures.insert_one({'drx_id': 'first'}); print('held', flush=True); time.sleep(2)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    r = run_drx("--store", path, "info", cwd=tmp_path, env={"DRX_STORE_WAIT": "30"})
    holder.wait(timeout=30)
    assert r.returncode == 0, r.stderr
    assert "structures: 1" in r.stdout  # the holder's write was kept, not clobbered
    assert time.monotonic() - t0 < 30


def test_a_bad_store_wait_is_one_line_wherever_it_is_read(tmp_path, monkeypatch):
    from drx_workflows.errors import DrxError
    from drx_workflows.store.config import store_wait_from_env

    monkeypatch.setenv("DRX_STORE_WAIT", " 12.5 ")
    assert store_wait_from_env(600) == 12.5
    monkeypatch.setenv("DRX_STORE_WAIT", "")
    assert store_wait_from_env(600) == 600
    for bad in ("ten", "-1", "nan"):
        monkeypatch.setenv("DRX_STORE_WAIT", bad)
        with pytest.raises(DrxError, match="DRX_STORE_WAIT must be a number of seconds"):
            store_wait_from_env(600)
    for args in (["info"], ["rlaunch", "singleshot"]):  # open_store and drx rlaunch
        r = run_drx("--store", tmp_path / "s.json", *args, cwd=tmp_path, env={"DRX_STORE_WAIT": "soon"})
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [
            "drx: error: DRX_STORE_WAIT must be a number of seconds, got 'soon'"], r.stderr


def test_corrupted_store_gives_clear_error_and_keeps_good_copy(tmp_path):
    path = tmp_path / "store.json"
    for i in range(2):  # two saves, so a .bak exists
        r = _py(
            f"from drx_workflows.store.client import *; s=open_store(StoreConfig.embedded({str(path)!r})); "
            f"s.structures.insert_one({{'drx_id': 'x{i}'}})"
        )
        assert r.returncode == 0, r.stderr
    good = path.with_name("store.json.bak").read_text()
    path.write_text('{"drx": {"structures": ')  # truncated, as a crash mid-write would leave it
    r = run_drx("--store", path, "info", cwd=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "corrupted" in r.stderr and "store.json.bak" in r.stderr
    assert path.with_name("store.json.bak").read_text() == good
    assert "x0" in good


def test_unparseable_launchpad_file(tmp_path):
    bad = tmp_path / "lp.yaml"
    bad.write_text("host: [unclosed\n")
    with pytest.raises(DrxError, match="does not parse"):
        StoreConfig.from_launchpad_file(bad)
    r = run_drx("--launchpad", bad, "info", cwd=tmp_path)
    assert r.returncode == 2 and "does not parse" in r.stderr


def test_unreachable_mongodb_fails_fast_without_leaking_the_password(tmp_path):
    lp = tmp_path / "my_launchpad.yaml"
    lp.write_text("host: 127.0.0.1\nport: 9\nname: drx\nusername: alice\npassword: s3cret-pw\n")
    t0 = time.monotonic()
    r = run_drx("--launchpad", lp, "info", cwd=tmp_path, env={})
    assert time.monotonic() - t0 < 60
    assert r.returncode == 2
    assert "cannot reach MongoDB 127.0.0.1:9/drx" in r.stderr
    assert "s3cret" not in r.stderr + r.stdout


def test_uri_credentials_are_redacted():
    cfg = StoreConfig(kind="mongodb", host="mongodb://bob:pw123@db.example:27017/drx", uri_mode=True)
    assert "pw123" not in cfg.describe() and "pw123" not in repr(cfg)
    with pytest.raises(StoreUnreachableError):
        from drx_workflows.store.client import _connect_mongodb

        _connect_mongodb(StoreConfig(kind="mongodb", host="127.0.0.1", port=9, password="zz"), 1.0)


def test_launchpad_file_with_mongomock_file_selects_embedded(tmp_path):
    lp = tmp_path / "lp.yaml"
    lp.write_text("name: drx\nmongomock_file: data/store.json\n")
    cfg = StoreConfig.from_launchpad_file(lp)
    assert cfg.kind == "embedded" and cfg.path == tmp_path / "data" / "store.json"


def test_corrupt_error_type(tmp_path):
    path = tmp_path / "store.json"
    path.write_text("not json")
    r = _py(
        f"""
        from drx_workflows.store.client import *
        from drx_workflows.errors import StoreCorruptError
        try:
            open_store(StoreConfig.embedded({str(path)!r}))
        except StoreCorruptError as e:
            print("corrupt:", e)
        """
    )
    assert "corrupt:" in r.stdout, r.stderr
    assert path.read_text() == "not json"  # never overwritten by a failed open
    assert StoreCorruptError.__mro__[1] is DrxError


def test_workflows_stored_before_the_package_moved_still_load(fresh_store):
    """Firetasks are stored as {{module.Class}}; the ones stored under their old modules load as the moved classes."""
    from fireworks.utilities.fw_serializers import load_object

    from drx_workflows.pipeline.relax.firetasks import WriteDrxInputs
    from drx_workflows.pipeline.training.firetasks import TrainSliceTask

    fresh_store.launchpad()
    task = load_object({"_fw_name": "{{drx_workflows.vasp.firetasks.WriteDrxInputs}}", "structure": "{}"})
    assert type(task) is WriteDrxInputs and task["structure"] == "{}"
    train = load_object({"_fw_name": "{{drx_workflows.mliap.firetasks.TrainSliceTask}}", "slice": "s", "backend": "ann"})
    assert type(train) is TrainSliceTask
