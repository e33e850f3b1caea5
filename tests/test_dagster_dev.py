"""`dagster dev` from the repo root serves the asset graph (a real webserver on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from explainrec_core import pipeline
from explainrec_core.config import Config
from tests.conftest import REPO, write_params

pytestmark = pytest.mark.e2e

QUERY = "{ assetNodes { assetKey { path } groupName hasAssetChecks } }"
AUTOMATION_QUERY = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name targets { pipelineName } } schedules { name pipelineName cronSchedule } jobs { name } } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _start_dagster_dev(port: int, env: dict, log, cwd: Path = REPO) -> subprocess.Popen:
    # Its own session, so the webserver and code-server children can be stopped together.
    return subprocess.Popen(["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _workspace_outside_the_repo(folder: Path) -> Path:
    """A workspace.yaml that loads the repo's code from a folder without the repo's `.env`: `dagster dev` reads the
    `.env` of the folder it starts in, and that one's DAGSTER_HOME (which `make` writes) would override the test's
    and show the runs of `make demo` to a test that counts runs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: explainrec_dagster.definitions\n"
        f"      working_directory: {REPO}\n")
    return folder


def _stop(proc: subprocess.Popen, log) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_dagster_dev_serves_the_asset_graph(tmp_path):
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = (tmp_path / "dagster_dev.log").open("w")
    proc = _start_dagster_dev(port, env, log)
    try:
        deadline, nodes = time.monotonic() + 120, None
        while time.monotonic() < deadline and nodes is None:
            assert proc.poll() is None, (tmp_path / "dagster_dev.log").read_text()[-3000:]
            try:
                nodes = _graphql(port, QUERY)["data"]["assetNodes"]
            except (OSError, KeyError, TypeError):
                time.sleep(2)
        assert nodes, "dagster dev did not serve the asset graph within 120 s"
        served = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert set(served) == set(pipeline.outputs(Config())) | {"published_artifacts", "model_registry"}
        assert served["samples"]["groupName"] == "prepare" and served["samples"]["hasAssetChecks"]
        # The automation the Automation page lists: the sensor and the nightly schedule, both on the retrain job.
        repos = _graphql(port, AUTOMATION_QUERY)["data"]["repositoriesOrError"]["nodes"]
        sensors = {s["name"]: s for r in repos for s in r["sensors"]}
        schedules = {s["name"]: s for r in repos for s in r["schedules"]}
        jobs = {j["name"] for r in repos for j in r["jobs"]}
        assert [t["pipelineName"] for t in sensors["new_interactions_sensor"]["targets"]] == ["retrain"]
        assert schedules["nightly_retrain"]["pipelineName"] == "retrain"
        assert schedules["nightly_retrain"]["cronSchedule"] == Config().retrain.cron
        assert {"retrain", "full_pipeline"} <= jobs
    finally:
        _stop(proc, log)


REPOS_QUERY = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
START_SENSOR = """mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
    __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""
RETRAIN_RUNS = """{ runsOrError(filter: {pipelineName: "retrain"}) { ... on Runs { results {
    runId status tags { key value } } } } }"""


def test_turning_the_sensor_on_launches_the_retrain_job(tmp_path, ml100k_raw):
    """Through `dagster dev`'s GraphQL API, as a person would in the UI: a file waits in a project's inbox, the
    sensor is turned on, its tick launches a `retrain` run. (The run itself fails fast here: this project has no
    champion yet; tests/test_retrain.py covers what the job does.)"""
    project = tmp_path / "project"
    project.mkdir()
    write_params(project, data={"raw_dir": str(ml100k_raw)}, retrain={"sensor_interval_s": 5})
    (project / "data/incoming").mkdir(parents=True)
    (project / "data/incoming/batch-1.data").write_text("1\t1\t5\t893286638\n")
    port, home = _free_port(), tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "EXPLAINREC_ROOT": str(project),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = (tmp_path / "dagster_dev.log").open("w")
    proc = _start_dagster_dev(port, env, log, cwd=_workspace_outside_the_repo(tmp_path / "workspace"))
    try:
        deadline, repos = time.monotonic() + 120, None
        while time.monotonic() < deadline and not repos:
            assert proc.poll() is None, (tmp_path / "dagster_dev.log").read_text()[-3000:]
            try:
                repos = _graphql(port, REPOS_QUERY)["data"]["repositoriesOrError"]["nodes"]
            except (OSError, KeyError, TypeError):
                time.sleep(2)
        assert repos, "dagster dev did not serve the repository within 120 s"
        selector = {"repositoryLocationName": repos[0]["location"]["name"], "repositoryName": repos[0]["name"],
                    "sensorName": "new_interactions_sensor"}
        started = _graphql(port, START_SENSOR, {"selector": selector})["data"]["startSensor"]
        assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started
        deadline, runs = time.monotonic() + 180, []
        while time.monotonic() < deadline and not runs:
            time.sleep(3)
            runs = _graphql(port, RETRAIN_RUNS)["data"]["runsOrError"]["results"]
        assert runs, "no retrain run within 180 s of turning the sensor on:\n" + \
            (tmp_path / "dagster_dev.log").read_text()[-3000:]
        tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
        assert tags["dagster/sensor_name"] == "new_interactions_sensor" and tags["dagster/run_key"].startswith("inbox-")
    finally:
        _stop(proc, log)
