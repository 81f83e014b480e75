import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


DRX_DFT = SHARED / "data" / "drx_dft"


def drx_dft(ids) -> list:
    """Configurations of the published study's sample (../shared/data/drx_dft) by XSF id."""
    from drx_workflows.mliap.data import read_xsf

    return [read_xsf(DRX_DFT / f"{i}.xsf") for i in ids]


def pytest_report_header(config):
    return f"shared data: {SHARED} ({'present' if SHARED.exists() else 'MISSING'})"


@pytest.fixture
def shared_dir():
    if not SHARED.exists():
        pytest.fail(f"{SHARED} is missing: the tests read the project's shared data from ../shared")
    return SHARED


@pytest.fixture
def fresh_store(tmp_path, monkeypatch):
    """An embedded store in tmp_path, opened in this process and closed after the test."""
    from drx_workflows.store import client as store_mod
    from drx_workflows.store import config as store_config

    for leftover in list(store_mod._OPEN.values()):
        leftover.close()
    monkeypatch.delenv(store_config.ENV_LAUNCHPAD, raising=False)
    monkeypatch.delenv(store_config.ENV_STORE, raising=False)
    st = store_mod.open_store(store_config.StoreConfig.embedded(tmp_path / "store" / "store.json"))
    yield st
    st.close()


def run_drx(*args, cwd=None, env=None, timeout=600):
    """Run the drx CLI in a new process (each process may hold one embedded store)."""
    import os
    import subprocess

    full_env = dict(os.environ)
    full_env.pop("DRX_STORE", None)
    full_env.pop("DRX_LAUNCHPAD", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "drx_workflows.cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium, installed by launchers/browser/chromium.sh; its path."""
    import subprocess

    from browser_drill import BROWSER

    r = subprocess.run([str(BROWSER), "install"], capture_output=True, text=True, timeout=900)
    if r.returncode == 3:
        pytest.skip("apt-get is not available to install chromium: " + r.stderr.strip())
    assert r.returncode == 0, r.stderr
    return subprocess.run([str(BROWSER), "path"], capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def local_slurm():
    """The one-node SLURM cluster of launchers/local_slurm/slurm.sh; stopped after the module if started here."""
    from drx_drill import slurm_down, slurm_up

    started, why_not = slurm_up()
    if why_not:
        pytest.skip(why_not)
    yield
    if started:
        slurm_down()


@pytest.fixture
def server(tmp_path):
    """A real ``drx server`` on a free loopback port in tmp_path; stopped (or killed) whatever the test did."""
    import os
    import signal

    from server_drill import Server, free_port

    s = Server(tmp_path / "srv", free_port())
    s.start()
    yield s
    r = s.stop()
    if "stopped" not in r.stdout and (s.dir / "server.pid").exists():
        os.kill(s.pid, signal.SIGKILL)


def wait_for_training_child(done):
    """The pid of this process's isolated training child (mliap.isolated) once it exists; None if ``done`` is set first."""
    import os
    import time
    from pathlib import Path

    me = os.getpid()
    while not done.is_set():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == me and b"drx_workflows.mliap.isolated" in cmd:
                return int(pid)
        time.sleep(0.05)
    return None
