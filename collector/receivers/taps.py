"""Broker taps: configuration (YAML ``taps:`` entries or ``--tap`` URLs) and the shared batcher.

A tap never touches a service's own queue or consumer: RabbitMQ taps declare their own
queue bound to the exchange, NATS taps use their own durable consumer, Kafka taps their
own consumer group. Messages are acknowledged only after their rows are committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from collector.normalize.cloudevents import Decoded
from collector.normalize.records import RecordBatch
from collector.store.columns import PreparedBatch
from collector.store.writer import ClosedError, OverloadedError, StoreError

if TYPE_CHECKING:
    from collector.service import Collector

log = logging.getLogger("sagalens.taps")

KINDS = ("rabbitmq", "nats", "kafka")
DEFAULT_BATCH_SIZE = 1000
DEFAULT_BATCH_MS = 50
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


class TapConfigError(ValueError):
    """A tap entry that cannot be used; the message names the entry and the problem."""


@dataclass(frozen=True, slots=True)
class TapConfig:
    """One validated tap. Fields that do not apply to ``kind`` keep their defaults."""

    kind: str
    name: str
    url: str = ""  # amqp:// or nats:// server URL
    # rabbitmq
    exchange: str = ""
    bindings: tuple[str, ...] = ("#",)
    queue: str = ""
    durable: bool = True
    # nats
    subjects: tuple[str, ...] = ()
    stream: str = ""
    create_stream: bool = False
    durable_name: str = "sagalens"
    ack_wait_s: float = 30.0
    # kafka
    bootstrap: str = ""
    topics: tuple[str, ...] = ()
    group: str = "sagalens"
    # all
    type_from: str = ""  # "" = routing key / subject / topic; else a JSON path
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_ms: int = DEFAULT_BATCH_MS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    @property
    def type_field(self) -> str:
        return "" if self.type_from in ("", "routing_key", "subject", "topic") else self.type_from


_COMMON = {"kind", "name", "type_from", "batch_size", "batch_ms", "max_message_bytes"}
_ALLOWED = {
    "rabbitmq": _COMMON | {"url", "exchange", "bindings", "binding", "queue", "durable"},
    "nats": _COMMON
    | {"url", "subjects", "subject", "stream", "create_stream", "durable", "ack_wait"},
    "kafka": _COMMON | {"bootstrap", "topics", "topic", "group"},
}
_KIND_ALIASES = {
    "rabbitmq": "rabbitmq",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "nats": "nats",
    "kafka": "kafka",
}


def _str(entry: dict[str, Any], key: str, where: str, default: str = "") -> str:
    value = entry.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise TapConfigError(f"{where}: {key!r} must be a string, got {value!r}")
    return str(value)


def _names(entry: dict[str, Any], plural: str, singular: str, where: str) -> tuple[str, ...]:
    value = entry.get(plural, entry.get(singular))
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) and v for v in items):
        raise TapConfigError(
            f"{where}: {plural!r} must be a list of non-empty strings, got {value!r}"
        )
    return tuple(items)


def _bool(entry: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = entry.get(key, default)
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    if not isinstance(value, bool):
        raise TapConfigError(f"{where}: {key!r} must be true or false, got {value!r}")
    return value


def _number(entry: dict[str, Any], key: str, where: str, default: float, minimum: float) -> float:
    value = entry.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TapConfigError(f"{where}: {key!r} must be a number, got {value!r}") from None
    if isinstance(value, bool) or number < minimum:
        raise TapConfigError(f"{where}: {key!r} must be a number >= {minimum:g}, got {value!r}")
    return number


def parse_tap(entry: Any, index: int = 0) -> TapConfig:
    """Validate one ``taps:`` entry (a mapping) into a :class:`TapConfig`."""
    where = f"taps[{index}]"
    if not isinstance(entry, dict):
        raise TapConfigError(f"{where}: expected a mapping, got {entry!r}")
    kind = _KIND_ALIASES.get(str(entry.get("kind", "")).lower())
    if kind is None:
        raise TapConfigError(
            f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {entry.get('kind')!r}"
        )
    unknown = sorted(set(entry) - _ALLOWED[kind])
    if unknown:
        raise TapConfigError(
            f"{where} ({kind}): unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_ALLOWED[kind]))}"
        )
    common: dict[str, Any] = {
        "type_from": _str(entry, "type_from", where),
        "batch_size": int(_number(entry, "batch_size", where, DEFAULT_BATCH_SIZE, 1)),
        "batch_ms": int(_number(entry, "batch_ms", where, DEFAULT_BATCH_MS, 0)),
        "max_message_bytes": int(
            _number(entry, "max_message_bytes", where, DEFAULT_MAX_MESSAGE_BYTES, 1)
        ),
    }
    if kind == "rabbitmq":
        url = _str(entry, "url", where, "amqp://guest:guest@127.0.0.1:5672/")
        if urlsplit(url).scheme not in ("amqp", "amqps"):
            raise TapConfigError(f"{where}: 'url' must be an amqp:// or amqps:// URL, got {url!r}")
        exchange = _str(entry, "exchange", where)
        if not exchange:
            raise TapConfigError(f"{where} (rabbitmq): 'exchange' is required")
        bindings = _names(entry, "bindings", "binding", where) or ("#",)
        return TapConfig(
            kind,
            _str(entry, "name", where, f"rabbitmq:{exchange}"),
            url=url,
            exchange=exchange,
            bindings=bindings,
            queue=_str(entry, "queue", where, f"sagalens.tap.{exchange}"),
            durable=_bool(entry, "durable", where, True),
            **common,
        )
    if kind == "nats":
        url = _str(entry, "url", where, "nats://127.0.0.1:4222")
        if urlsplit(url).scheme not in ("nats", "tls"):
            raise TapConfigError(f"{where}: 'url' must be a nats:// or tls:// URL, got {url!r}")
        subjects = _names(entry, "subjects", "subject", where)
        if not subjects:
            raise TapConfigError(f"{where} (nats): 'subjects' is required (e.g. [\"orders.>\"])")
        stream = _str(entry, "stream", where)
        create = _bool(entry, "create_stream", where, False)
        if create and not stream:
            raise TapConfigError(f"{where} (nats): 'create_stream: true' needs a 'stream' name")
        durable = _str(entry, "durable", where, "sagalens")
        if not durable or any(c in durable for c in " .*>"):
            raise TapConfigError(
                f"{where} (nats): 'durable' must be a name without spaces, "
                f"dots, '*' or '>', got {durable!r}"
            )
        return TapConfig(
            kind,
            _str(entry, "name", where, f"nats:{','.join(subjects)}"),
            url=url,
            subjects=subjects,
            stream=stream,
            create_stream=create,
            durable_name=durable,
            ack_wait_s=_number(entry, "ack_wait", where, 30.0, 1.0),
            **common,
        )
    bootstrap = _str(entry, "bootstrap", where)
    if not bootstrap:
        raise TapConfigError(f"{where} (kafka): 'bootstrap' is required (host:port[,host:port])")
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if (
            not host.strip("[]")
            or not port.isascii()
            or not port.isdigit()
            or not 0 < int(port) < 65536
        ):
            raise TapConfigError(
                f"{where} (kafka): 'bootstrap' must be host:port[,host:port], "
                f"got {server.strip()!r} in {bootstrap!r}"
            )
    topics = _names(entry, "topics", "topic", where)
    if not topics:
        raise TapConfigError(f"{where} (kafka): 'topics' is required")
    return TapConfig(
        kind,
        _str(entry, "name", where, f"kafka:{','.join(topics)}"),
        bootstrap=bootstrap,
        topics=topics,
        group=_str(entry, "group", where, "sagalens") or "sagalens",
        **common,
    )


def parse_taps(entries: Any) -> list[TapConfig]:
    """Validate the ``taps:`` list of a config file."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise TapConfigError(f"taps: expected a list of tap entries, got {entries!r}")
    taps = [parse_tap(e, i) for i, e in enumerate(entries)]
    names = [t.name for t in taps]
    for name in names:
        if names.count(name) > 1:
            raise TapConfigError(f"taps: two taps are named {name!r}; give them distinct 'name's")
    return taps


_LISTS = {"binding": "bindings", "subject": "subjects", "topic": "topics"}


def shown_url(url: str) -> str:
    """A broker URL fit for logs and messages: its password masked."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def tap_from_url(url: str) -> dict[str, Any]:
    """A ``--tap`` URL → a ``taps:`` entry; tap options travel as query parameters.

    ``amqp://user:pw@host:5672/vhost?exchange=orders&binding=#&binding=audit.*``,
    ``nats://host:4222?subject=orders.>&stream=ORDERS``,
    ``kafka://host:9092,host2:9092?topic=orders&group=sagalens``.
    """
    # '#' is RabbitMQ's match-all binding key, not a fragment.
    parts = urlsplit(url, allow_fragments=False)
    kind = _KIND_ALIASES.get(parts.scheme.lower())
    if kind is None:
        raise TapConfigError(
            f"--tap {url!r}: scheme must be amqp://, amqps://, nats:// or kafka://"
        )
    entry: dict[str, Any] = {"kind": kind}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if key in _LISTS:
            entry.setdefault(_LISTS[key], []).extend(values)
        elif key in _LISTS.values():
            entry.setdefault(key, []).extend(v for value in values for v in value.split(","))
        else:
            entry[key] = values[-1]
    server = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if kind == "kafka":
        entry["bootstrap"] = parts.netloc
    else:
        entry["url"] = (
            server if parts.path not in ("", "/") or kind == "rabbitmq" else server.rstrip("/")
        )
    try:
        parse_tap(entry)
    except TapConfigError as exc:
        raise TapConfigError(
            f"--tap {url!r}: {str(exc).removeprefix('taps[0]').lstrip(': ')}"
        ) from None
    return entry


# -- running -----------------------------------------------------------------------------


@dataclass
class TapStats:
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    reconnects: int = 0


@dataclass
class Pending:
    """Decoded messages waiting for one commit, with what acknowledges them afterwards."""

    batch: RecordBatch = field(default_factory=RecordBatch)
    prepared: PreparedBatch | None = None  # already in Arrow form (decoded in a worker)
    acks: list[Any] = field(default_factory=list)
    messages: int = 0
    started: float = 0.0

    def add(self, decoded: Decoded, ack: Any) -> None:
        if not self.messages:
            self.started = time.monotonic()
        self.batch.events.extend(decoded.events)
        self.batch.rejections.extend(r for _, r in decoded.rejections)
        self.acks.append(ack)
        self.messages += 1


async def commit(collector: Collector, pending: Pending, stats: TapStats, name: str) -> bool:
    """Write a tap batch, retrying while the store is overloaded; False if the store closed.

    Acknowledgement is the caller's job, and only after this returns True.
    """
    delay = 0.05
    while True:
        try:
            result = await collector.writer.write(pending.prepared or pending.batch)
        except OverloadedError as exc:
            await asyncio.sleep(min(delay, exc.retry_after))
            delay = min(delay * 2, 1.0)
            continue
        except ClosedError:
            return False
        except StoreError:
            log.exception("tap %s: commit failed; retrying", name)
            await asyncio.sleep(1.0)
            continue
        stats.messages += pending.messages
        stats.stored += result.stored
        stats.duplicates += result.duplicates
        stats.rejected += result.rejected
        stats.batches += 1
        return True


Runner = Callable[["Collector", TapConfig], Awaitable[None]]


def _runner(kind: str) -> Runner:
    if kind == "rabbitmq":
        from collector.receivers.rabbitmq import run_rabbitmq_tap

        return run_rabbitmq_tap
    if kind == "nats":
        from collector.receivers.nats import run_nats_tap

        return run_nats_tap
    from collector.receivers.kafka import run_kafka_tap

    return run_kafka_tap


async def _supervise(collector: Collector, tap: TapConfig) -> None:
    """Run a tap forever: a crash is logged and the tap restarts, it never takes the collector down."""
    run = _runner(tap.kind)
    delay = 0.5
    while True:
        started = time.monotonic()
        try:
            await run(collector, tap)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "tap %s stopped (%s: %s); restarting in %.1fs",
                tap.name,
                type(exc).__name__,
                exc,
                delay,
            )
        if time.monotonic() - started > 30:
            delay = 0.5
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


def tap_tasks(collector: Collector) -> list[Awaitable[None]]:
    """Task factory for the server: one supervised task per configured tap."""
    taps = parse_taps(list(collector.settings.taps))
    for tap in taps:
        log.warning("sagalens collector: tap %s (%s) enabled", tap.name, tap.kind)
    return [_supervise(collector, tap) for tap in taps]
