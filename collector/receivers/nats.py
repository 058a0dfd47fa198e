"""NATS JetStream tap: a durable pull consumer of its own, acked only after the commit.

The tap binds to the stream that covers each configured subject (or creates the stream
when ``create_stream`` is set) and keeps its own durable consumer, so the services'
consumers are untouched. The consumer's position lives in the server (file storage),
so a server restart resumes where the last acknowledged batch ended; messages whose
ack was lost are redelivered and the store counts them as duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import nats
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import NotFoundError

from collector.normalize.cloudevents import Decoded, decode_nats, sample_of
from collector.normalize.records import Rejection
from collector.receivers.taps import Pending, TapConfig, TapError, TapStats, commit, shown_url

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

    from collector.service import Collector

log = logging.getLogger("sagalens.taps.nats")
# The client reconnects by itself, this long after each failed attempt.
_RETRY_S = 0.5


def _decode_all(messages: list[Msg], tap: TapConfig) -> Pending:
    pending = Pending()
    now = time.time_ns()
    for msg in messages:
        stream, sequence = "", 0
        with contextlib.suppress(Exception):
            meta = msg.metadata
            stream, sequence = meta.stream, meta.sequence.stream
        try:
            decoded = decode_nats(
                msg.data,
                msg.headers,
                subject=msg.subject,
                stream=stream,
                sequence=sequence,
                received_ns=now,
                type_field=tap.type_field,
                max_bytes=tap.max_message_bytes,
            )
        except Exception as exc:  # a rejection, not a tap that stops on it at every redelivery
            reason = f"message could not be decoded: {type(exc).__name__}: {exc}"
            decoded = Decoded(
                rejections=[(0, Rejection(f"nats:{msg.subject}", reason, sample_of(msg.data)))]
            )
        # A message that yields only rejections is poison: terminate it instead of acking,
        # so the server never redelivers it.
        pending.add(decoded, (msg, bool(decoded.rejections) and not decoded.events))
    return pending


async def _stream_for(js: JetStreamContext, tap: TapConfig, subject: str) -> str:
    if tap.create_stream:
        try:
            await js.stream_info(tap.stream)
        except NotFoundError:
            await js.add_stream(name=tap.stream, subjects=list(tap.subjects))
            log.warning(
                "tap %s: created stream %s for %s", tap.name, tap.stream, ", ".join(tap.subjects)
            )
        return tap.stream
    if tap.stream:
        return tap.stream
    try:
        return await js.find_stream_name_by_subject(subject)
    except NotFoundError:
        raise TapError(
            f"no JetStream stream covers subject {subject!r}; name one with 'stream', "
            "or set 'stream' and 'create_stream: true' to have the tap create it"
        ) from None


async def run_nats_tap(collector: Collector, tap: TapConfig, stats: TapStats | None = None) -> None:
    """Consume until cancelled."""
    stats = stats or TapStats(tap.kind, shown_url(tap.url))
    consuming = ""

    async def on_error(exc: Exception) -> None:
        # The client retries by itself, at start too; without this an unreachable server
        # would go unmentioned.
        if stats.state != "connected":
            stats.failed(tap.name, f"cannot connect: {_describe(exc)}", _RETRY_S, _RETRY_S)
        else:
            log.info("tap %s: %s", tap.name, exc)

    async def on_disconnect() -> None:
        if stats.state == "connected":
            stats.failed(tap.name, "lost the connection to the server", _RETRY_S, _RETRY_S)

    async def on_reconnect() -> None:
        stats.connected(tap.name, consuming)

    nc = await nats.connect(
        tap.url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=_RETRY_S,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        name=tap.name,
    )
    try:
        js = nc.jetstream()
        loops = []
        consumers: list[str] = []
        for i, subject in enumerate(tap.subjects):
            stream = await _stream_for(js, tap, subject)
            # One durable per subject: filter_subjects needs a newer server than many run.
            durable = tap.durable_name if len(tap.subjects) == 1 else f"{tap.durable_name}_{i}"
            config = api.ConsumerConfig(
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=tap.ack_wait_s,
                max_ack_pending=max(2 * tap.batch_size, 100),
                deliver_policy=api.DeliverPolicy.ALL,
            )
            sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
            consumers.append(f"{subject} from stream {stream} as {durable}")
            loops.append(_fetch_loop(collector, tap, sub, stats))
        consuming = "consuming " + ", ".join(consumers)
        stats.connected(tap.name, consuming)
        await asyncio.gather(*loops)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def _fetch_loop(collector: Collector, tap: TapConfig, sub: Any, stats: TapStats) -> None:
    wait = max(tap.batch_ms / 1000, 0.05)
    while True:
        try:
            messages = await sub.fetch(tap.batch_size, timeout=max(wait, 1.0))
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.NoServersError,
            nats.errors.Error,
        ) as exc:
            log.info("tap %s: fetch failed (%s); retrying", tap.name, exc)
            await asyncio.sleep(0.5)
            continue
        pending = await asyncio.to_thread(_decode_all, messages, tap)
        if not await commit(collector, pending, stats, tap.name):
            return
        for msg, poison in pending.acks:
            try:
                await (msg.term() if poison else msg.ack())
            except Exception as exc:
                log.info(
                    "tap %s: ack after commit failed (%s); redelivery is deduplicated",
                    tap.name,
                    exc,
                )
