from typing import Any

import pytest

from collector.normalize.messaging import (
    MessagingFields,
    apply_messaging,
    canonical_messaging,
    normalize_operation,
)
from collector.normalize.records import SpanRecord


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({}, MessagingFields()),
        ({"http.method": "GET"}, MessagingFields()),
        # system has one name in every generation
        ({"messaging.system": "kafka"}, MessagingFields(system="kafka")),
        # destination: new only, old only, both (new wins), consumer-side source, routing key
        ({"messaging.destination.name": "orders"}, MessagingFields(destination="orders")),
        ({"messaging.destination": "orders.old"}, MessagingFields(destination="orders.old")),
        (
            {"messaging.destination.name": "orders", "messaging.destination": "orders.old"},
            MessagingFields(destination="orders"),
        ),
        ({"messaging.source.name": "orders.in"}, MessagingFields(destination="orders.in")),
        (
            {"messaging.rabbitmq.destination.routing_key": "order.created"},
            MessagingFields(destination="order.created"),
        ),
        (
            {"messaging.rabbitmq.routing_key": "order.created"},
            MessagingFields(destination="order.created"),
        ),
        (
            {
                "messaging.rabbitmq.destination.routing_key": "order.created",
                "messaging.destination": "orders.old",
            },
            MessagingFields(destination="orders.old"),
        ),
        # operation: new only, old only, both (new wins), old values mapped to the new ones
        ({"messaging.operation.type": "process"}, MessagingFields(operation="process")),
        ({"messaging.operation": "publish"}, MessagingFields(operation="send")),
        ({"messaging.operation": "deliver"}, MessagingFields(operation="process")),
        ({"messaging.operation": "receive"}, MessagingFields(operation="receive")),
        ({"messaging.operation.type": "SETTLE"}, MessagingFields(operation="settle")),
        ({"messaging.operation.type": "create"}, MessagingFields(operation="create")),
        ({"messaging.operation": "ack"}, MessagingFields(operation="ack")),
        (
            {"messaging.operation.type": "receive", "messaging.operation": "publish"},
            MessagingFields(operation="receive"),
        ),
        # conversation and message ids
        (
            {"messaging.message.conversation_id": "c-new"},
            MessagingFields(conversation_id="c-new"),
        ),
        ({"messaging.conversation_id": "c-old"}, MessagingFields(conversation_id="c-old")),
        (
            {"messaging.message.conversation_id": "c-new", "messaging.conversation_id": "c-old"},
            MessagingFields(conversation_id="c-new"),
        ),
        ({"messaging.message.id": "m-new"}, MessagingFields(message_id="m-new")),
        ({"messaging.message_id": "m-old"}, MessagingFields(message_id="m-old")),
        (
            {"messaging.message.id": "m-new", "messaging.message_id": "m-old"},
            MessagingFields(message_id="m-new"),
        ),
        ({"messaging.message.id": 42}, MessagingFields(message_id="42")),
        # server address, newest name first
        ({"server.address": "broker"}, MessagingFields(server_address="broker")),
        ({"net.peer.name": "broker.old"}, MessagingFields(server_address="broker.old")),
        ({"network.peer.address": "10.0.0.2"}, MessagingFields(server_address="10.0.0.2")),
        ({"net.sock.peer.addr": "10.0.0.1"}, MessagingFields(server_address="10.0.0.1")),
        (
            {"server.address": "broker", "net.peer.name": "broker.old", "net.sock.peer.addr": "x"},
            MessagingFields(server_address="broker"),
        ),
        # empty or unusable values never win
        (
            {"messaging.destination.name": "", "messaging.destination": "orders.old"},
            MessagingFields(destination="orders.old"),
        ),
        ({"messaging.destination.name": ["a", "b"]}, MessagingFields()),
        ({"messaging.system": True}, MessagingFields(system="true")),
    ],
)
def test_canonical_messaging(attributes: dict[str, Any], expected: MessagingFields) -> None:
    assert canonical_messaging(attributes) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("publish", "send"), (" Publish ", "send"), ("deliver", "process"), ("custom", "custom")],
)
def test_normalize_operation(value: str, expected: str) -> None:
    assert normalize_operation(value) == expected


def test_apply_messaging_fills_columns_and_keeps_originals() -> None:
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.destination": "orders",
        "messaging.operation": "publish",
        "messaging.conversation_id": "order-42",
        "messaging.message_id": "m-1",
        "net.peer.name": "broker",
    }
    span = SpanRecord(
        trace_id="1" * 32,
        span_id="2" * 16,
        name="publish",
        start_ns=1,
        end_ns=2,
        attributes=dict(attributes),
    )
    assert apply_messaging(span) is span
    assert span.attributes == attributes
    assert (
        span.messaging_system,
        span.messaging_destination,
        span.messaging_operation,
        span.messaging_conversation_id,
        span.messaging_message_id,
        span.server_address,
    ) == ("rabbitmq", "orders", "send", "order-42", "m-1", "broker")


def test_apply_messaging_without_messaging_attributes() -> None:
    span = SpanRecord(trace_id="1" * 32, span_id="2" * 16, name="x", start_ns=1, end_ns=2)
    apply_messaging(span)
    assert span.messaging_system == span.messaging_destination == span.server_address == ""
