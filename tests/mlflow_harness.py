"""A real `mlflow server` (SQLite backend, temp dir, free loopback port) for integration tests,
and helpers that register versions with the official MLflow client.

Start-up takes several seconds, so one server is shared per session (`tests/integration/
test_registry_mlflow.py`); tests use unique registered-model names. `stop()` / `start()` take it
down and bring it back on the same port and database (the registry-outage scenarios).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import free_port, wait_http

STARTUP_S = 180.0


class MlflowServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        cmd = [
            str(mlflow), "server",
            "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--default-artifact-root", str(self.workdir / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        log = open(self.workdir / "mlflow.log", "ab")  # noqa: SIM115 - the server keeps it
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir
        )
        log.close()
        wait_http(f"{self.url}/health", timeout=STARTUP_S, proc=self.proc)

    def stop(self) -> None:
        """Stop the server and every worker it started (its own process group)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def register(
    client: Any,
    name: str,
    serving_url: str | None,
    *,
    upstream_model: str | None = None,
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    commit: str = "0123abc",
) -> str:
    """A finished run with params, metrics and a commit, and a new version of `name` from it;
    returns the version number."""
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # exists already
        client.create_registered_model(name)
    experiment = client.get_experiment_by_name("gateway-tests")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("gateway-tests")
    )
    run = client.create_run(
        experiment_id, run_name=f"{name}-train", tags={"mlflow.source.git.commit": commit}
    )
    for key, value in (params or {"lr": "0.001"}).items():
        client.log_param(run.info.run_id, key, value)
    for key, number in (metrics or {"eval_loss": 0.25}).items():
        client.log_metric(run.info.run_id, key, number)
    client.set_terminated(run.info.run_id)
    tags = {}
    if serving_url is not None:
        tags["serving_url"] = serving_url
    if upstream_model is not None:
        tags["upstream_model"] = upstream_model
    mv = client.create_model_version(
        name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, tags=tags
    )
    return str(mv.version)
