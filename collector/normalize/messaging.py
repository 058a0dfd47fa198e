"""Canonical messaging columns from the OpenTelemetry messaging conventions, old and new.

The conventions renamed most messaging attributes between versions (for example
``messaging.destination`` became ``messaging.destination.name`` and
``messaging.operation`` became ``messaging.operation.type``). Instrumentation in the
wild emits every generation, so each canonical column is read from a list of
names, newest first: the new name wins when both are present. The original
attributes are never removed; the canonical columns are a derived, queryable copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from collector.normalize.records import SpanRecord

# Candidate attribute names per column, newest convention first.
SYSTEM_KEYS: tuple[str, ...] = ("messaging.system",)
DESTINATION_KEYS: tuple[str, ...] = (
    "messaging.destination.name",
    "messaging.destination",
    # Consumer spans used a separate "source" between semconv 1.17 and 1.23.
    "messaging.source.name",
    # Routing keys say less than a destination name, so they only fill a gap.
    "messaging.rabbitmq.destination.routing_key",
    "messaging.rabbitmq.routing_key",
)
OPERATION_KEYS: tuple[str, ...] = ("messaging.operation.type", "messaging.operation")
CONVERSATION_ID_KEYS: tuple[str, ...] = (
    "messaging.message.conversation_id",
    "messaging.conversation_id",
)
MESSAGE_ID_KEYS: tuple[str, ...] = ("messaging.message.id", "messaging.message_id")
SERVER_ADDRESS_KEYS: tuple[str, ...] = (
    "server.address",
    "net.peer.name",
    "network.peer.address",
    "net.sock.peer.addr",
)

# Operation values of the current spec are create|send|receive|process|settle;
# older generations used "publish" for send and "deliver" for process.
_OPERATION_ALIASES: dict[str, str] = {
    "publish": "send",
    "send": "send",
    "create": "create",
    "receive": "receive",
    "process": "process",
    "deliver": "process",
    "settle": "settle",
}


class MessagingFields(NamedTuple):
    """The canonical messaging columns of a span; empty strings when absent."""

    system: str = ""
    destination: str = ""
    operation: str = ""
    conversation_id: str = ""
    message_id: str = ""
    server_address: str = ""


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    # Lists and maps cannot name a destination or an id.
    if value is None or isinstance(value, (list, dict)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_ALL_KEYS = frozenset(
    SYSTEM_KEYS
    + DESTINATION_KEYS
    + OPERATION_KEYS
    + CONVERSATION_ID_KEYS
    + MESSAGE_ID_KEYS
    + SERVER_ADDRESS_KEYS
)
_NONE = ("", "", "", "", "", "")


def messaging_columns(attributes: Mapping[str, Any]) -> tuple[str, str, str, str, str, str]:
    """The canonical messaging columns, in :class:`MessagingFields` order."""
    # Runs for every ingested span, so most spans, which carry none of the names, are
    # answered by one set operation, and the candidate lists are unrolled into plain
    # lookups; keep them in step with the *_KEYS tuples above.
    if _ALL_KEYS.isdisjoint(attributes):
        return _NONE
    get = attributes.get
    system = get("messaging.system")
    destination = (
        get("messaging.destination.name")
        or get("messaging.destination")
        or get("messaging.source.name")
        or get("messaging.rabbitmq.destination.routing_key")
        or get("messaging.rabbitmq.routing_key")
    )
    operation = get("messaging.operation.type") or get("messaging.operation")
    conversation_id = get("messaging.message.conversation_id") or get("messaging.conversation_id")
    message_id = get("messaging.message.id") or get("messaging.message_id")
    server_address = (
        get("server.address")
        or get("net.peer.name")
        or get("network.peer.address")
        or get("net.sock.peer.addr")
    )
    if operation is not None:
        operation = _text(operation)
        operation = _OPERATION_ALIASES.get(operation) or normalize_operation(operation)
    return (
        system if type(system) is str else _text(system),
        destination if type(destination) is str else _text(destination),
        operation or "",
        conversation_id if type(conversation_id) is str else _text(conversation_id),
        message_id if type(message_id) is str else _text(message_id),
        server_address if type(server_address) is str else _text(server_address),
    )


def normalize_operation(value: str) -> str:
    """Map an old or new ``messaging.operation`` value onto the current spec's vocabulary."""
    lowered = value.strip().lower()
    return _OPERATION_ALIASES.get(lowered, lowered)


def canonical_messaging(attributes: Mapping[str, Any]) -> MessagingFields:
    """Read the canonical messaging columns from span attributes (new names win)."""
    return MessagingFields(*messaging_columns(attributes))


def apply_messaging(span: SpanRecord) -> SpanRecord:
    """Fill a span's canonical messaging columns in place from its attributes; returns it."""
    (
        span.messaging_system,
        span.messaging_destination,
        span.messaging_operation,
        span.messaging_conversation_id,
        span.messaging_message_id,
        span.server_address,
    ) = messaging_columns(span.attributes)
    return span
