"""OTLP/gRPC receiver: TraceService/Export and LogsService/Export.

Handlers receive the raw request bytes and decode them with the same decoders as
OTLP/HTTP, so a malformed message gets INVALID_ARGUMENT with the reason rather than a
generic deserialization failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from collector.decoding import Decoder, decode_prepared
from collector.normalize import otlp
from collector.store.writer import ClosedError, OverloadedError, StoreError

if TYPE_CHECKING:
    from collector.service import Collector

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def _unavailable(message: str, retry_after: float) -> grpc.Status:
    detail = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=max(1, round(retry_after)))
    )
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    status.details.add().Pack(detail)
    return rpc_status.to_status(status)


async def _export(
    collector: Collector,
    context: grpc.aio.ServicerContext,
    decode: Decoder,
    data: bytes,
) -> tuple[int, str]:
    metadata = dict(context.invocation_metadata() or ())
    if not collector.authorized(metadata.get("authorization")):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
    if collector.writer.is_full():
        collector.writer.stats.overloaded += 1
        await context.abort_with_status(_unavailable("collector overloaded; retry later", 1))
    if not data:
        return 0, ""
    async with collector.decode_slots:
        try:
            prepared, message = await collector.decode(decode_prepared, decode, data)
        except otlp.DecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed OTLP request: {exc}")
    try:
        result = await collector.writer.write(prepared)
    except OverloadedError as exc:
        await context.abort_with_status(_unavailable(str(exc), exc.retry_after))
    except ClosedError as exc:
        await context.abort_with_status(_unavailable(str(exc), 5))
    except StoreError as exc:
        await context.abort(grpc.StatusCode.INTERNAL, str(exc))
    return result.rejected, message


def _handler(
    collector: Collector,
    decode: Decoder,
    response_type: type[Any],
    rejected_field: str,
) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
    """An Export handler: decode, commit, answer with partial success where items were refused."""

    async def export(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        rejected, message = await _export(collector, context, decode, data)
        response = response_type()
        if rejected:
            setattr(response.partial_success, rejected_field, rejected)
            response.partial_success.error_message = message
        return bytes(response.SerializeToString())

    return export


def build_grpc_server(collector: Collector, address: str) -> tuple[grpc.aio.Server, int]:
    """A gRPC server for both OTLP services; messages over the body limit get RESOURCE_EXHAUSTED."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", collector.settings.max_body_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            # gRPC binds with SO_REUSEPORT by default: a second collector on the same port
            # would start and take a share of the exports meant for the first.
            ("grpc.so_reuseport", 0),
        ]
    )
    handlers = {
        "opentelemetry.proto.collector.trace.v1.TraceService": {
            "Export": grpc.unary_unary_rpc_method_handler(
                _handler(
                    collector,
                    otlp.decode_trace_columns,
                    trace_service_pb2.ExportTraceServiceResponse,
                    "rejected_spans",
                )
            )
        },
        "opentelemetry.proto.collector.logs.v1.LogsService": {
            "Export": grpc.unary_unary_rpc_method_handler(
                _handler(
                    collector,
                    otlp.decode_logs_protobuf,
                    logs_service_pb2.ExportLogsServiceResponse,
                    "rejected_log_records",
                )
            )
        },
    }
    for service, methods in handlers.items():
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, methods)])
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise SystemExit(f"could not start OTLP/gRPC on {address}: the port is in use or invalid")
    return server, bound
