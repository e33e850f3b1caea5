"""Artifact storage against a real S3 endpoint (moto's server over HTTP), with real dvc and a real Dagster run."""

# ruff: noqa: F811  (the fixtures imported from tests/s3_server.py reappear as test arguments)

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from explainrec_core.cli import app
from explainrec_core.config import StorageConfig, load_config
from explainrec_core.data.ingest import ingest
from explainrec_core.errors import ConfigError, StorageError
from explainrec_core.paths import CHAMPION, CHAMPION_ADAPTER
from explainrec_core.storage import KEEP_VERSIONS, LocalStore, effective_settings, localize, open_store
from explainrec_core.storage.s3 import S3Store
from explainrec_dagster.resources import ExplainRecSettings
from explainrec_dagster.storage import ArtifactStoreResource, published_artifacts
from tests.conftest import write_params
from tests.s3_server import (
    DUMMY_KEYS,
    Hangup,
    Relay,
    aws_env,  # noqa: F401  (fixture)
    bucket,  # noqa: F401  (fixture)
    free_port,
    moto_server,  # noqa: F401  (fixture)
    start_moto,
)

runner = CliRunner()


def make_adapter(folder: Path, seed: int, n_extra: int = 1) -> Path:
    """A folder shaped like a LoRA adapter (binary weights, JSON, a card, a sub-folder), distinct per seed."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = hashlib.sha256(str(seed).encode()).digest()
    (folder / "adapter_model.safetensors").write_bytes(rng * 4096)  # 128 KiB
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "seed": seed}))
    (folder / "README.md").write_text(f"# adapter {seed}\n")
    for i in range(n_extra):
        (folder / "checkpoints" / f"part-{i}.bin").parent.mkdir(exist_ok=True)
        (folder / "checkpoints" / f"part-{i}.bin").write_bytes(bytes([seed % 256, i]) * 1000)
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def s3_store(server, bucket_name: str, endpoint: str | None = None, attempts: int = 2) -> S3Store:
    return S3Store(bucket_name, "proj", endpoint or server.endpoint, max_attempts=attempts, connect_timeout=1,
                   read_timeout=5)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return s3_store(request.getfixturevalue("moto_server"), request.getfixturevalue("bucket"))


def version_keys(store, name: str) -> dict[str, list[str]]:
    """Version id -> its stored files, as the store holds them (including unreferenced ones)."""
    root = f"{name}/.v/"
    found: dict[str, list[str]] = {}
    for key in store._keys(root):
        version, rel = key[len(root):].split("/", 1)
        found.setdefault(version, []).append(rel)
    return found


# --- round trips, verification, atomicity ---------------------------------------------------------------------

def test_file_and_folder_round_trip(store, tmp_path):
    report = tmp_path / "evaluation.md"
    report.write_text("| method | AUC |\n| llm | 0.71 |\n")
    entry = store.put_file(report, "evaluation_report")
    assert entry.sha256 == sha(report.read_bytes())
    assert store.get_file("evaluation_report", tmp_path / "back" / "eval.md").read_bytes() == report.read_bytes()

    v1 = make_adapter(tmp_path / "v1", seed=1, n_extra=2)
    first = store.put_dir(v1, "rec_adapter")
    manifest = store.manifest("rec_adapter")
    assert manifest["version"] == first.version and first.files == 5
    assert {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]} == {
        rel: (len(data), sha(data)) for rel, data in tree(v1).items()}
    dest = tmp_path / "pulled" / "rec_adapter"
    store.get_dir("rec_adapter", dest)
    assert tree(dest) == tree(v1)

    # A re-upload is a new version; the same destination is replaced whole (files v2 lacks are gone).
    v2 = make_adapter(tmp_path / "v2", seed=2, n_extra=0)
    second = store.put_dir(v2, "rec_adapter")
    assert second.version > first.version
    store.get_dir("rec_adapter", dest)
    assert tree(dest) == tree(v2)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["rec_adapter"]  # no staging left behind

    assert [(e.name, e.kind) for e in store.list()] == [("evaluation_report", "file"), ("rec_adapter", "dir")]
    assert store.exists("rec_adapter") and store.exists("evaluation_report") and not store.exists("nothing")
    for seed in range(3, 3 + KEEP_VERSIONS):
        store.put_dir(make_adapter(tmp_path / f"v{seed}", seed), "rec_adapter")
    assert len(version_keys(store, "rec_adapter")) == KEEP_VERSIONS  # older versions pruned


def test_corrupted_object_is_rejected_and_local_copy_kept(store, tmp_path, request):
    make_adapter(tmp_path / "v1", seed=1)
    version = store.put_dir(tmp_path / "v1", "rec_adapter").version
    dest = store.get_dir("rec_adapter", tmp_path / "pulled" / "rec_adapter")
    before = tree(dest)
    key = f"rec_adapter/.v/{version}/adapter_model.safetensors"
    tampered = b"\0" * len(before["adapter_model.safetensors"])  # same size, other bytes
    if isinstance(store, LocalStore):
        (store.root / key).write_bytes(tampered)
    else:
        request.getfixturevalue("moto_server").client().put_object(Bucket=store.bucket, Key=f"proj/{key}",
                                                                   Body=tampered)
    with pytest.raises(StorageError, match="sha256 .* does not match") as info:
        store.get_dir("rec_adapter", dest)
    assert store.uri(key) in str(info.value)
    assert tree(dest) == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["rec_adapter"]


def test_upload_cut_off_midway_is_never_visible(moto_server, bucket, tmp_path):
    direct = s3_store(moto_server, bucket)
    v1 = make_adapter(tmp_path / "v1", seed=1, n_extra=3)
    first = direct.put_dir(v1, "rec_adapter")

    # The endpoint dies after storing the 2nd of 6 files of a new version (a real TCP cut, then refusals).
    relay = Relay(int(moto_server.endpoint.rsplit(":", 1)[1]), down_after_responses=2)
    through_relay = s3_store(moto_server, bucket, endpoint=relay.endpoint)
    with pytest.raises(StorageError, match=f"cannot reach the S3 endpoint {relay.endpoint}"):
        through_relay.put_dir(make_adapter(tmp_path / "v2", seed=2, n_extra=3), "rec_adapter")
    assert relay.down.is_set()

    versions = version_keys(direct, "rec_adapter")
    partial = [v for v in versions if v != first.version]
    assert len(partial) == 1 and 2 <= len(versions[partial[0]]) < 6  # the failure really was half-way
    assert direct.stat("rec_adapter").version == first.version
    assert [(e.name, e.version) for e in direct.list()] == [("rec_adapter", first.version)]
    assert tree(direct.get_dir("rec_adapter", tmp_path / "pulled")) == tree(v1)

    # A first upload that never finished: the name does not exist at all.
    relay = Relay(int(moto_server.endpoint.rsplit(":", 1)[1]), down_after_responses=1)
    with pytest.raises(StorageError, match="cannot reach"):
        s3_store(moto_server, bucket, endpoint=relay.endpoint).put_dir(tmp_path / "v1", "new_adapter")
    assert version_keys(direct, "new_adapter") and not direct.exists("new_adapter")
    with pytest.raises(StorageError, match=f"s3://{bucket}/proj/new_adapter does not exist"):
        direct.get_dir("new_adapter", tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert [e.name for e in direct.list()] == ["rec_adapter"]

    # Later complete uploads prune what the cut-off one left behind.
    for seed in range(3, 3 + KEEP_VERSIONS):
        direct.put_dir(make_adapter(tmp_path / f"v{seed}", seed), "rec_adapter")
    assert partial[0] not in version_keys(direct, "rec_adapter")


# --- errors people see --------------------------------------------------------------------------------------------

def test_endpoint_down_fails_fast_after_bounded_retries(aws_env):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        S3Store("some-bucket", "proj", endpoint, max_attempts=3, connect_timeout=1, read_timeout=1).exists("x")
    assert time.monotonic() - start < 5
    assert f"cannot reach the S3 endpoint {endpoint}" in str(info.value) and "after 3 attempt(s)" in str(info.value)


@pytest.mark.parametrize("attempts", [1, 3])
def test_retries_are_the_configured_number(aws_env, attempts):
    hangup = Hangup()  # accepts, then hangs up: each attempt is one connection
    try:
        with pytest.raises(StorageError, match=f"after {attempts} attempt"):
            S3Store("some-bucket", "", hangup.endpoint, max_attempts=attempts, connect_timeout=1,
                    read_timeout=1).get_file("x", Path("/nonexistent/x"))
    finally:
        hangup.close()
    assert hangup.attempts == attempts


def test_missing_objects_and_buckets_are_named(moto_server, bucket, tmp_path):
    store = s3_store(moto_server, bucket)
    with pytest.raises(StorageError, match=f"^s3://{bucket}/proj/nope does not exist$"):
        store.get_file("nope", tmp_path / "x")
    with pytest.raises(StorageError, match=f"^s3://{bucket}/nothing/ does not exist"):
        localize(f"s3://{bucket}/nothing/", tmp_path / "cache", StorageConfig(endpoint_url=moto_server.endpoint))
    with pytest.raises(StorageError, match="no bucket name"):
        localize("s3:///key", tmp_path / "cache")
    missing = s3_store(moto_server, "no-such-bucket-here")
    (tmp_path / "f.txt").write_text("f\n")
    for action in (lambda: missing.get_file("x", tmp_path / "x"), lambda: missing.exists("x"),
                   lambda: missing.put_file(tmp_path / "f.txt", "x"), missing.list):
        with pytest.raises(StorageError, match=f"bucket s3://no-such-bucket-here does not exist at "
                                               f"{moto_server.endpoint}"):
            action()
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def auth_server():
    """A second moto server that checks every request's signature against its IAM users (moto's IAM-auth mode)."""
    server = start_moto()
    try:
        iam = server.client("iam")
        iam.create_user(UserName="pipeline")
        key = iam.create_access_key(UserName="pipeline")["AccessKey"]
        iam.put_user_policy(UserName="pipeline", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        server.client().create_bucket(Bucket="auth-bucket")
        # Set-up done unauthenticated; from here on authenticate every request. This is the server-mode form of
        # moto's INITIAL_NO_AUTH_ACTION_COUNT setting (what moto's set_initial_no_auth_action_count does).
        request = urllib.request.Request(f"{server.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})  # a form body would be parsed away
        with urllib.request.urlopen(request) as reply:
            assert json.load(reply)["status"] == "ok"
        yield server, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        server.stop()


def test_wrong_credentials_name_the_aws_error(auth_server, aws_env, monkeypatch, tmp_path):
    server, key_id, secret = auth_server
    report = tmp_path / "r.md"
    report.write_text("ok\n")

    def store():
        return S3Store("auth-bucket", "proj", server.endpoint, max_attempts=1)

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    store().put_file(report, "report")  # the right key works: the server really checks, it does not refuse all
    assert store().get_file("report", tmp_path / "back.md").read_text() == "ok\n"

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret[:-4] + "XXXX")
    with pytest.raises(StorageError, match="rejected the credentials .*SignatureDoesNotMatch.*AWS credential chain"):
        store().exists("report")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    with pytest.raises(StorageError, match="rejected the credentials .*InvalidAccessKeyId.*AWS credential chain"):
        store().put_file(report, "report")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match="no usable AWS credentials .*AWS credential chain"):
        store().list()


def test_settings_validation_and_environment_overrides(tmp_path, monkeypatch, aws_env):
    params = tmp_path / "params.yaml"
    params.write_text("storage:\n  backend: s3\n  aws_secret_access_key: abc\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['aws_secret_access_key'\]"):  # no keys in params
        load_config(params)
    params.write_text("storage:\n  backend: gcs\n")
    with pytest.raises(ConfigError, match=f"{params}: storage:backend: expected 'local' or 's3', got 'gcs'"):
        load_config(params)
    params.write_text("storage:\n  backend: s3\n  bucket: from-params\n  endpoint_url: http://params:1\n")
    cfg = load_config(params)
    assert effective_settings(cfg.storage).bucket == "from-params"
    monkeypatch.setenv("EXPLAINREC_S3_BUCKET", "from-env")
    monkeypatch.setenv("EXPLAINREC_S3_PREFIX", "team/x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    store = open_store(cfg, tmp_path)
    assert isinstance(store, S3Store) and store.uri("a") == "s3://from-env/team/x/a"
    assert store.endpoint == "http://127.0.0.1:1"
    monkeypatch.setenv("EXPLAINREC_STORAGE_BACKEND", "local")
    monkeypatch.setenv("EXPLAINREC_STORAGE_DIR", "published")
    assert open_store(cfg, tmp_path).uri() == str(tmp_path / "published")
    monkeypatch.setenv("EXPLAINREC_STORAGE_BACKEND", "s4")
    with pytest.raises(ConfigError, match="got 's4' .*environment"):
        open_store(cfg, tmp_path)
    monkeypatch.setenv("EXPLAINREC_STORAGE_BACKEND", "s3")
    monkeypatch.delenv("EXPLAINREC_S3_BUCKET")
    params.write_text("storage:\n  backend: s3\n")
    with pytest.raises(ConfigError, match="storage:bucket is empty"):
        open_store(load_config(params), tmp_path)


# --- raw inputs from s3:// ----------------------------------------------------------------------------------------

def test_localize_s3_raw_folder_ingests_like_the_local_one(moto_server, bucket, ml100k_raw, tmp_path, monkeypatch):
    client = moto_server.client()
    for path in sorted(ml100k_raw.iterdir()):
        client.upload_file(str(path), bucket, f"ml-100k/{path.name}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)  # the endpoint from the environment
    cache = tmp_path / "cache"
    uri = f"s3://{bucket}/ml-100k/"

    local = localize(uri, cache)
    assert local.is_relative_to(cache) and tree(local) == tree(ml100k_raw)
    assert localize(uri, cache) == local and localize(uri.rstrip("/"), cache) == local  # cached, not refetched
    assert localize(str(ml100k_raw), cache) == ml100k_raw  # local paths pass through
    assert [p.name for p in local.parent.iterdir()] == [local.name]  # no staging folder left

    from_s3 = ingest("ml-100k", local, tmp_path / "from_s3")
    from_disk = ingest("ml-100k", ml100k_raw, tmp_path / "from_disk")
    assert from_s3 == from_disk and from_s3["n_interactions"] == 100_000
    assert tree(tmp_path / "from_s3") == tree(tmp_path / "from_disk")

    # the pipeline's ingest step with data.raw_dir = s3://...: the same tables
    from explainrec_core.config import load_config
    from explainrec_core.pipeline import run_step
    from tests.conftest import write_params

    monkeypatch.setenv("EXPLAINREC_CACHE", str(tmp_path / "explainrec_cache"))
    project = tmp_path / "project"
    project.mkdir()
    write_params(project, data={"raw_dir": uri, "processed_dir": "data/processed"})
    # the pipeline's ingest also reports (and writes) the simulated stream and accepted incoming rows: none here
    assert run_step("ingest", load_config(project / "params.yaml"), project) == {
        **from_disk, "stream_held_out": 0, "incoming_accepted": 0}
    (project / "data/processed/stream_holdout.parquet").unlink()
    assert tree(project / "data/processed") == tree(tmp_path / "from_disk")

    single = localize(f"s3://{bucket}/ml-100k/ml-100k.user", cache)
    assert single.name == "ml-100k.user" and single.read_bytes() == (ml100k_raw / "ml-100k.user").read_bytes()

    # Content-addressed: a changed object gives a new folder; the old one stays as it was.
    client.put_object(Bucket=bucket, Key="ml-100k/ml-100k.user", Body=b"user_id:token\n1\n")
    changed = localize(uri, cache)
    assert changed != local and (changed / "ml-100k.user").read_bytes() == b"user_id:token\n1\n"
    assert tree(local) == tree(ml100k_raw)


# --- publishing pipeline outputs: CLI, Dagster, DVC ---------------------------------------------------------------

def make_outputs(root: Path) -> dict[str, Path]:
    adapter = make_adapter(root / CHAMPION_ADAPTER, seed=7)
    (root / "reports").mkdir(parents=True, exist_ok=True)
    (root / "reports" / "evaluation.md").write_text("# Evaluation\n\n| method | AUC |\n")
    (root / "reports" / "evaluation.html").write_text("<html><body>Evaluation</body></html>\n")
    return {CHAMPION: adapter, "evaluation_report": root / "reports" / "evaluation.md",
            "evaluation_html": root / "reports" / "evaluation.html"}


def test_the_published_champion_is_the_served_model(tmp_path):
    """`storage push` / `published_artifacts` publish the adapter that `explain`/`recommend` load, nothing else."""
    from explainrec_core import paths, pipeline
    from explainrec_core.storage import DEFAULT_PUBLISH

    cfg = load_config(write_params(tmp_path))
    adapters = [name for name in DEFAULT_PUBLISH if name.endswith("adapter")]
    assert adapters == [paths.CHAMPION]
    assert pipeline.outputs(cfg, tmp_path)[paths.CHAMPION] == tmp_path / paths.CHAMPION_ADAPTER


def test_cli_push_ls_pull(moto_server, bucket, tmp_path, monkeypatch):
    write_params(tmp_path, storage={"backend": "s3", "bucket": bucket, "endpoint_url": moto_server.endpoint,
                                    "max_attempts": 2})
    outputs = make_outputs(tmp_path)
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, ["storage", "push"])
    assert result.exit_code == 0, result.output
    assert f"{CHAMPION}: s3://{bucket}/explainrec/{CHAMPION} (version " in result.output
    result = runner.invoke(app, ["storage", "ls"])
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in outputs)

    result = runner.invoke(app, ["storage", "pull", CHAMPION, "--to", "back/adapter"])
    assert result.exit_code == 0, result.output
    assert tree(tmp_path / "back/adapter") == tree(outputs[CHAMPION])
    result = runner.invoke(app, ["storage", "pull", "evaluation_html", "--to", "back/eval.html"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "back/eval.html").read_bytes() == outputs["evaluation_html"].read_bytes()

    result = runner.invoke(app, ["storage", "push", "rec_adaptor"])
    assert result.exit_code == 2 and "unknown artifact 'rec_adaptor'" in result.output
    result = runner.invoke(app, ["storage", "pull", "alpaca_adapter", "--to", "x"])
    assert result.exit_code == 2 and f"s3://{bucket}/explainrec/alpaca_adapter does not exist" in result.output
    (tmp_path / "reports" / "evaluation.md").unlink()
    result = runner.invoke(app, ["storage", "push", CHAMPION, "evaluation_report"])
    assert result.exit_code == 2 and "evaluation.md" in result.output and "missing" in result.output


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_dagster_publishes_to_the_store_the_setting_picks(backend, moto_server, bucket, tmp_path):
    write_params(tmp_path, storage={"backend": backend, "local_dir": "published", "bucket": bucket,
                                    "endpoint_url": moto_server.endpoint, "max_attempts": 2})
    outputs = make_outputs(tmp_path)
    result = dg.materialize([published_artifacts], instance=dg.DagsterInstance.ephemeral(), resources={
        "settings": ExplainRecSettings(root=str(tmp_path)), "artifact_store": ArtifactStoreResource()})
    assert result.success
    metadata = result.asset_materializations_for_node("published_artifacts")[0].metadata

    store = open_store(load_config(tmp_path / "params.yaml"), tmp_path)
    assert isinstance(store, LocalStore if backend == "local" else S3Store)
    assert metadata["store"].value == store.uri()
    assert metadata[CHAMPION].value["version"] == store.stat(CHAMPION).version
    assert tree(store.get_dir(CHAMPION, tmp_path / "back")) == tree(outputs[CHAMPION])
    assert store.get_file("evaluation_report", tmp_path / "e.md").read_bytes() == \
        outputs["evaluation_report"].read_bytes()
    in_bucket = moto_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    assert (tmp_path / "published").is_dir() == (backend == "local") and (in_bucket > 0) == (backend == "s3")


def test_dvc_remote_on_s3_push_then_pull(moto_server, bucket, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    # Credentials only in the subprocesses' environment; the endpoint comes from params.yaml.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(DUMMY_KEYS, AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", DVC_NO_ANALYTICS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def run(*cmd: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    dvc = (sys.executable, "-m", "dvc")
    run("git", "init", "-q")
    run(*dvc, "init", "-q")
    data = repo / "data" / "sample.bin"
    data.parent.mkdir()
    payload = os.urandom(300_000)
    data.write_bytes(payload)
    run(*dvc, "add", "-q", "data/sample.bin")

    write_params(repo, storage={"backend": "s3", "bucket": bucket, "prefix": "team",
                                "endpoint_url": moto_server.endpoint})
    monkeypatch.chdir(repo)
    result = runner.invoke(app, ["storage", "dvc-remote"])
    assert result.exit_code == 0, result.output
    config = (repo / ".dvc" / "config").read_text()
    assert f"url = s3://{bucket}/team/dvc" in config and f"endpointurl = {moto_server.endpoint}" in config
    assert "testing" not in config and "secret" not in config  # no credentials written

    run(*dvc, "push", "-q")
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys and all(k.startswith("team/dvc/files/md5/") for k in keys)
    shutil.rmtree(repo / ".dvc" / "cache")
    data.unlink()
    run(*dvc, "pull", "-q")
    assert data.read_bytes() == payload
