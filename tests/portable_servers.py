"""Beam's own Job API servers for the portable-runner tests, on 127.0.0.1, started and stopped by the tests.

Beam binds its gRPC servers to `[::]` (all interfaces) in many places (job service, artifact
staging, the runner's control/data/state/logging servers, the worker pool). `LOOPBACK_ONLY` is
prepended to every server process, and `bind_loopback_only` patches the test process (where the
LOOPBACK worker pool runs): `grpc.Server.add_insecure_port('[::]:P')` becomes `127.0.0.1:P`.

- `job_service()`: `python -m apache_beam.runners.portability.local_job_service_main --port P`.
- `worker_pool(python_dir)`: `python -m apache_beam.runners.worker.worker_pool_main --service_port W`;
  its SDK workers are started as `python -c ...` from PATH, so `python_dir` (put first on PATH) says
  which Python they get: the venv's (with Beam and flanmix) or one without apache_beam.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from emulators import _stop, _wait_for, free_port

ROOT = Path(__file__).resolve().parents[1]

LOOPBACK_ONLY = """\
import grpc._server as _s
_add = _s._Server.add_insecure_port
def _loopback(self, address):
    return _add(self, address.replace('[::]', '127.0.0.1', 1))
_s._Server.add_insecure_port = _loopback
"""


def bind_loopback_only(monkeypatch) -> None:
    import grpc._server as server

    add = server._Server.add_insecure_port
    monkeypatch.setattr(server._Server, "add_insecure_port",
                        lambda self, address: add(self, address.replace("[::]", "127.0.0.1", 1)))


def _module_main(module: str) -> str:
    return LOOPBACK_ONLY + (f"import importlib.util, runpy, sys\nsys.argv[0] = importlib.util.find_spec({module!r}).origin\n"
                            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")


def _env(python_dir: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)}
    if python_dir:
        env["PATH"] = python_dir + os.pathsep + env.get("PATH", "")
    return env


@contextlib.contextmanager
def job_service():
    """Yields the job endpoint, 127.0.0.1:P."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _module_main("apache_beam.runners.portability.local_job_service_main"),
                             "--port", str(port)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc)


@contextlib.contextmanager
def worker_pool(python_dir: str):
    """Yields the pool's address for --environment_config, 127.0.0.1:W. Its workers run `python` from
    `python_dir`, with the checkout on PYTHONPATH and this LOOPBACK_ONLY patch in sitecustomize."""
    port = free_port()
    site = Path(python_dir) / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text("try:\n" + "".join(f"    {line}\n" for line in LOOPBACK_ONLY.splitlines())
                                           + "except ImportError:\n    pass\n")
    env = _env(python_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    proc = subprocess.Popen([sys.executable, "-c", _module_main("apache_beam.runners.worker.worker_pool_main"),
                             "--service_port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_for(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)  # the pool and the SDK workers it started
        _stop(proc)
