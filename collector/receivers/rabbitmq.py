"""RabbitMQ tap: its own queue bound to a service exchange, acked only after the commit.

The tap declares ``sagalens.tap.<exchange>`` (or a configured name) and binds it with
each configured key, so it receives a copy of every message while the services keep
their own queues untouched. Messages are collected up to ``batch_size`` or
``batch_ms``, decoded, written in one commit and then acknowledged with a single
``multiple`` ack. Several batches are in flight at once (the prefetch window), so the
broker keeps delivering while earlier batches commit.

Consuming and decoding run in a worker process of the tap's own
(``collector.receivers.rabbitmq_worker``), which speaks AMQP through pika and hands over
each batch as Arrow tables; this side commits the batches in order and tells the worker
what to acknowledge. When the broker connection drops the worker says why and exits, the
tap stops with that reason and its supervisor starts it again, which re-declares the
queue; messages whose ack was lost come back and are counted as duplicates by the store
(their event key is unchanged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import TYPE_CHECKING

from collector.receivers.rabbitmq_worker import Consuming, Failed, encode_frame, read_frame
from collector.receivers.taps import Pending, TapConfig, TapStats, commit, shown_url

if TYPE_CHECKING:
    from collector.service import Collector

log = logging.getLogger("sagalens.taps.rabbitmq")

STOP_TIMEOUT_S = 5.0
WORKERS = 2


async def run_rabbitmq_tap(
    collector: Collector, tap: TapConfig, stats: TapStats | None = None
) -> None:
    """Consume until cancelled; raise when a worker stops (the supervisor restarts the tap).

    ``WORKERS`` worker processes consume the tap's queue side by side, each with its own
    connection and prefetch window; the store does not care in which order batches land.
    """
    stats = stats or TapStats(tap.kind, shown_url(tap.url))
    runs = [asyncio.create_task(_run_worker(collector, tap, stats)) for _ in range(WORKERS)]
    try:
        done, _ = await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
        for run in done:
            run.result()
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)


async def _run_worker(collector: Collector, tap: TapConfig, stats: TapStats) -> None:
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "collector.receivers.rabbitmq_worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**24,
    )
    assert worker.stdin is not None and worker.stdout is not None
    control = worker.stdin
    previous: asyncio.Task[None] | None = None
    reason = ""
    try:
        control.write(encode_frame(tap))
        await control.drain()
        while (frame := await read_frame(worker.stdout)) is not None:
            if isinstance(frame, Consuming):
                stats.connected(
                    tap.name, f"consuming {tap.queue} (bindings {', '.join(tap.bindings)})"
                )
                continue
            if isinstance(frame, Failed):
                reason = frame.reason
                continue
            messages, last_tag, prepared = frame
            pending = Pending(prepared=prepared, acks=[last_tag], messages=messages)
            # Commit this batch while the next one arrives; acks stay in delivery order.
            previous = asyncio.create_task(
                _commit_then_ack(collector, control, pending, stats, previous, tap.name)
            )
        code = await worker.wait()
        raise ConnectionError(
            reason or f"the tap's worker for {shown_url(tap.url)} stopped (exit status {code})"
        )
    finally:
        if previous is not None:
            previous.cancel()
        await _stop(worker)


async def _stop(worker: asyncio.subprocess.Process) -> None:
    """Close the worker's input (it stops consuming and exits); kill it if it lingers."""
    if worker.returncode is not None:
        return
    if worker.stdin is not None:
        with contextlib.suppress(Exception):
            worker.stdin.close()
    try:
        await asyncio.wait_for(worker.wait(), STOP_TIMEOUT_S)
    except (TimeoutError, asyncio.CancelledError):
        worker.kill()
        with contextlib.suppress(Exception):
            await worker.wait()


async def _commit_then_ack(
    collector: Collector,
    control: asyncio.StreamWriter,
    pending: Pending,
    stats: TapStats,
    previous: asyncio.Task[None] | None,
    name: str,
) -> None:
    ok = await commit(collector, pending, stats, name)
    if previous is not None:
        await previous
    if ok and pending.acks and pending.acks[-1]:
        try:
            control.write(encode_frame(pending.acks[-1]))
            await control.drain()
        except (ConnectionError, RuntimeError) as exc:  # the worker is gone: it will be redelivered
            log.info("tap %s: could not pass an ack to the worker (%s)", name, exc)
