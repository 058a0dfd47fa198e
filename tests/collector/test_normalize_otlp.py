import base64
import json
import math
from typing import Any

import pytest
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collector.normalize.otlp import (
    DecodeError,
    decode_logs_json,
    decode_logs_protobuf,
    decode_logs_request,
    decode_otlp_json_object,
    decode_trace_columns,
    decode_trace_request,
    decode_traces_json,
    decode_traces_protobuf,
)
from collector.normalize.records import LogRecord, RecordBatch, SpanRecord, finalize_log_id
from collector.store.columns import prepare_batch, prepare_span_columns

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
PARENT_ID = bytes.fromhex("eee19b7ec3c1b173")
LINK_TRACE_ID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
LINK_SPAN_ID = bytes.fromhex("b7ad6b7169203331")
START = 1_700_000_000_123_456_789
END = START + 25_000_000


def kv(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def full_pb_request() -> ExportTraceServiceRequest:
    """One span with every field set, inside a resource and scope with every field set."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add(
        schema_url="https://opentelemetry.io/schemas/1.26.0"
    )
    resource_spans.resource.attributes.extend(
        [kv("service.name", string_value="orders"), kv("service.instance.id", int_value=3)]
    )
    scope_spans = resource_spans.scope_spans.add(schema_url="https://example.com/scope")
    scope_spans.scope.name = "saga.orchestrator"
    scope_spans.scope.version = "1.2.0"
    scope_spans.scope.attributes.append(kv("scope.flag", bool_value=True))
    span = scope_spans.spans.add(
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        parent_span_id=PARENT_ID,
        trace_state="vendor=1",
        flags=0x301,
        name="checkout",
        kind=3,
        start_time_unix_nano=START,
        end_time_unix_nano=END,
        dropped_attributes_count=1,
        dropped_events_count=2,
        dropped_links_count=3,
    )
    span.status.code = 2
    span.status.message = "card declined"
    span.attributes.extend(
        [
            kv("str", string_value="text"),
            kv("empty.str", string_value=""),
            kv("bool", bool_value=False),
            kv("int", int_value=-(2**63)),
            kv("double", double_value=1.5),
            kv("bytes", bytes_value=b"\x00\xffab"),
            KeyValue(key="unset"),
            kv(
                "array",
                array_value={"values": [AnyValue(string_value="a"), AnyValue(int_value=2)]},
            ),
            kv(
                "kvlist",
                kvlist_value={
                    "values": [
                        kv("inner", double_value=0.25),
                        kv("nested", array_value={"values": [AnyValue(bool_value=True)]}),
                    ]
                },
            ),
            kv("messaging.system", string_value="rabbitmq"),
            kv("messaging.destination.name", string_value="orders"),
            kv("messaging.operation", string_value="publish"),
            kv("messaging.message.id", string_value="m-1"),
            kv("messaging.message.conversation_id", string_value="order-42"),
            kv("server.address", string_value="broker"),
        ]
    )
    event = span.events.add(name="retry", time_unix_nano=START + 5, dropped_attributes_count=4)
    event.attributes.append(kv("attempt", int_value=2))
    link = span.links.add(
        trace_id=LINK_TRACE_ID,
        span_id=LINK_SPAN_ID,
        trace_state="k=v",
        flags=1,
        dropped_attributes_count=5,
    )
    link.attributes.append(kv("link.kind", string_value="follows"))
    return request


EXPECTED_ATTRIBUTES = {
    "str": "text",
    "empty.str": "",
    "bool": False,
    "int": -(2**63),
    "double": 1.5,
    "bytes": {"bytes": base64.b64encode(b"\x00\xffab").decode()},
    "unset": None,
    "array": ["a", 2],
    "kvlist": {"inner": 0.25, "nested": [True]},
    "messaging.system": "rabbitmq",
    "messaging.destination.name": "orders",
    "messaging.operation": "publish",
    "messaging.message.id": "m-1",
    "messaging.message.conversation_id": "order-42",
    "server.address": "broker",
}

EXPECTED_SPAN = SpanRecord(
    trace_id=TRACE_ID.hex(),
    span_id=SPAN_ID.hex(),
    name="checkout",
    start_ns=START,
    end_ns=END,
    parent_span_id=PARENT_ID.hex(),
    kind=3,
    status_code=2,
    status_message="card declined",
    attributes=EXPECTED_ATTRIBUTES,
    resource_attributes={"service.name": "orders", "service.instance.id": 3},
    service_name="orders",
    scope_name="saga.orchestrator",
    scope_version="1.2.0",
    scope_attributes={"scope.flag": True},
    events=[
        {
            "name": "retry",
            "time_ns": START + 5,
            "attributes": {"attempt": 2},
            "dropped_attributes_count": 4,
        }
    ],
    links=[
        {
            "trace_id": LINK_TRACE_ID.hex(),
            "span_id": LINK_SPAN_ID.hex(),
            "trace_state": "k=v",
            "flags": 1,
            "attributes": {"link.kind": "follows"},
            "dropped_attributes_count": 5,
        }
    ],
    trace_state="vendor=1",
    flags=0x301,
    dropped_attributes_count=1,
    dropped_events_count=2,
    dropped_links_count=3,
    resource_schema_url="https://opentelemetry.io/schemas/1.26.0",
    scope_schema_url="https://example.com/scope",
    messaging_system="rabbitmq",
    messaging_destination="orders",
    messaging_operation="send",
    messaging_conversation_id="order-42",
    messaging_message_id="m-1",
    server_address="broker",
)


def full_json_request() -> dict[str, Any]:
    """The same request as full_pb_request in the OTLP JSON encoding."""
    b64 = base64.b64encode(b"\x00\xffab").decode()
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "orders"}},
                        {"key": "service.instance.id", "value": {"intValue": "3"}},
                    ]
                },
                "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                "scopeSpans": [
                    {
                        "scope": {
                            "name": "saga.orchestrator",
                            "version": "1.2.0",
                            "attributes": [{"key": "scope.flag", "value": {"boolValue": True}}],
                        },
                        "schemaUrl": "https://example.com/scope",
                        "spans": [
                            {
                                "traceId": TRACE_ID.hex(),
                                "spanId": SPAN_ID.hex(),
                                "parentSpanId": PARENT_ID.hex(),
                                "traceState": "vendor=1",
                                "flags": 0x301,
                                "name": "checkout",
                                "kind": 3,
                                "startTimeUnixNano": str(START),
                                "endTimeUnixNano": str(END),
                                "droppedAttributesCount": 1,
                                "droppedEventsCount": 2,
                                "droppedLinksCount": 3,
                                "status": {"code": 2, "message": "card declined"},
                                "attributes": [
                                    {"key": "str", "value": {"stringValue": "text"}},
                                    {"key": "empty.str", "value": {"stringValue": ""}},
                                    {"key": "bool", "value": {"boolValue": False}},
                                    {"key": "int", "value": {"intValue": str(-(2**63))}},
                                    {"key": "double", "value": {"doubleValue": 1.5}},
                                    {"key": "bytes", "value": {"bytesValue": b64}},
                                    {"key": "unset", "value": {}},
                                    {
                                        "key": "array",
                                        "value": {
                                            "arrayValue": {
                                                "values": [{"stringValue": "a"}, {"intValue": 2}]
                                            }
                                        },
                                    },
                                    {
                                        "key": "kvlist",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [
                                                    {
                                                        "key": "inner",
                                                        "value": {"doubleValue": 0.25},
                                                    },
                                                    {
                                                        "key": "nested",
                                                        "value": {
                                                            "arrayValue": {
                                                                "values": [{"boolValue": True}]
                                                            }
                                                        },
                                                    },
                                                ]
                                            }
                                        },
                                    },
                                    {
                                        "key": "messaging.system",
                                        "value": {"stringValue": "rabbitmq"},
                                    },
                                    {
                                        "key": "messaging.destination.name",
                                        "value": {"stringValue": "orders"},
                                    },
                                    {
                                        "key": "messaging.operation",
                                        "value": {"stringValue": "publish"},
                                    },
                                    {
                                        "key": "messaging.message.id",
                                        "value": {"stringValue": "m-1"},
                                    },
                                    {
                                        "key": "messaging.message.conversation_id",
                                        "value": {"stringValue": "order-42"},
                                    },
                                    {"key": "server.address", "value": {"stringValue": "broker"}},
                                ],
                                "events": [
                                    {
                                        "name": "retry",
                                        "timeUnixNano": str(START + 5),
                                        "droppedAttributesCount": 4,
                                        "attributes": [
                                            {"key": "attempt", "value": {"intValue": "2"}}
                                        ],
                                    }
                                ],
                                "links": [
                                    {
                                        "traceId": LINK_TRACE_ID.hex(),
                                        "spanId": LINK_SPAN_ID.hex(),
                                        "traceState": "k=v",
                                        "flags": 1,
                                        "droppedAttributesCount": 5,
                                        "attributes": [
                                            {
                                                "key": "link.kind",
                                                "value": {"stringValue": "follows"},
                                            }
                                        ],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }


def only_span(batch: RecordBatch) -> SpanRecord:
    assert batch.rejections == []
    assert len(batch.spans) == 1
    return batch.spans[0]


def json_span(**fields: Any) -> dict[str, Any]:
    span = {"traceId": TRACE_ID.hex(), "spanId": SPAN_ID.hex(), "name": "s"}
    span.update(fields)
    return span


def json_traces(*spans: dict[str, Any]) -> str:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]})


# --- protobuf -------------------------------------------------------------------------------


def test_protobuf_round_trip_of_every_field() -> None:
    body = full_pb_request().SerializeToString()
    assert only_span(decode_traces_protobuf(body)) == EXPECTED_SPAN


def test_parsed_request_decodes_like_its_bytes() -> None:
    assert only_span(decode_trace_request(full_pb_request())) == EXPECTED_SPAN


def test_empty_requests_give_empty_batches() -> None:
    assert decode_traces_protobuf(b"") == RecordBatch()
    assert decode_logs_protobuf(b"") == RecordBatch()
    assert decode_traces_json(b"{}") == RecordBatch()
    assert decode_logs_json("{}") == RecordBatch()
    assert decode_traces_json('{"resourceSpans": []}') == RecordBatch()


def test_all_zero_parent_is_a_root_span() -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=TRACE_ID, span_id=SPAN_ID, parent_span_id=bytes(8), name="root"
    )
    assert only_span(decode_trace_request(request)).parent_span_id == ""


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"trace_id": b""}, "span 'checkout' rejected: trace_id must be 16 bytes, got 0"),
        ({"trace_id": bytes(16)}, "span 'checkout' rejected: trace_id must not be all zeros"),
        (
            {"trace_id": TRACE_ID[:15]},
            "span 'checkout' rejected: trace_id must be 16 bytes, got 15",
        ),
        ({"span_id": b""}, "span 'checkout' rejected: span_id must be 8 bytes, got 0"),
        ({"span_id": bytes(8)}, "span 'checkout' rejected: span_id must not be all zeros"),
        (
            {"span_id": SPAN_ID + b"\x01"},
            "span 'checkout' rejected: span_id must be 8 bytes, got 9",
        ),
        (
            {"parent_span_id": b"\x01\x02"},
            "span 'checkout' rejected: parent_span_id must be 8 bytes or empty, got 2",
        ),
    ],
)
def test_protobuf_span_rejections_keep_the_rest(fields: dict[str, bytes], reason: str) -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    good = {"trace_id": TRACE_ID, "span_id": SPAN_ID, "name": "good"}
    spans.add(**good)
    spans.add(**{**good, "name": "checkout", **fields})
    batch = decode_traces_protobuf(request.SerializeToString())
    assert [span.name for span in batch.spans] == ["good"]
    assert [(r.source, r.reason) for r in batch.rejections] == [("otlp", reason)]
    assert 'name: "checkout"' in batch.rejections[0].sample


def test_protobuf_link_with_bad_ids_is_counted_as_dropped() -> None:
    request = full_pb_request()
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.links.add(trace_id=b"\x01", span_id=LINK_SPAN_ID)
    record = only_span(decode_trace_request(request))
    assert record.links == EXPECTED_SPAN.links
    assert record.dropped_links_count == EXPECTED_SPAN.dropped_links_count + 1


@pytest.mark.parametrize(
    ("decode", "body"),
    [
        (decode_traces_protobuf, full_pb_request().SerializeToString()[:-3]),
        (decode_traces_protobuf, b"\xff\xff\xff\xff"),
        (decode_traces_protobuf, b'{"resourceSpans": []}'),
        (decode_logs_protobuf, b"\x0a\x05\x12"),
    ],
)
def test_malformed_protobuf_raises_decode_error(decode: Any, body: bytes) -> None:
    with pytest.raises(DecodeError, match=r"invalid protobuf: \d+ bytes do not parse as Export"):
        decode(body)


def attribute_entry(key: bytes, encoded_value: bytes) -> bytes:
    """A KeyValue on the wire, built field by field so it can hold what no SDK would send."""
    body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(encoded_value)]) + encoded_value
    return b"\x4a" + bytes([len(body)]) + body  # Span.attributes is field 9


def request_with_span_bytes(extra: bytes, trace_id: bytes = TRACE_ID) -> bytes:
    """A one-span request whose span carries ``extra`` appended to its encoding."""
    span = (
        ExportTraceServiceRequest()
        .resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=trace_id, span_id=SPAN_ID, name="s")
    )
    span_bytes = span.SerializeToString() + extra
    scope_spans = b"\x12" + bytes([len(span_bytes)]) + span_bytes
    resource_spans = b"\x12" + bytes([len(scope_spans)]) + scope_spans
    return b"\x0a" + bytes([len(resource_spans)]) + resource_spans


def test_wire_built_request_matches_the_protobuf_classes() -> None:
    entry = attribute_entry(b"k", AnyValue(string_value="v").SerializeToString())
    body = request_with_span_bytes(entry)
    parsed = ExportTraceServiceRequest.FromString(body)
    assert parsed.resource_spans[0].scope_spans[0].spans[0].attributes[0] == kv(
        "k", string_value="v"
    )
    assert only_span(decode_traces_protobuf(body)).attributes == {"k": "v"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        # An attribute value that is not an AnyValue (a truncated varint).
        (attribute_entry(b"k", b"\x18\xff"), "an attribute of 7 bytes does not parse as KeyValue"),
        # An attribute key that is not UTF-8, which protobuf refuses for string fields.
        (
            attribute_entry(b"\xff\xfe", AnyValue(int_value=1).SerializeToString()),
            "an attribute of 8 bytes does not parse as KeyValue",
        ),
    ],
    ids=["value-not-anyvalue", "key-not-utf8"],
)
def test_malformed_attributes_fail_the_request_as_the_protobuf_classes_do(
    entry: bytes, message: str
) -> None:
    body = request_with_span_bytes(entry)
    with pytest.raises(ProtobufDecodeError):
        ExportTraceServiceRequest.FromString(body)
    with pytest.raises(DecodeError, match=message):
        decode_traces_protobuf(body)


def test_malformed_attribute_of_a_rejected_span_fails_the_request_clearly() -> None:
    # The span is rejected for its zero trace id; its sample is printed by the real Span
    # class, which reads the attribute the decoder skipped.
    body = request_with_span_bytes(attribute_entry(b"k", b"\x18\xff"), trace_id=bytes(16))
    with pytest.raises(ProtobufDecodeError):
        ExportTraceServiceRequest.FromString(body)
    with pytest.raises(DecodeError, match=r"span 's' \(trace_id must not be all zeros\) does not"):
        decode_traces_protobuf(body)


def test_repeated_attribute_key_keeps_the_last_value() -> None:
    first = attribute_entry(b"k", AnyValue(string_value="first").SerializeToString())
    last = attribute_entry(b"k", AnyValue(int_value=2).SerializeToString())
    body = request_with_span_bytes(first + last)
    assert only_span(decode_traces_protobuf(body)).attributes == {"k": 2}


def test_shared_attribute_values_are_decoded_per_type() -> None:
    # The decoder shares decoded scalars between spans by their encoding: equal encodings
    # are equal values, and a value of another type never takes a cached one.
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    values = [
        AnyValue(int_value=1),
        AnyValue(bool_value=True),
        AnyValue(double_value=1.0),
        AnyValue(string_value="1"),
        AnyValue(int_value=1),
        AnyValue(array_value={"values": [AnyValue(int_value=1)]}),
        AnyValue(array_value={"values": [AnyValue(int_value=1)]}),
    ]
    for index, value in enumerate(values):
        span = spans.add(trace_id=TRACE_ID, span_id=bytes([0] * 7 + [index + 1]), name="s")
        span.attributes.append(KeyValue(key="v", value=value))
    batch = decode_traces_protobuf(request.SerializeToString())
    got = [span.attributes["v"] for span in batch.spans]
    assert got == [1, True, 1.0, "1", 1, [1], [1]]
    assert [type(v) for v in got] == [int, bool, float, str, int, list, list]
    assert got[5] is not got[6], "mutable values must not be shared between spans"


def test_span_columns_give_the_same_tables_as_records() -> None:
    request = full_pb_request()
    spans = request.resource_spans[0].scope_spans[0].spans
    spans.append(spans[0])  # a span repeated within the request is stored once
    spans.add(trace_id=bytes(16), span_id=SPAN_ID, name="rejected")
    second = request.resource_spans.add().scope_spans.add()
    second.spans.add(trace_id=LINK_TRACE_ID, span_id=LINK_SPAN_ID, name="no service")
    body = request.SerializeToString()
    from_columns = prepare_span_columns(decode_trace_columns(body))
    from_records = prepare_batch(decode_traces_protobuf(body))
    assert from_columns.spans is not None and from_records.spans is not None
    assert from_columns.spans.num_rows == 2
    assert from_columns.spans.equals(from_records.spans)
    assert from_columns.rejections == from_records.rejections
    assert len(from_columns.rejections) == 1
    assert from_columns.received == from_records.received == 3


def test_span_attributes_are_stored_with_sorted_keys() -> None:
    prepared = prepare_span_columns(decode_trace_columns(full_pb_request().SerializeToString()))
    assert prepared.spans is not None
    stored = prepared.spans.column("attributes")[0].as_py()
    keys = [key for key, _ in json.loads(stored, object_pairs_hook=list)]
    assert keys == sorted(EXPECTED_ATTRIBUTES)
    assert json.loads(stored) == {**EXPECTED_ATTRIBUTES, "unset": None}


# --- JSON -----------------------------------------------------------------------------------


def test_json_decodes_to_the_same_record_as_protobuf() -> None:
    assert only_span(decode_traces_json(json.dumps(full_json_request()))) == EXPECTED_SPAN


def test_json_bytes_and_str_bodies_are_equal() -> None:
    text = json.dumps(full_json_request())
    assert decode_traces_json(text.encode()) == decode_traces_json(text)


def to_snake(value: Any) -> Any:
    def snake(key: str) -> str:
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)

    if isinstance(value, dict):
        return {snake(key): to_snake(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_snake(item) for item in value]
    return value


def test_json_snake_case_keys_are_accepted() -> None:
    snake = to_snake(full_json_request())
    assert "resource_spans" in snake
    assert only_span(decode_otlp_json_object(snake)) == EXPECTED_SPAN


def test_json_unknown_fields_are_ignored() -> None:
    request = full_json_request()
    request["future"] = 1
    request["resourceSpans"][0]["entityRefs"] = [{"type": "service"}]
    span = request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["newField"] = {"x": 1}
    span["attributes"][0]["value"]["futureHint"] = True
    assert only_span(decode_traces_json(json.dumps(request))) == EXPECTED_SPAN


@pytest.mark.parametrize(
    ("fields", "attribute", "expected"),
    [
        # ids: hex in any case, or base64 with or without padding, standard or URL-safe
        ({"traceId": TRACE_ID.hex().upper()}, "trace_id", TRACE_ID.hex()),
        ({"traceId": base64.b64encode(TRACE_ID).decode()}, "trace_id", TRACE_ID.hex()),
        ({"spanId": base64.b64encode(SPAN_ID).decode()}, "span_id", SPAN_ID.hex()),
        (
            {"spanId": base64.urlsafe_b64encode(b"\xfb\xff" * 4).decode().rstrip("=")},
            "span_id",
            "fbff" * 4,
        ),
        ({"parentSpanId": PARENT_ID.hex().upper()}, "parent_span_id", PARENT_ID.hex()),
        ({"parentSpanId": ""}, "parent_span_id", ""),
        ({"parentSpanId": "0" * 16}, "parent_span_id", ""),
        # 64-bit integers as strings or numbers
        ({"startTimeUnixNano": "1700000000000000001"}, "start_ns", 1_700_000_000_000_000_001),
        ({"startTimeUnixNano": 1700000000000000001}, "start_ns", 1_700_000_000_000_000_001),
        ({"endTimeUnixNano": 1.0e9}, "end_ns", 1_000_000_000),
        ({"flags": "257"}, "flags", 257),
        # enums as integers or names
        ({"kind": "SPAN_KIND_SERVER"}, "kind", 2),
        ({"kind": "CONSUMER"}, "kind", 5),
        ({"kind": "4"}, "kind", 4),
        ({"status": {"code": "STATUS_CODE_ERROR"}}, "status_code", 2),
        ({"status": {"code": 1}}, "status_code", 1),
        ({"status": {}}, "status_code", 0),
    ],
)
def test_json_span_field_rules(fields: dict[str, Any], attribute: str, expected: Any) -> None:
    record = only_span(decode_traces_json(json_traces(json_span(**fields))))
    assert getattr(record, attribute) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"stringValue": "x"}, "x"),
        ({"string_value": "x"}, "x"),
        ({"boolValue": True}, True),
        ({"intValue": "-42"}, -42),
        ({"intValue": 42}, 42),
        ({"doubleValue": 2}, 2.0),
        ({"doubleValue": "2.5"}, 2.5),
        ({"doubleValue": "Infinity"}, math.inf),
        ({"doubleValue": "-Infinity"}, -math.inf),
        ({"bytesValue": "AP8="}, {"bytes": "AP8="}),
        ({"bytesValue": "AP8"}, {"bytes": "AP8="}),
        ({"bytesValue": "_-8="}, {"bytes": "/+8="}),
        ({"arrayValue": {}}, []),
        ({"arrayValue": {"values": [{}, {"intValue": "1"}]}}, [None, 1]),
        ({"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": False}}]}}, {"k": False}),
        ({}, None),
        ({"stringValue": None}, None),
        ({"somethingNew": 1}, None),
    ],
)
def test_json_attribute_values(value: dict[str, Any], expected: Any) -> None:
    body = json_traces(json_span(attributes=[{"key": "a", "value": value}]))
    assert only_span(decode_traces_json(body)).attributes == {"a": expected}


def test_json_nan_double() -> None:
    body = json_traces(json_span(attributes=[{"key": "a", "value": {"doubleValue": "NaN"}}]))
    assert math.isnan(only_span(decode_traces_json(body)).attributes["a"])


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"traceId": None}, "span 's' rejected: trace_id must be 16 bytes, got 0"),
        ({"traceId": "0" * 32}, "span 's' rejected: trace_id must not be all zeros"),
        ({"traceId": "abcd"}, "span 's' rejected: trace_id must be 16 bytes, got 2"),
        ({"traceId": "z" * 32}, f"span 's' rejected: trace_id {'z' * 32!r} is not valid hex"),
        (
            {"traceId": "not an id!"},
            "span 's' rejected: trace_id 'not an id!' is neither 32 hex digits nor base64",
        ),
        ({"traceId": 12}, "span 's' rejected: trace_id must be a hex string, got number"),
        ({"spanId": ""}, "span 's' rejected: span_id must be 8 bytes, got 0"),
        ({"spanId": "0" * 16}, "span 's' rejected: span_id must not be all zeros"),
        (
            {"spanId": base64.b64encode(TRACE_ID).decode()},
            "span 's' rejected: span_id must be 8 bytes, got 16",
        ),
        ({"parentSpanId": "01"}, "span 's' rejected: parent_span_id must be 8 bytes, got 1"),
        (
            {"startTimeUnixNano": "soon"},
            "span 's' rejected: startTimeUnixNano must be an integer, got 'soon'",
        ),
        (
            {"kind": "SPAN_KIND_WEIRD"},
            "span 's' rejected: kind must be an integer, got 'SPAN_KIND_WEIRD'",
        ),
        ({"name": 5}, "span '' rejected: name must be a string, got number"),
        ({"status": "ok"}, "span 's' rejected: status must be an object, got string"),
        (
            {"attributes": [{"key": "n", "value": {"intValue": "1.5"}}]},
            "span 's' rejected: attribute 'n': intValue must be an integer, got '1.5'",
        ),
        (
            {"attributes": [{"key": "n", "value": {"intValue": str(2**63)}}]},
            "span 's' rejected: attribute 'n': intValue must fit in 64 bits, got '9223372036854775808'",
        ),
        (
            {"attributes": [{"key": "b", "value": {"boolValue": "yes"}}]},
            "span 's' rejected: attribute 'b': boolValue must be true or false, got 'yes'",
        ),
        (
            {"attributes": [{"key": "d", "value": {"doubleValue": "lots"}}]},
            "span 's' rejected: attribute 'd': doubleValue must be a number, got 'lots'",
        ),
        (
            {"attributes": [{"key": "x", "value": {"bytesValue": "!!"}}]},
            "span 's' rejected: attribute 'x': bytesValue '!!' is not base64",
        ),
        (
            {"attributes": [{"key": "l", "value": {"arrayValue": [1]}}]},
            "span 's' rejected: attribute 'l': arrayValue must be an object, got list",
        ),
        ({"attributes": {"k": "v"}}, "span 's' rejected: attributes must be a list, got object"),
        (
            {"attributes": [{"value": {}}]},
            "span 's' rejected: attribute key must be a string, got null",
        ),
        ({"events": [1]}, "span 's' rejected: events must be a list of objects"),
    ],
)
def test_json_span_rejections_keep_the_rest(fields: dict[str, Any], reason: str) -> None:
    bad = json_span(**fields)
    batch = decode_traces_json(json_traces(json_span(name="good"), bad))
    assert [span.name for span in batch.spans] == ["good"]
    assert [(r.source, r.reason) for r in batch.rejections] == [("otlp", reason)]
    assert batch.rejections[0].sample == json.dumps(bad)


def test_json_link_with_bad_ids_is_counted_as_dropped() -> None:
    link = {"traceId": LINK_TRACE_ID.hex(), "spanId": LINK_SPAN_ID.hex()}
    body = json_traces(json_span(links=[link, {"traceId": "00", "spanId": "11"}]))
    record = only_span(decode_traces_json(body))
    assert [entry["span_id"] for entry in record.links] == [LINK_SPAN_ID.hex()]
    assert record.dropped_links_count == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"resourceSpans": [}', "invalid JSON at line 1 column 20: Expecting value"),
        ("", "invalid JSON at line 1 column 1: Expecting value"),
        (b"\xff\xfe{\x00", "invalid JSON"),
        ("[]", "request body must be a JSON object, got list"),
        ('"x"', "request body must be a JSON object, got string"),
        ('{"resourceSpans": {}}', "resourceSpans must be a list, got object"),
        ('{"resourceSpans": [1]}', "resourceSpans[0] must be an object, got number"),
        (
            '{"resourceSpans": [{"scopeSpans": "x"}]}',
            "resourceSpans[0].scopeSpans must be a list, got string",
        ),
        (
            '{"resourceSpans": [{"scopeSpans": [{"spans": [null]}]}]}',
            "resourceSpans[0].scopeSpans[0].spans[0] must be an object, got null",
        ),
        (
            '{"resourceSpans": [{"resource": []}]}',
            "resourceSpans[0].resource must be an object, got list",
        ),
        (
            '{"resourceSpans": [{"resource": {"attributes": [{"key": 1}]}}]}',
            "resourceSpans[0].resource: attribute key must be a string, got number",
        ),
        (
            '{"resourceSpans": [{"scopeSpans": [{"scope": {"name": 3}}]}]}',
            "resourceSpans[0].scopeSpans[0].scope: name must be a string, got number",
        ),
        ('{"resourceSpans": [{"schemaUrl": 1}]}', "resourceSpans[0]: schemaUrl must be a string"),
    ],
)
def test_malformed_json_traces_raise_decode_error(body: str | bytes, message: str) -> None:
    with pytest.raises(DecodeError) as error:
        decode_traces_json(body)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"resourceLogs": 1}', "resourceLogs must be a list, got number"),
        (
            '{"resourceLogs": [{"scopeLogs": [{"logRecords": {}}]}]}',
            "resourceLogs[0].scopeLogs[0].logRecords must be a list, got object",
        ),
    ],
)
def test_malformed_json_logs_raise_decode_error(body: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message.replace("[", r"\[")):
        decode_logs_json(body)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError)


# --- file-exporter objects ------------------------------------------------------------------


def test_json_object_dispatches_on_signal() -> None:
    traces = decode_otlp_json_object(full_json_request())
    logs = decode_otlp_json_object(json_logs({"timeUnixNano": "1", "body": {"stringValue": "x"}}))
    assert (len(traces.spans), len(traces.logs)) == (1, 0)
    assert (len(logs.spans), len(logs.logs)) == (0, 1)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            {"resourceMetrics": []},
            "not an OTLP traces (resourceSpans) or logs (resourceLogs) request",
        ),
        ({}, "top-level keys: none"),
        ([], "an OTLP JSON request must be an object, got list"),
    ],
)
def test_json_object_that_is_neither_raises(obj: Any, message: str) -> None:
    with pytest.raises(DecodeError) as error:
        decode_otlp_json_object(obj)
    assert message in str(error.value)


# --- logs -----------------------------------------------------------------------------------


def json_logs(*records: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "pay"}}]
                },
                "scopeLogs": [
                    {"scope": {"name": "pay.log", "version": "2"}, "logRecords": list(records)}
                ],
            }
        ]
    }


def expected_log(**fields: Any) -> LogRecord:
    base: dict[str, Any] = {
        "time_ns": START,
        "observed_time_ns": START + 1,
        "severity_number": 17,
        "severity_text": "ERROR",
        "attributes": {"order.id": "o-1"},
        "resource_attributes": {"service.name": "pay"},
        "service_name": "pay",
        "scope_name": "pay.log",
        "scope_version": "2",
        "trace_id": TRACE_ID.hex(),
        "span_id": SPAN_ID.hex(),
        "flags": 1,
        "event_name": "payment.declined",
        "dropped_attributes_count": 2,
    }
    base.update(fields)
    return finalize_log_id(LogRecord(**base))


def pb_logs(*records: dict[str, Any]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(kv("service.name", string_value="pay"))
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "pay.log"
    scope_logs.scope.version = "2"
    for fields in records:
        scope_logs.log_records.add(**fields)
    return request


PB_LOG = {
    "time_unix_nano": START,
    "observed_time_unix_nano": START + 1,
    "severity_number": 17,
    "severity_text": "ERROR",
    "attributes": [kv("order.id", string_value="o-1")],
    "dropped_attributes_count": 2,
    "flags": 1,
    "trace_id": TRACE_ID,
    "span_id": SPAN_ID,
    "event_name": "payment.declined",
}
JSON_LOG = {
    "timeUnixNano": str(START),
    "observedTimeUnixNano": str(START + 1),
    "severityNumber": "SEVERITY_NUMBER_ERROR",
    "severityText": "ERROR",
    "attributes": [{"key": "order.id", "value": {"stringValue": "o-1"}}],
    "droppedAttributesCount": 2,
    "flags": 1,
    "traceId": TRACE_ID.hex(),
    "spanId": SPAN_ID.hex(),
    "eventName": "payment.declined",
}

BODIES = [
    (None, None, None),
    (AnyValue(string_value="card declined"), {"stringValue": "card declined"}, "card declined"),
    (AnyValue(bool_value=True), {"boolValue": True}, True),
    (AnyValue(int_value=7), {"intValue": "7"}, 7),
    (AnyValue(double_value=0.5), {"doubleValue": 0.5}, 0.5),
    (AnyValue(bytes_value=b"\x01"), {"bytesValue": "AQ=="}, {"bytes": "AQ=="}),
    (
        AnyValue(array_value={"values": [AnyValue(string_value="a")]}),
        {"arrayValue": {"values": [{"stringValue": "a"}]}},
        ["a"],
    ),
    (
        AnyValue(kvlist_value={"values": [kv("amount", int_value=12)]}),
        {"kvlistValue": {"values": [{"key": "amount", "value": {"intValue": 12}}]}},
        {"amount": 12},
    ),
    (AnyValue(), {}, None),
]


@pytest.mark.parametrize(("pb_body", "json_body", "expected"), BODIES)
def test_log_bodies_of_every_type(pb_body: Any, json_body: Any, expected: Any) -> None:
    pb_fields = {**PB_LOG, "body": pb_body} if pb_body is not None else PB_LOG
    json_fields = {**JSON_LOG, "body": json_body} if json_body is not None else JSON_LOG
    want = expected_log(body=expected)
    from_pb = decode_logs_protobuf(pb_logs(pb_fields).SerializeToString())
    from_json = decode_logs_json(json.dumps(json_logs(json_fields)))
    assert from_pb == RecordBatch(logs=[want])
    assert from_json == RecordBatch(logs=[want])


def test_same_log_twice_has_the_same_record_id() -> None:
    batch = decode_logs_request(pb_logs(PB_LOG, PB_LOG, {**PB_LOG, "time_unix_nano": START + 9}))
    ids = [log.record_id for log in batch.logs]
    assert ids[0] == ids[1] != ids[2]
    assert len(ids[0]) == 32


@pytest.mark.parametrize(
    ("pb_ids", "json_ids"),
    [
        ({"trace_id": b"", "span_id": b""}, {"traceId": "", "spanId": ""}),
        ({"trace_id": bytes(16), "span_id": bytes(8)}, {"traceId": "0" * 32, "spanId": "0" * 16}),
    ],
)
def test_log_without_ids(pb_ids: dict[str, bytes], json_ids: dict[str, str]) -> None:
    want = expected_log(trace_id="", span_id="")
    assert decode_logs_request(pb_logs({**PB_LOG, **pb_ids})).logs == [want]
    assert decode_logs_json(json.dumps(json_logs({**JSON_LOG, **json_ids}))).logs == [want]


@pytest.mark.parametrize(
    ("pb_ids", "json_ids", "reason"),
    [
        (
            {"trace_id": b"\x01\x02"},
            {"traceId": "0102"},
            "log record rejected: trace_id must be 16 bytes or empty, got 2",
        ),
        (
            {"span_id": SPAN_ID[:7]},
            {"spanId": SPAN_ID[:7].hex()},
            "log record rejected: span_id must be 8 bytes or empty, got 7",
        ),
    ],
)
def test_log_rejections_keep_the_rest(
    pb_ids: dict[str, bytes], json_ids: dict[str, str], reason: str
) -> None:
    pb_batch = decode_logs_request(pb_logs(PB_LOG, {**PB_LOG, **pb_ids}))
    json_batch = decode_logs_json(json.dumps(json_logs(JSON_LOG, {**JSON_LOG, **json_ids})))
    json_reasons = [r.reason for r in json_batch.rejections]
    assert pb_batch.logs == json_batch.logs == [expected_log()]
    assert [(r.source, r.reason) for r in pb_batch.rejections] == [("otlp", reason)]
    assert json_reasons == [reason.replace(" or empty", "")]


def test_json_log_rejection_for_bad_values() -> None:
    batch = decode_logs_json(json.dumps(json_logs({**JSON_LOG, "severityNumber": "LOUD"})))
    assert batch.logs == []
    assert [r.reason for r in batch.rejections] == [
        "log record rejected: severityNumber must be an integer, got 'LOUD'"
    ]


# --- the OpenTelemetry SDK's own encoder ----------------------------------------------------


def test_sdk_encoded_spans_decode() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orders"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("saga.test", "0.1")
    with tracer.start_as_current_span("OrderSaga", kind=SpanKind.SERVER) as root:
        root.set_attribute("saga.id", "order-42")
        with tracer.start_as_current_span("reserve_inventory", kind=SpanKind.PRODUCER) as child:
            child.set_attributes(
                {"messaging.system": "rabbitmq", "messaging.operation": "publish", "n": 3}
            )
            child.set_attribute("tags", ["a", "b"])
            child.add_event("sent", {"size": 1.5})
            child.set_status(Status(StatusCode.ERROR, "no stock"))
    provider.shutdown()
    finished = exporter.get_finished_spans()

    batch = decode_traces_protobuf(encode_spans(finished).SerializeToString())

    assert batch.rejections == []
    by_name = {span.name: span for span in batch.spans}
    assert set(by_name) == {"OrderSaga", "reserve_inventory"}
    root_span, child_span = by_name["OrderSaga"], by_name["reserve_inventory"]
    assert root_span.attributes == {"saga.id": "order-42"}
    assert child_span.attributes == {
        "messaging.system": "rabbitmq",
        "messaging.operation": "publish",
        "n": 3,
        "tags": ["a", "b"],
    }
    assert child_span.parent_span_id == root_span.span_id
    assert child_span.trace_id == root_span.trace_id == f"{finished[0].context.trace_id:032x}"
    assert (root_span.kind, child_span.kind) == (2, 4)
    assert (child_span.status_code, child_span.status_message) == (2, "no stock")
    assert [(e["name"], e["attributes"]) for e in child_span.events] == [("sent", {"size": 1.5})]
    assert child_span.service_name == "orders"
    assert (child_span.scope_name, child_span.scope_version) == ("saga.test", "0.1")
    assert (child_span.messaging_system, child_span.messaging_operation) == ("rabbitmq", "send")
    sdk_child = next(span for span in finished if span.name == "reserve_inventory")
    assert (child_span.start_ns, child_span.end_ns) == (sdk_child.start_time, sdk_child.end_time)
