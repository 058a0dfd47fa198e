"""Shared fixtures: a really started collector process on free ports, and broker checks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")


@dataclass
class RunningCollector:
    url: str
    grpc: str
    db: Path
    proc: subprocess.Popen[bytes]
    token: str = ""
    log: Path = field(default_factory=Path)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, params=params, headers=self.headers(), timeout=10)
        r.raise_for_status()
        return r.json()

    def counts(self) -> dict[str, int]:
        return dict(self.get("/api/v1/stats")["counts"])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


@contextlib.contextmanager
def running_collector(
    tmp_path: Path, *args: str, token: str = "", config: str = "", db: Path | None = None
) -> Iterator[RunningCollector]:
    http_port, grpc_port = free_port(), free_port()
    db = db or tmp_path / "store.duckdb"
    log = tmp_path / f"collector-{http_port}.log"
    cmd = [
        sys.executable,
        "-m",
        "collector",
        "collector",
        "--db",
        str(db),
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        *args,
    ]
    if token:
        cmd += ["--token", token]
    if config:
        cmd += ["--config", config]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    running = RunningCollector(
        f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", db, proc, token, log
    )

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited: {log.read_text()}")
        try:
            return httpx.get(running.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=30)
        yield running
    finally:
        running.stop()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[RunningCollector]:
    with running_collector(tmp_path) as c:
        yield c


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a reason when a broker is unreachable; fail under SAGALENS_REQUIRE_BROKERS=1."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} not reachable at {host}:{port} ({exc})"
    if os.environ.get("SAGALENS_REQUIRE_BROKERS") == "1":
        pytest.fail(message + " and SAGALENS_REQUIRE_BROKERS=1")
    pytest.skip(message)
