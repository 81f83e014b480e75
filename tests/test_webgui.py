"""FireWorks' webgui (`drx lpad webgui`) on the project's embedded store, loaded in a real
headless Chromium (Debian's, installed by launchers/browser/chromium.sh). The screenshots are
kept in test-artifacts/webgui/."""

import html
import os
import re
import signal
import subprocess

import pytest
from browser_drill import browse, free_port, wait_http
from conftest import run_drx
from drx_drill import DRX, clean_env, documents, prepare_slice, read_store


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

    port = free_port()
    server = subprocess.Popen(
        [DRX, "--store", store, "lpad", "webgui", "-s", "--host", "127.0.0.1", "--port", str(port), "--nworkers", "1"],
        cwd=tmp_path, env=clean_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/", server)
        home = html.unescape(browse(url + "/", "home"))
        listing = html.unescape(browse(url + "/wf/", "workflows"))
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
