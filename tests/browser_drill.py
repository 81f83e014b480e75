"""Pages loaded in a real headless Chromium (Debian's, installed by launchers/browser/chromium.sh).

The ``chromium`` fixture (tests/conftest.py) installs it. Used by tests/test_webgui.py and
tests/test_server_queue.py; screenshots and rendered DOM are kept in test-artifacts/webgui/.
"""

import subprocess
import time
import urllib.request

from conftest import REPO
from server_drill import free_port  # noqa: F401 (the pages' server port)

BROWSER = REPO / "launchers" / "browser" / "chromium.sh"
ARTIFACTS = REPO / "test-artifacts" / "webgui"


def wait_http(url, proc, timeout=90):
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


def browse(url, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png, dom = ARTIFACTS / f"{name}.png", ARTIFACTS / f"{name}.html"
    for p in (png, dom):
        p.unlink(missing_ok=True)
    r = subprocess.run([str(BROWSER), "shot", url, str(png), str(dom)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    return dom.read_text()
