"""`sagalens demo`, the README's first command, really starts and shows sagas."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port, require_service, wait_for


def _demo(tmp_path: Path, http_port: int, grpc_port: int, dash_port: int, amqp: str) -> list[str]:
    """The demo command on these ports, its store in ``tmp_path``."""
    return [
        sys.executable,
        "-m",
        "collector",
        "demo",
        "--db",
        str(tmp_path / "d.duckdb"),
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--port",
        str(dash_port),
        "--amqp",
        amqp,
    ]


@pytest.mark.parametrize(
    ("amqp", "bus"),
    [
        # the machine's RabbitMQ: the shop's services talk over it, the collector taps it
        ("amqp://guest:guest@127.0.0.1:5672/", "on RabbitMQ"),
        # a fresh machine without a broker: an in-process bus, the same sagas
        ("amqp://guest:guest@127.0.0.1:9/", "on an in-process bus"),
    ],
    ids=["rabbitmq", "no-broker"],
)
def test_demo_serves_sagas_from_both_systems_and_stops_on_ctrl_c(
    tmp_path: Path, amqp: str, bus: str
) -> None:
    if bus == "on RabbitMQ":
        require_service("RabbitMQ", "127.0.0.1", 5672)
    http_port, grpc_port, dash_port = free_port(), free_port(), free_port()
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _demo(tmp_path, http_port, grpc_port, dash_port, amqp),
            stdout=out,
            stderr=subprocess.STDOUT,
            # as a shell starts a background job: SIGINT ignored; Ctrl-C must still stop it
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
            if bus != "on RabbitMQ"
            else None,
        )
    api = f"http://127.0.0.1:{http_port}/api/v1/sagas"

    def rules() -> set[str]:
        if proc.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            rows = httpx.get(api, params={"limit": 200}, timeout=5).json()["sagas"]
        except (httpx.HTTPError, ValueError):
            return set()
        return {r["identity_rule"] for r in rows}

    try:
        # Orchestrated sagas (saga.* and Temporal-style) and choreographed ones (business key).
        seen = wait_for(lambda: len(rules()) >= 3 and rules(), timeout=60, interval=1)
        assert "saga.id" in seen
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid), "-f", "collector collector"],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert len(children) == 1, children
        cmdline = Path(f"/proc/{children[0]}/cmdline").read_bytes()
        assert b"guest:guest@" not in cmdline  # the tap reaches the collector by environment
        if bus == "on RabbitMQ":  # the choreographed events reached sagalens through the tap
            # A saga's type can come with a later record: wait for one typed as such.
            rows = wait_for(
                lambda: httpx.get(api, params={"type": "OrderFulfillment"}, timeout=5).json()[
                    "sagas"
                ],
                timeout=30,
            )
            detail = httpx.get(f"{api}/{rows[0]['saga_key']}", timeout=5).json()
            assert {e["transport"] for e in detail["events"]} == {"amqp"}, detail["events"]
            assert asyncio.run(_exchange_exists(amqp, f"sagalens.demo.shop.{http_port}"))
        page = httpx.get(f"http://127.0.0.1:{dash_port}/", timeout=10)
        assert page.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()  # leave nothing running behind a failed test
            proc.wait(timeout=60)
            raise
    assert code == 0, log.read_text()
    text = log.read_text()
    assert f"choreographed system {bus}" in text, text
    assert "Look at:" in text and "Traceback" not in text, text
    assert "amqp://guest:***@127.0.0.1" in text and "guest:guest@" not in text, text  # no password
    if bus == "on RabbitMQ":
        # An exchange of its own, so another demo on this broker never takes its events,
        # and gone with the demo's queues: nothing is left on the broker.
        exchange = f"sagalens.demo.shop.{http_port}"
        assert f"exchange {exchange}, tapped" in text, text
        wait_for(lambda: not asyncio.run(_exchange_exists(amqp, exchange)), timeout=30)


async def _exchange_exists(url: str, exchange: str) -> bool:
    import aiormq

    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        try:
            await channel.exchange_declare(exchange, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True
    finally:
        await connection.close()


def test_a_second_ctrl_c_while_the_demo_stops_still_stops_everything(tmp_path: Path) -> None:
    http_port, dash_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            # an unreachable broker: the demo runs on an in-process bus
            _demo(tmp_path, http_port, free_port(), dash_port, "amqp://guest:guest@127.0.0.1:9/"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    children: list[psutil.Process] = []
    try:
        wait_for(lambda: "Press Ctrl-C to stop." in log.read_text(), timeout=60)
        children = psutil.Process(proc.pid).children()
        assert len(children) == 2, children  # the collector and the dashboard
        # An impatient user presses Ctrl-C again while the demo flushes its traffic.
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        # Neither the collector nor the dashboard is left running on its own.
        wait_for(lambda: not any(_running(c) for c in children), timeout=30)
    finally:
        for p in (proc, *children):  # leave nothing running behind a failed test
            if _running(p):
                p.kill()
    assert "stopped, store closed" in log.read_text(), log.read_text()


def _running(p: subprocess.Popen[bytes] | psutil.Process) -> bool:
    if isinstance(p, subprocess.Popen):
        return p.poll() is None
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
