"""``make ui`` comes up with the project's instance config and stops on Ctrl-C.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group: make, ``dagster dev``,
the webserver, the daemon and the code server. The test does the same to a ``make ui`` started in
its own session and expects every one of those processes to be gone within 30 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.servers import free_port, group_alive
from tests.paths import REPO



def _terminal_signals() -> None:
    """In the child before ``make`` starts: SIGINT and SIGTERM as a terminal's shell leaves them
    (default action, not blocked). Ignored or blocked signals are inherited across exec, and code
    that ran earlier in the pytest process (in-process Dagster runs) may have left them so."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.slow
def test_make_ui_serves_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    home = tmp_path / "home"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    # the test's own interpreter and venv; no install step (STAMP empty)
    proc = subprocess.Popen(["make", "-s", "ui", f"VENV={sys.prefix}", "STAMP=", f"UI_PORT={port}"], cwd=REPO, env=env,
                            stdout=open(tmp_path / "ui.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_terminal_signals)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "make ui did not come up"
            try:
                if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert "run_monitoring" in (home / "dagster.yaml").read_text()  # the project's instance config
        # a user presses Ctrl-C once the UI is up, code location loaded, not in its first instant: a
        # SIGINT that lands while Dagster is still starting its processes can be lost inside Dagster
        query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
        while True:
            assert time.monotonic() < deadline, "the code location did not load"
            reply = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=10).json()
            entries = reply["data"]["workspaceOrError"].get("locationEntries") or []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                break
            time.sleep(0.5)
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            proc.poll()  # reap make, so a finished make is not counted as alive
            if not group_alive(proc.pid):
                break
            time.sleep(0.5)
        left = subprocess.run(["ps", "-o", "pid,stat,cmd", "-g", str(proc.pid)], capture_output=True, text=True).stdout
        assert not group_alive(proc.pid), left[:3000] + (tmp_path / "ui.log").read_text()[-1500:]
        assert proc.returncode not in (None, 0)  # make reports the interrupt
        assert "Warning" not in (tmp_path / "ui.log").read_text()  # e.g. dagster dev's "use dg dev" hint
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
