"""The local MongoDB-protocol server in the drills: a real ``drx server`` on a free loopback port.

Used by tests/test_server*.py and the production-path drill (tests/test_server_queue.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from drx_drill import DRX, clean_env

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drx(*args, env=None, timeout=300, cwd=None):
    return subprocess.run([DRX, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env or clean_env(), cwd=cwd)


class Server:
    def __init__(self, directory: Path, port: int, auth: bool = False, env=None):
        self.dir, self.port, self.auth, self.env = directory, port, auth, env or clean_env()

    def start(self):
        r = drx("server", "start", "--dir", self.dir, "--port", self.port, *(["--auth"] if self.auth else []), env=self.env)
        assert r.returncode == 0, r.stderr
        return r

    def stop(self):
        return drx("server", "stop", "--dir", self.dir, env=self.env)

    @property
    def pid(self) -> int:
        return int((self.dir / "server.pid").read_text())

    @property
    def launchpad(self) -> Path:
        return self.dir / "my_launchpad.yaml"

    def kill9(self):
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.time() + 10
        while time.time() < deadline and Path(f"/proc/{self.pid}").exists():
            time.sleep(0.1)

    def db(self):
        import pymongo

        from drx_workflows.store.config import StoreConfig

        c = StoreConfig.from_launchpad_file(self.launchpad)
        client = pymongo.MongoClient(c.host, c.port, username=c.username, password=c.password,
                                     authSource=c.authsource or "admin", serverSelectionTimeoutMS=10000)
        return client[c.name]


def describe_run(server) -> str:
    """Firework states and, for a FIZZLED one, the exception its launch stored: what a failed drill needs."""
    db = server.db()
    states = {fw["fw_id"]: fw["state"] for fw in db.fireworks.find({}, {"fw_id": 1, "state": 1})}
    why = [f"launch {la['launch_id']} of fw {la['fw_id']}: "
           f"{str((la.get('action') or {}).get('stored_data', {}).get('_exception', {}).get('_stacktrace'))[-1500:]}"
           for la in db.launches.find({"state": "FIZZLED"})]
    db.client.close()
    return f"states {states}\n" + "\n".join(why)


def wait_for(predicate, timeout, what, procs=(), logs=(), describe=None):
    """Poll until predicate(); fail at once (with the launchers' logs) when every launcher has already exited."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if procs and all(p.poll() is not None for p in procs):
            if predicate():
                return
            break
        time.sleep(1)
    tails = "\n".join(f"--- {log}:\n{Path(log).read_text()[-3000:]}" for log in logs if Path(log).exists())
    raise AssertionError(f"timed out waiting for {what}; launcher exit codes {[p.poll() for p in procs]}; "
                         f"{describe() if describe else ''}\n{tails}")
