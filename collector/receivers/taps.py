"""Broker taps: configuration (YAML ``taps:`` entries or ``--tap`` URLs) and the shared batcher.

A tap never touches a service's own queue or consumer: RabbitMQ taps declare their own
queue bound to the exchange, NATS taps use their own durable consumer, Kafka taps their
own consumer group. Messages are acknowledged only after their rows are committed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
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
RETRY_MAX_S = 10.0  # longest wait between attempts to reach a broker


class TapConfigError(ValueError):
    """A tap entry that cannot be used; the message names the entry and the problem."""


class TapError(Exception):
    """A tap cannot run right now (its broker refuses it); the message says why."""


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
    if not math.isfinite(number):
        raise TapConfigError(f"{where}: {key!r} must be a finite number, got {value!r}")
    if isinstance(value, bool) or number < minimum:
        raise TapConfigError(f"{where}: {key!r} must be a number >= {minimum:g}, got {value!r}")
    return number


def _server_url(url: str, where: str, schemes: tuple[str, ...]) -> str:
    """Check a broker URL's scheme, host and port, so a typo stops the start, not the tap."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number 0-65535
    except ValueError as exc:
        raise TapConfigError(
            f"{where}: 'url' {shown_url(url)!r} is not a valid URL ({exc})"
        ) from None
    if parts.scheme not in schemes:
        raise TapConfigError(
            f"{where}: 'url' must start with {' or '.join(f'{s}://' for s in schemes)}, "
            f"got {shown_url(url)!r}"
        )
    if not parts.hostname:
        raise TapConfigError(f"{where}: 'url' names no host, got {shown_url(url)!r}")
    return url


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
        url = _server_url(
            _str(entry, "url", where, "amqp://guest:guest@127.0.0.1:5672/"),
            where,
            ("amqp", "amqps"),
        )
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
        url = _server_url(
            _str(entry, "url", where, "nats://127.0.0.1:4222"), where, ("nats", "tls")
        )
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
    try:
        parts = urlsplit(url, allow_fragments=False)
    except ValueError:  # not a URL at all; still hide what looks like user:password@
        return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return url


def tap_from_url(url: str) -> dict[str, Any]:
    """A ``--tap`` URL → a ``taps:`` entry; tap options travel as query parameters.

    ``amqp://user:pw@host:5672/vhost?exchange=orders&binding=#&binding=audit.*``,
    ``nats://host:4222?subject=orders.>&stream=ORDERS``,
    ``kafka://host:9092,host2:9092?topic=orders&group=sagalens``.
    """
    # '#' is RabbitMQ's match-all binding key, not a fragment.
    try:
        parts = urlsplit(url, allow_fragments=False)
    except ValueError as exc:
        raise TapConfigError(f"--tap {shown_url(url)!r}: not a valid URL ({exc})") from None
    kind = _KIND_ALIASES.get(parts.scheme.lower())
    if kind is None:
        raise TapConfigError(
            f"--tap {shown_url(url)!r}: scheme must be amqp://, amqps://, nats:// or kafka://"
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
            f"--tap {shown_url(url)!r}: {str(exc).removeprefix('taps[0]').lstrip(': ')}"
        ) from None
    return entry


# -- running -----------------------------------------------------------------------------


@dataclass
class TapStats:
    """What a tap has done since the collector started, and whether it is connected now.

    ``state`` is ``connecting`` until the tap first consumes, ``connected`` while it
    does, and ``reconnecting`` after its broker connection failed; ``last_error`` says why.
    """

    kind: str = ""
    url: str = ""  # password masked
    state: str = "connecting"
    last_error: str = ""
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    reconnects: int = 0
    down_since: float = field(default_factory=time.monotonic)
    ever_connected: bool = False

    def connected(self, name: str, detail: str) -> None:
        """The tap consumes again; logged once per change, with how long it was down."""
        if self.state == "connected":
            return
        if self.ever_connected:
            self.reconnects += 1
            down = time.monotonic() - self.down_since
            log.warning("tap %s: reconnected to %s after %.1fs; %s", name, self.url, down, detail)
        else:
            log.warning("tap %s: connected to %s; %s", name, self.url, detail)
        self.state, self.last_error, self.ever_connected = "connected", "", True

    def failed(
        self, name: str, reason: str, retry_s: float, longest_s: float = RETRY_MAX_S
    ) -> None:
        """The broker connection failed or ended; logged when the reason changes. Retries
        come ``retry_s`` from now, and their waits grow to ``longest_s``."""
        if self.state == "connected":
            self.down_since = time.monotonic()
        if reason != self.last_error or self.state == "connected":
            log.warning(
                "tap %s: %s; retrying (every %gs at most)", name, reason, round(longest_s, 1)
            )
        else:
            log.info("tap %s: still failing (%s); retrying in %.1fs", name, reason, retry_s)
        self.state = "reconnecting" if self.ever_connected else "connecting"
        self.last_error = reason

    def as_dict(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "kind": self.kind,
            "url": self.url,
            "state": self.state,
            "last_error": self.last_error,
            "messages": self.messages,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "reconnects": self.reconnects,
        }


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


Runner = Callable[["Collector", TapConfig, TapStats], Awaitable[None]]


def _runner(kind: str) -> Runner:
    if kind == "rabbitmq":
        from collector.receivers.rabbitmq import run_rabbitmq_tap

        return run_rabbitmq_tap
    if kind == "nats":
        from collector.receivers.nats import run_nats_tap

        return run_nats_tap
    from collector.receivers.kafka import run_kafka_tap

    return run_kafka_tap


async def _supervise(collector: Collector, tap: TapConfig, stats: TapStats) -> None:
    """Run a tap forever: a failure is logged and the tap restarts, it never takes the collector down."""
    run = _runner(tap.kind)
    delay = 0.5
    while True:
        started = time.monotonic()
        try:
            await run(collector, tap, stats)
            return
        except asyncio.CancelledError:
            raise
        except (TapError, ConnectionError) as exc:
            reason = str(exc) or type(exc).__name__
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if time.monotonic() - started > 30:
            delay = 0.5
        stats.failed(tap.name, reason, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)


def tap_tasks(collector: Collector) -> list[Awaitable[None]]:
    """Task factory for the server: one supervised task per configured tap."""
    taps = parse_taps(list(collector.settings.taps))
    tasks: list[Awaitable[None]] = []
    for tap in taps:
        log.warning("sagalens collector: tap %s (%s) enabled", tap.name, tap.kind)
        stats = TapStats(tap.kind, shown_url(tap.url or tap.bootstrap))
        collector.tap_stats[tap.name] = stats
        tasks.append(_supervise(collector, tap, stats))
    return tasks


def tap_status(collector: Collector) -> list[dict[str, Any]]:
    """Each configured tap's state and counters, for the overview and operators."""
    return [stats.as_dict(name) for name, stats in collector.tap_stats.items()]
