"""Storage emulators for publishing tests, started on 127.0.0.1 by the tests themselves.

- `s3_server`: moto_server (PyPI `moto[server]`); Beam reaches it with --s3_endpoint_url and keys.
- `gcs_server`: gcp-storage-emulator (in memory), reached through STORAGE_EMULATOR_HOST. Beam's GCS
  client would first spend ~26 s per process looking for Application Default Credentials, so the
  fixture tells it, in this process only, that there are none (it then connects anonymously).

Each server gets a free port, must answer within 30 s, and is terminated (then killed) at teardown.
Import the fixtures into a test module: `from emulators import s3_server, gcs_server  # noqa: F401`.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
BUCKET = "flanmix-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{proc.args[0]} did not listen on 127.0.0.1:{port} within {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    @property
    def beam_args(self) -> list[str]:
        return [f"--s3_endpoint_url={self.endpoint}", "--s3_access_key_id=testing",
                "--s3_secret_access_key=testing", "--s3_region_name=us-east-1"]

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")


@dataclass(frozen=True)
class GCS:
    endpoint: str
    bucket: str

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.endpoint})


@pytest.fixture(scope="module")
def s3_server():
    port = free_port()
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(port, proc)
        s3 = S3(f"http://127.0.0.1:{port}", BUCKET)
        s3.client().create_bucket(Bucket=BUCKET)
        yield s3
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def gcs_server():
    from apache_beam.internal.gcp import auth

    port = free_port()
    proc = subprocess.Popen([str(BIN / "gcp-storage-emulator"), "start", "--host=127.0.0.1", f"--port={port}",
                             "--in-memory", f"--default-bucket={BUCKET}", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    patch = pytest.MonkeyPatch()
    try:
        _wait_for(port, proc)
        endpoint = f"http://127.0.0.1:{port}"
        patch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        # No Application Default Credentials here: say so instead of waiting ~26 s for the lookup.
        patch.setattr(auth._Credentials, "_credentials_init", True)
        patch.setattr(auth._Credentials, "_credentials", None)
        yield GCS(endpoint, BUCKET)
    finally:
        patch.undo()
        _stop(proc)
