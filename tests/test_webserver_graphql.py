"""The Dagster webserver on 127.0.0.1, driven over its GraphQL API: asset graph and a launched run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from cloudgan_assets.partitions import products_partitions
from cloudgan_core.stages import synthetic_clouds
from tests.dagster_helpers import SMALL_RUN_CONFIG, make_inbox
from tests.paths import REPO

#: real Dagster runs: a webserver process and GraphQL launches
pytestmark = pytest.mark.slow

EXPECTED = {"products", "masks", "false_color", "tiles", "sorted_tiles", "synthetic_clouds", "surface_tiles",
            "composites", "training_set", "quality_report", "train_generator"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webserver(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # runs launched from the UI start right away (no daemon needed for this test)
    (home / "dagster.yaml").write_text("run_coordinator:\n  module: dagster._core.run_coordinator\n"
                                       "  class: DefaultRunCoordinator\ntelemetry:\n  enabled: false\n")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "CLOUDGAN_STORAGE": str(tmp_path / "storage"),
           "CLOUDGAN_INBOX": str(tmp_path / "inbox")}
    log = open(tmp_path / "webserver.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail("webserver did not start: " + (tmp_path / "webserver.log").read_text()[-3000:])
        yield url, home, tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the webserver and its code server; it may ignore SIGTERM
        proc.wait(timeout=30)
        log.close()


def gql(url: str, query: str, variables: dict | None = None) -> dict:
    reply = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    reply.raise_for_status()
    body = reply.json()
    assert "errors" not in body, body
    return body["data"]


def test_graphql_lists_the_asset_graph_and_launches_a_partition_run(webserver):
    url, home, tmp_path = webserver
    nodes = gql(url, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    assert {n["assetKey"]["path"][-1] for n in nodes} == EXPECTED

    (key,) = make_inbox(tmp_path / "inbox", seeds=(51,))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(products_partitions.name, [key])
    launched = gql(url, """
        mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
            __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
            ... on RunConfigValidationInvalid { errors { message } } } }""",
        {"p": {"selector": {"repositoryLocationName": "cloudgan", "repositoryName": "__repository__",
                            "jobName": "process_product"},
               "runConfigData": SMALL_RUN_CONFIG,
               "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]}}})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline, status = time.monotonic() + 180, None
    while time.monotonic() < deadline:
        status = gql(url, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                     {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS", (tmp_path / "webserver.log").read_text()[-3000:]
    synthetic_clouds.read(tmp_path / "storage", key)  # stored, complete and consistent
