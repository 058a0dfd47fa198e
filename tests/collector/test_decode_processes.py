"""OTLP decoding in worker processes (``--decode-processes``): same answers, robust, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)

from tests.collector.test_collector_otlp import _emit_saga, _spans, _tracer_provider
from tests.conftest import RunningCollector, running_collector, wait_for


def _children(c: RunningCollector, *pattern: str) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(c.proc.pid), *pattern], capture_output=True, text=True
    ).stdout.split()
    return [int(p) for p in out]


def _decoders(c: RunningCollector) -> list[int]:
    return _children(c, "-f", "spawn_main")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def _export(c: RunningCollector, transport: str, service: str) -> str:
    exporter = (
        HttpSpanExporter(endpoint=c.url + "/v1/traces")
        if transport == "http"
        else GrpcSpanExporter(endpoint=c.grpc, insecure=True)
    )
    trace_id = _emit_saga(_tracer_provider(exporter, service))
    wait_for(lambda: len(_spans(c, trace_id)) == 2)
    return trace_id


def test_spans_decoded_in_worker_processes_are_stored_intact(tmp_path: Path) -> None:
    with running_collector(tmp_path, "--decode-processes", "2") as c:
        wait_for(lambda: len(_decoders(c)) == 2)
        for transport in ("http", "grpc"):
            trace_id = _export(c, transport, f"payments-{transport}")
            charge = {s["name"]: s for s in _spans(c, trace_id)}["charge_payment"]
            assert charge["attributes"]["amount"] == 9.99
            assert charge["service_name"] == f"payments-{transport}"
        # A body that is not OTLP gets the same clear 400 as when decoded in-process.
        r = httpx.post(
            c.url + "/v1/traces",
            content=b"\x0a\xff\xff",
            headers={"Content-Type": "application/x-protobuf"},
            timeout=10,
        )
        assert r.status_code == 400
        assert "malformed OTLP traces request" in status_pb2.Status.FromString(r.content).message
        with grpc.insecure_channel(c.grpc) as channel:
            export = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            )
            with pytest.raises(grpc.RpcError) as err:
                export(b"\x0a\xff\xff", timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert c.counts()["spans"] == 4
        # A CloudEvents batch large enough to be decoded in a decode process, not inline.
        events = [
            {"specversion": "1.0", "id": f"e{i}", "source": "/shop", "type": "OrderPlaced",
             "data": {"orderId": i, "note": "x" * 200}}
            for i in range(400)
        ]  # fmt: skip
        r = httpx.post(
            c.url + "/v1/events",
            json=events,
            headers={"Content-Type": "application/cloudevents-batch+json"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["stored"] == 400, r.text
        # Having decoded every kind of body, a decode process still holds neither the store's
        # engine nor numpy: each would add tens of MB to every decode process.
        for pid in _decoders(c):
            assert _native_libraries(pid).isdisjoint({"_duckdb", "_multiarray_umath"})


def _native_libraries(pid: int) -> set[str]:
    """Names of the extension modules and shared libraries a process has loaded."""
    with open(f"/proc/{pid}/maps") as f:
        paths = {line.split()[-1] for line in f if ".so" in line}
    return {Path(p).name.split(".")[0] for p in paths}


def test_a_killed_decode_process_is_replaced_and_loses_no_request(tmp_path: Path) -> None:
    with running_collector(tmp_path, "--decode-processes", "1") as c:
        wait_for(lambda: len(_decoders(c)) == 1)
        (first,) = _decoders(c)
        os.kill(first, signal.SIGKILL)
        trace_id = _export(c, "http", "after-kill")
        assert len(_spans(c, trace_id)) == 2
        wait_for(lambda: [p for p in _decoders(c) if p != first and _alive(p)])
        _export(c, "grpc", "with-new-process")
        assert c.counts()["spans"] == 4


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_decode_processes_end_with_the_collector(tmp_path: Path, stop: str) -> None:
    with running_collector(tmp_path, "--decode-processes", "2") as c:
        wait_for(lambda: len(_decoders(c)) == 2)
        children = _children(c)  # the decoders and multiprocessing's resource tracker
        assert len(children) >= 2
        if stop == "SIGKILL":
            c.proc.kill()
        else:
            assert c.stop() == 0
        wait_for(lambda: not any(_alive(p) for p in children), timeout=20)
