"""Kafka tap: a consumer group of its own; offsets are committed only after the DB commit.

Records are read with auto-commit off, decoded, written in one commit and only then
is the group's offset advanced. A crash between the two replays the records, which
the store counts as duplicates (CloudEvents keep source + id; plain records use
topic/partition/offset as their id).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from collector.normalize.cloudevents import decode_kafka
from collector.receivers.taps import Pending, TapConfig, TapStats, commit

if TYPE_CHECKING:
    from collector.service import Collector

log = logging.getLogger("sagalens.taps.kafka")


def decode_records(records: list[Any], tap: TapConfig, received_ns: int) -> Pending:
    """Decode aiokafka ``ConsumerRecord``s (no I/O)."""
    pending = Pending()
    for record in records:
        decoded = decode_kafka(
            record.value,
            list(record.headers or ()),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            timestamp_ms=record.timestamp or 0,
            received_ns=received_ns,
            type_field=tap.type_field,
            max_bytes=tap.max_message_bytes,
        )
        pending.add(decoded, record)
    return pending


async def run_kafka_tap(
    collector: Collector, tap: TapConfig, stats: TapStats | None = None
) -> None:
    """Consume until cancelled."""
    from aiokafka import AIOKafkaConsumer

    stats = stats or TapStats(tap.kind, tap.bootstrap)
    consumer = AIOKafkaConsumer(
        *tap.topics,
        bootstrap_servers=tap.bootstrap,
        group_id=tap.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=max(tap.max_message_bytes, 1024 * 1024),
        client_id=f"sagalens-{tap.name}",
    )
    await consumer.start()
    stats.connected(tap.name, f"consuming {', '.join(tap.topics)} as group {tap.group}")
    try:
        while True:
            batches = await consumer.getmany(
                timeout_ms=max(tap.batch_ms, 50), max_records=tap.batch_size
            )
            records = [r for part in batches.values() for r in part]
            if not records:
                continue
            pending = decode_records(records, tap, time.time_ns())
            if not await commit(collector, pending, stats, tap.name):
                return
            await consumer.commit()
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
