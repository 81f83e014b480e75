"""FireWorks' webgui (`drx lpad webgui`) on the project's embedded store, loaded in a real
headless Chromium (Debian's, installed by launchers/browser/chromium.sh). The screenshots are
kept in test-artifacts/webgui/."""

import html
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from conftest import REPO, run_drx
from drx_drill import DRX, clean_env, documents, prepare_slice, read_store

BROWSER = REPO / "launchers" / "browser" / "chromium.sh"
ARTIFACTS = REPO / "test-artifacts" / "webgui"


@pytest.fixture(scope="module")
def chromium():
    r = subprocess.run([str(BROWSER), "install"], capture_output=True, text=True, timeout=900)
    if r.returncode == 3:
        pytest.skip("apt-get is not available to install chromium: " + r.stderr.strip())
    assert r.returncode == 0, r.stderr
    return subprocess.run([str(BROWSER), "path"], capture_output=True, text=True).stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url, proc, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "webgui exited: " + proc.stderr.read()[-2000:]
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def _browse(url, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png, dom = ARTIFACTS / f"{name}.png", ARTIFACTS / f"{name}.html"
    for p in (png, dom):
        p.unlink(missing_ok=True)
    r = subprocess.run([str(BROWSER), "shot", url, str(png), str(dom)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    return dom.read_text()


@pytest.mark.slow
def test_webgui_shows_the_drx_workflows_and_their_states_in_chromium(chromium, tmp_path):
    info = prepare_slice(tmp_path / "s", n=3)
    store, fworker = info["store"], info["fworker"]
    # one relaxation run, so the page has COMPLETED and READY workflows
    r = run_drx("--store", store, "rlaunch", "--fworker", fworker, "--launch-dir", tmp_path / "run", "singleshot",
                cwd=tmp_path)
    assert r.returncode == 0 and "1 launches" in r.stdout, r.stderr[-3000:]
    db = read_store(store)
    wfs = {wf["name"]: wf["state"] for wf in documents(db, "workflows")}
    assert sorted(wfs.values()) == ["COMPLETED", "READY", "READY"]

    port = _free_port()
    server = subprocess.Popen(
        [DRX, "--store", store, "lpad", "webgui", "-s", "--host", "127.0.0.1", "--port", str(port), "--nworkers", "1"],
        cwd=tmp_path, env=clean_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/", server)
        home = html.unescape(_browse(url + "/", "home"))
        listing = html.unescape(_browse(url + "/wf/", "workflows"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    # the home page lists each workflow with its state label (rendered DOM, not the raw HTML)
    blocks = re.findall(r'class="wf-name" title="([^"]+)".*?<span class="label (\w+)">', home, flags=re.S)
    assert dict(blocks) == wfs
    for name, state in wfs.items():
        assert name in listing
    assert "drx" in " ".join(wfs).lower()  # the DRX relaxation workflows, by their own names
    # the webgui only read the store; it released it and left it intact
    assert read_store(store)["workflows"] == db["workflows"]
    assert run_drx("--store", store, "info", cwd=tmp_path).returncode == 0
