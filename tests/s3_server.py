"""A real S3 endpoint for tests: moto's standalone server over HTTP, plus a TCP relay that can take it down.

Import the fixtures into a test module (`from tests.s3_server import ...`). The server runs as its own process
(`moto_server -H 127.0.0.1 -p PORT`); credentials are dummy values set in the test's environment only.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
DUMMY_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MotoServer:
    endpoint: str
    proc: subprocess.Popen

    def client(self, service: str = "s3", **keys):
        return boto3.session.Session().client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                                              **{k.lower(): v for k, v in (keys or DUMMY_KEYS).items()})

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_moto(env: dict[str, str] | None = None) -> MotoServer:
    port = free_port()
    proc = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    server = MotoServer(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + 30
    while True:  # ready when its management API answers
        try:
            with urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1):
                return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"moto_server on port {port} did not start (exit code {proc.poll()})") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Dummy credentials in this test's environment only; nothing from the machine's AWS set-up leaks in."""
    for var in [v for v in os.environ if v.startswith(("AWS_", "EXPLAINREC_S3_", "EXPLAINREC_STORAGE_"))]:
        monkeypatch.delenv(var)
    for var, value in DUMMY_KEYS.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never wait for an instance-metadata endpoint


@pytest.fixture
def bucket(moto_server, aws_env) -> str:
    """A fresh bucket on the shared server for each test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=name)
    return name


class Relay:
    """A TCP relay in front of a real server that can go down on cue, like an endpoint that dies mid-upload.

    `down_after_responses=N`: after relaying the N-th successful HTTP response, close every connection and
    stop listening, so the client's next requests and retries are refused.
    """

    _OK = re.compile(rb"HTTP/1\.[01] 200 ")

    def __init__(self, target_port: int, down_after_responses: int | None = None):
        self.target_port, self.limit = target_port, down_after_responses
        self.responses, self.down = 0, threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.down.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, responses: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
                if responses and self.limit is not None:
                    with self._lock:
                        self.responses += len(self._OK.findall(data))
                        cut = self.responses >= self.limit
                    if cut:
                        self.go_down()
                        return
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def go_down(self) -> None:
        self.down.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


class Hangup:
    """An endpoint that accepts each connection and closes it at once; counts the attempts it saw."""

    def __init__(self):
        self.attempts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.attempts += 1
            conn.close()

    def close(self) -> None:
        self.listener.close()
